#!/usr/bin/env bash
# Start a loopback PostgreSQL server (Debian's package) for Sluice's storage tests.
# Idempotent: installs the package if missing, reuses a running server.
# Progress goes to stderr; stdout carries only the line CI evaluates:
#   export SLUICE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:55432/sluice_test?sslmode=disable
set -euo pipefail

PG_DIR="${SLUICE_POSTGRES_DIR:-/tmp/sluice-pg}"
PG_PORT=55432
PG_DB=sluice_test
URL="postgres://postgres@127.0.0.1:${PG_PORT}/${PG_DB}?sslmode=disable"

log() { echo "postgres.sh: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/postgres" ]; then echo "$d"; return 0; fi
  done
  return 1
}

if ! BIN="$(find_bindir)"; then
  log "installing postgresql"
  # Keep the package's postinst from starting a system cluster: we run our own.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 || {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
  }
  if [ "$policy_created" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  BIN="$(find_bindir)" || { log "no postgres binary after install"; exit 1; }
fi
log "using $BIN"

# Run a PostgreSQL tool as the postgres user (the server refuses to run as root).
as_pg() {
  if [ "$(id -un)" = postgres ]; then "$@"
  elif [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"
  else sudo -u postgres -- "$@"
  fi
}

ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres >/dev/null 2>&1; }

if ready; then
  log "server already answering on 127.0.0.1:${PG_PORT}"
else
  $SUDO mkdir -p "$PG_DIR"
  $SUDO chown postgres:postgres "$PG_DIR"
  $SUDO chmod 700 "$PG_DIR"
  if [ ! -s "$PG_DIR/data/PG_VERSION" ]; then
    log "initdb in $PG_DIR/data"
    as_pg rm -rf "$PG_DIR/data"
    as_pg "$BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >&2
  fi
  # A stale pid file from a killed server would block the start.
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then
    pid="$(head -1 "$PG_DIR/data/postmaster.pid")"
    if ! kill -0 "$pid" 2>/dev/null; then as_pg rm -f "$PG_DIR/data/postmaster.pid"; fi
  fi
  log "starting postgres on 127.0.0.1:${PG_PORT}"
  as_pg nohup "$BIN/postgres" -D "$PG_DIR/data" -c listen_addresses=127.0.0.1 -p "$PG_PORT" \
    -c unix_socket_directories="$PG_DIR" -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c max_connections=200 \
    >"$PG_DIR/postgres.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    if ready; then break; fi
    sleep 0.5
  done
  if ! ready; then
    log "server did not become ready; log follows"
    tail -50 "$PG_DIR/postgres.log" >&2 || true
    exit 1
  fi
fi

if ! "$BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '${PG_DB}'" | grep -q 1; then
  log "creating database ${PG_DB}"
  "$BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB" >&2
fi

echo "export SLUICE_TEST_POSTGRES_URL=${URL}"
