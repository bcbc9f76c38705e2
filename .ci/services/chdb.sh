#!/usr/bin/env bash
# Start chdbfront for Sluice's source tests: a current ClickHouse engine (chDB, ClickHouse as a
# library, npm @chdb/lib-linux-x64-gnu) behind a loopback HTTP front that speaks ClickHouse's
# HTTP interface (internal/chdbfront), so clickhouse-go runs against it unmodified.
# Idempotent: downloads chDB once into a cache (~180 MB download, 566 MB libchdb.so), reuses
# a running front.
# Progress goes to stderr; stdout carries only the line CI evaluates:
#   export SLUICE_TEST_CHDB_DSN=http://127.0.0.1:8124/default
set -euo pipefail
cd "$(dirname "$0")/../.."

CHDB_PKG="@chdb/lib-linux-x64-gnu"
CHDB_VERSION="26.7.3-stable.1"
CACHE="${SLUICE_CHDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/chdb}"
LIB="$CACHE/$CHDB_VERSION/libchdb.so"
RUN_DIR="${SLUICE_CHDB_DIR:-${TMPDIR:-/tmp}/sluice-chdb}"
PORT="${SLUICE_CHDB_PORT:-8124}"
DSN="http://127.0.0.1:${PORT}/default"

log() { echo "chdb.sh: $*" >&2; }

ping_ok() { curl -fs --max-time 2 "http://127.0.0.1:${PORT}/ping" >/dev/null 2>&1; }

if ping_ok; then
  log "front already answering on 127.0.0.1:${PORT}"
  echo "export SLUICE_TEST_CHDB_DSN=${DSN}"
  exit 0
fi

t0=$(date +%s)
mkdir -p "$CACHE" "$RUN_DIR"
# One download at a time, even when several CI jobs share the cache.
exec 9>"$CACHE/.lock"
flock 9
if [ ! -s "$LIB" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    log "installing npm"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm >&2 || {
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm >&2
    }
  fi
  dl="$(mktemp -d "$CACHE/dl.XXXXXX")"
  log "downloading ${CHDB_PKG}@${CHDB_VERSION} (npm pack, ~180 MB)"
  (cd "$dl" && npm pack --silent "${CHDB_PKG}@${CHDB_VERSION}" >/dev/null 2>"$dl/npm.log") || {
    cat "$dl/npm.log" >&2
    rm -rf "$dl"
    exit 1
  }
  log "unpacking libchdb.so"
  tar -xzf "$dl"/*.tgz -C "$dl" package/libchdb.so
  mkdir -p "$(dirname "$LIB")"
  mv "$dl/package/libchdb.so" "$LIB.tmp"
  mv "$LIB.tmp" "$LIB"
  rm -rf "$dl"
  log "cached $LIB ($(( $(date +%s) - t0 ))s)"
else
  log "using cached $LIB"
fi
flock -u 9

log "building chdbfront"
go build -o "$RUN_DIR/chdbfront" ./internal/chdbfront/cmd/chdbfront >&2

# A fresh session directory: tables from an earlier run are not wanted.
rm -rf "$RUN_DIR/data"
log "starting chdbfront on 127.0.0.1:${PORT}"
# Run it from its own directory: the engine resolves paths against the working directory,
# and the checkout that started it may be deleted while the server keeps running.
cd "$RUN_DIR"
TZ=UTC CHDB_LIB_PATH="$LIB" nohup "$RUN_DIR/chdbfront" -listen "127.0.0.1:${PORT}" -path "$RUN_DIR/data" \
  >"$RUN_DIR/front.log" 2>&1 </dev/null &
echo $! >"$RUN_DIR/front.pid"

for _ in $(seq 1 120); do
  if ping_ok; then
    log "ready (pid $(cat "$RUN_DIR/front.pid"), $(( $(date +%s) - t0 ))s)"
    echo "export SLUICE_TEST_CHDB_DSN=${DSN}"
    exit 0
  fi
  if ! kill -0 "$(cat "$RUN_DIR/front.pid")" 2>/dev/null; then
    log "front exited; last log lines:"
    tail -n 30 "$RUN_DIR/front.log" >&2 || true
    exit 1
  fi
  sleep 0.5
done
log "front did not answer /ping in 60 s"
tail -n 30 "$RUN_DIR/front.log" >&2 || true
exit 1
