#!/usr/bin/env bash
# 10,000 exports per host (issue 16): a real `sluice serve` carrying EXPORTS `every 5 minutes`
# exports (s3 plugin to a local directory, empty embedded source), created through the REST
# API (timed); over TICKS ticks, how late each run reaches Running after its interval end plus
# the settle delay (p50/p99/max), the idle host's CPU and RSS between ticks, and the latency
# of listing every export page by page; then every export is checked to have exactly one
# Completed run per tick. SQLite, then PostgreSQL when SLUICE_TEST_POSTGRES_URL is set (a
# fresh database, dropped at the end). About (TICKS + 1) x 5 minutes per database.
#   bash bench/scale.sh                         # EXPORTS=10000 TICKS=3
#   EXPORTS=2000 TICKS=2 bash bench/scale.sh
#   SCALE_PPROF=/tmp/prof bash bench/scale.sh   # CPU profiles of tick 1's runs and of the idle host
#   SCALE_ARGS="-workers 8" bash bench/scale.sh # more flags for bench/cmd/sluice-scale
#   SCALE_DATABASES=postgres bash bench/scale.sh # only one of sqlite,postgres (default both)
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true GCE_METADATA_HOST=127.0.0.1:1 STORAGE_EMULATOR_HOST=127.0.0.1:1 SNOWFLAKE_DISABLE_PLATFORM_DETECTION=true
if [ -f /tmp/services.env ] && [ -z "${SLUICE_TEST_POSTGRES_URL:-}" ]; then set -a; . /tmp/services.env; set +a; fi
[ -f bin/plugins/s3.wasm ] || make plugins
make build
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/sluice-scale" ./bench/cmd/sluice-scale
dbs=()
case ",${SCALE_DATABASES:-sqlite,postgres}," in *,sqlite,*) dbs+=("") ;; esac
case ",${SCALE_DATABASES:-sqlite,postgres}," in
*,postgres,*) if [ -n "${SLUICE_TEST_POSTGRES_URL:-}" ]; then dbs+=("$SLUICE_TEST_POSTGRES_URL"); fi ;;
esac
for db in "${dbs[@]}"; do
  args=(-exports "${EXPORTS:-10000}" -ticks "${TICKS:-3}" -database-url "$db")
  if [ -n "${SCALE_PPROF:-}" ]; then args+=(-pprof-dir "$SCALE_PPROF"); fi
  # shellcheck disable=SC2086
  "$tmp/sluice-scale" "${args[@]}" ${SCALE_ARGS:-}
done
