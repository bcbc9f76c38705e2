#!/usr/bin/env bash
# A local cluster of three `sluice serve` hosts on loopback sharing one PostgreSQL database,
# to try several hosts (docs/deploy.md). `make cluster` / `make cluster-stop`.
#
#   deploy/cluster.sh start   start hosts 1-3 on 127.0.0.1:8081-8083, print their addresses
#   deploy/cluster.sh stop    SIGTERM each host (they drain) and wait for them to exit
#
# The database: SLUICE_DATABASE_URL if set, else the repo's loopback PostgreSQL
# (.ci/services/postgres.sh, port 55432) with a database $SLUICE_CLUSTER_DB (default
# sluice_cluster). Events: the
# ClickHouse at SLUICE_CLICKHOUSE_DSN if set, else each host's own embedded store (then a
# run exports only what was captured through the host that runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${SLUICE_CLUSTER_DIR:-data/cluster}
BIN=${SLUICE_BIN:-bin/sluice}
PORTS=(8081 8082 8083)

stop() {
  local pids=()
  for i in 1 2 3; do
    local f="$DIR/host-$i.pid"
    [ -f "$f" ] || continue
    local pid; pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      echo "host-$i: SIGTERM (pid $pid), draining"
      kill -TERM "$pid"
      pids+=("$pid")
    fi
    rm -f "$f"
  done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  done
  echo "cluster stopped"
}

start() {
  mkdir -p "$DIR"
  for i in 1 2 3; do
    if [ -f "$DIR/host-$i.pid" ] && kill -0 "$(cat "$DIR/host-$i.pid")" 2>/dev/null; then
      echo "host-$i is already running (pid $(cat "$DIR/host-$i.pid")); make cluster-stop first" >&2
      exit 1
    fi
  done
  local db=${SLUICE_DATABASE_URL:-} name=${SLUICE_CLUSTER_DB:-sluice_cluster}
  if [ -z "$db" ]; then
    eval "$(bash .ci/services/postgres.sh)"
    local psql; psql=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -1)/psql
    if ! "$psql" -h 127.0.0.1 -p 55432 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
      "$psql" -h 127.0.0.1 -p 55432 -U postgres -d postgres -qc "CREATE DATABASE $name"
    fi
    db="postgres://postgres@127.0.0.1:55432/$name?sslmode=disable"
  fi
  # One secret key and one admin token for all hosts, kept across restarts.
  [ -s "$DIR/secret.key" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/secret.key"; chmod 600 "$DIR/secret.key"; }
  [ -s "$DIR/api-token" ] || { echo "sluice_admin_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$DIR/api-token"; chmod 600 "$DIR/api-token"; }
  local key token; key=$(cat "$DIR/secret.key"); token=$(cat "$DIR/api-token")
  for i in 1 2 3; do
    local port=${PORTS[$((i-1))]}
    SLUICE_DATABASE_URL="$db" SLUICE_SECRET_KEY="$key" SLUICE_API_TOKEN="$token" SLUICE_HOST_ID="host-$i" \
      SLUICE_HTTP_ADDR="127.0.0.1:$port" SLUICE_DATA_DIR="$DIR/host-$i" \
      nohup "$BIN" serve --plugins-dir bin/plugins --lock plugins.lock >"$DIR/host-$i.log" 2>&1 </dev/null &
    echo $! > "$DIR/host-$i.pid"
  done
  for i in 1 2 3; do
    local port=${PORTS[$((i-1))]} ok=0
    # The first start compiles the plugins: allow a few minutes.
    for _ in $(seq 1 600); do
      if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ok=1; break; fi
      if ! kill -0 "$(cat "$DIR/host-$i.pid")" 2>/dev/null; then break; fi
      sleep 0.5
    done
    if [ "$ok" != 1 ]; then
      echo "host-$i did not become ready; its log ($DIR/host-$i.log) ends:" >&2
      tail -20 "$DIR/host-$i.log" >&2
      stop
      exit 1
    fi
  done
  echo "3 Sluice hosts share $(echo "$db" | sed 's#://[^@]*@#://#'):"
  for i in 1 2 3; do
    echo "  host-$i  http://127.0.0.1:${PORTS[$((i-1))]}  (log $DIR/host-$i.log)"
  done
  echo "admin token: $DIR/api-token   (curl -H \"Authorization: Bearer \$(cat $DIR/api-token)\" http://127.0.0.1:8081/api/v1/plugins)"
  echo "stop with: make cluster-stop"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
