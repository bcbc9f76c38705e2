#!/usr/bin/env bash
# Backfill throughput (issue 17): a backfill of N empty hourly intervals requested through the
# real HTTP API on a whole host (River queue, plugin runtime, embedded source), timed from the
# request until the backfill reports every run Completed; every run's state is then checked
# page by page. SQLite, then PostgreSQL when SLUICE_TEST_POSTGRES_URL is set (a fresh database
# per run), at backfill parallelism 1 and 2. Needs the plugins: make plugins.
#   bash bench/backfill.sh            # N=10000
#   RUNS=2000 bash bench/backfill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true GCE_METADATA_HOST=127.0.0.1:1 SNOWFLAKE_DISABLE_PLATFORM_DETECTION=true
runs=${RUNS:-10000}
dbs=("")
if [ -n "${SLUICE_TEST_POSTGRES_URL:-}" ]; then dbs+=("$SLUICE_TEST_POSTGRES_URL"); fi
for db in "${dbs[@]}"; do
  for par in 1 2; do
    SLUICE_BENCH_BACKFILL_RUNS=$runs SLUICE_BENCH_BACKFILL_PARALLELISM=$par SLUICE_BENCH_DATABASE_URL=$db \
      go test -count=1 -timeout 40m -run '^TestBackfillThroughput$' -v ./host/control/ | grep -E 'backfill of|FAIL' || true
  done
done
