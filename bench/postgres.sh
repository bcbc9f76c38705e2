#!/usr/bin/env bash
# PostgreSQL destination benchmark (issue 10): Sluice exporting N demo events into PostgreSQL
# through the postgres plugin (bin/plugins/postgres.wasm: the host COPYs each batch into a
# stage table, the plugin moves it into PostHog's table in one transaction) vs psql's
# \copy of the same rows, as CSV, into a table of the same columns. Both start from an empty
# table; both are whole processes, run alternately, REPS times; the ratio is psql's time
# over Sluice's (1.0: as fast as \copy).
#   SLUICE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:55432/sluice_test bash bench/postgres.sh
#   EVENTS=200000 REPS=5 bash bench/postgres.sh
# Needs psql, the plugins (make plugins) and a loopback PostgreSQL; it creates the database
# sqlcap_bench on it and leaves it (drop it with: DROP DATABASE sqlcap_bench).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true GCE_METADATA_HOST=127.0.0.1:1 SNOWFLAKE_DISABLE_PLATFORM_DETECTION=true
events=${EVENTS:-1000000}
reps=${REPS:-3}
url=${SLUICE_TEST_POSTGRES_URL:?set SLUICE_TEST_POSTGRES_URL to a loopback PostgreSQL}
base=${url%%\?*}
dsn="${base%/*}/sqlcap_bench?sslmode=disable"
work=${TMPDIR:-/tmp}/sluice-pgbench
mkdir -p "$work"
psql "$url" -qc "CREATE DATABASE sqlcap_bench" 2>/dev/null || true
go build -o "$work/sluice-pgbench" ./bench/cmd/sluice-pgbench
if [ ! -s "$work/events-$events.slb" ]; then
  "$work/sluice-pgbench" -prepare "$work/events-$events.slb" -events "$events"
fi
# One export makes the table and, copied out, the CSV psql loads: the same rows.
"$work/sluice-pgbench" -run "$work/events-$events.slb" -dsn "$dsn" -table events_sluice
psql "$dsn" -qc "\copy events_sluice TO '$work/events-$events.csv' CSV"
psql "$dsn" -qc "CREATE TABLE IF NOT EXISTS events_copy (LIKE events_sluice INCLUDING ALL)"
ratios=()
for i in $(seq 1 "$reps"); do
  s0=$(date +%s.%N)
  "$work/sluice-pgbench" -run "$work/events-$events.slb" -dsn "$dsn" -table events_sluice >/dev/null
  s1=$(date +%s.%N)
  psql "$dsn" -qc "TRUNCATE events_copy"
  psql "$dsn" -qc "\copy events_copy FROM '$work/events-$events.csv' CSV"
  s2=$(date +%s.%N)
  r=$(echo "($s2 - $s1) / ($s1 - $s0)" | bc -l)
  ratios+=("$r")
  printf 'rep %d: sluice %.1f s, psql \\copy %.1f s, ratio %.2f (load %s)\n' "$i" "$(echo "$s1 - $s0" | bc -l)" \
    "$(echo "$s2 - $s1" | bc -l)" "$r" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
printf 'ratios (psql/sluice): %s\n' "${ratios[*]}"
