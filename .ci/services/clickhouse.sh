#!/usr/bin/env bash
# Start a loopback ClickHouse server (Debian's 18.16) for Sluice's source tests.
# Idempotent: installs the packages if missing, reuses a running server.
# Progress goes to stderr; stdout carries only the line CI evaluates:
#   export SLUICE_TEST_CLICKHOUSE_DSN=clickhouse://127.0.0.1:9000/default
set -euo pipefail

CH_DIR="${SLUICE_CLICKHOUSE_DIR:-${TMPDIR:-/tmp}/sluice-clickhouse}"
DSN="clickhouse://127.0.0.1:9000/default"

log() { echo "clickhouse.sh: $*" >&2; }

ping_ok() { curl -fs --max-time 2 http://127.0.0.1:8123/ping >/dev/null 2>&1; }

if ping_ok; then
  log "server already answering on 127.0.0.1:8123"
  echo "export SLUICE_TEST_CLICKHOUSE_DSN=${DSN}"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v clickhouse-server >/dev/null 2>&1 || ! command -v clickhouse-client >/dev/null 2>&1; then
  log "installing clickhouse-server clickhouse-client"
  # Keep the package's postinst from starting a system service: we run our own server.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client >&2 || {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client >&2
  }
  if [ "$policy_created" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

mkdir -p "$CH_DIR"/{data,tmp,user_files,format_schemas,log}

cat >"$CH_DIR/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>${CH_DIR}/log/clickhouse-server.log</log>
        <errorlog>${CH_DIR}/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <http_port>8123</http_port>
    <tcp_port>9000</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>${CH_DIR}/data/</path>
    <tmp_path>${CH_DIR}/tmp/</tmp_path>
    <user_files_path>${CH_DIR}/user_files/</user_files_path>
    <format_schema_path>${CH_DIR}/format_schemas/</format_schema_path>
    <users_config>${CH_DIR}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
</yandex>
XML

cat >"$CH_DIR/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
XML

RUN_AS=()
if [ "$(id -u)" -eq 0 ] && id clickhouse >/dev/null 2>&1; then
  # The server runs as root here, but prefer the package's user when it exists.
  chown -R clickhouse "$CH_DIR" 2>/dev/null || true
  RUN_AS=(runuser -u clickhouse --)
fi

log "starting clickhouse-server with $CH_DIR/config.xml"
nohup "${RUN_AS[@]}" clickhouse-server --config-file="$CH_DIR/config.xml" \
  >"$CH_DIR/log/stdout.log" 2>&1 </dev/null &
echo $! >"$CH_DIR/server.pid"

for _ in $(seq 1 120); do
  if ping_ok; then
    log "ready (pid $(cat "$CH_DIR/server.pid"))"
    echo "export SLUICE_TEST_CLICKHOUSE_DSN=${DSN}"
    exit 0
  fi
  if ! kill -0 "$(cat "$CH_DIR/server.pid")" 2>/dev/null; then
    log "server exited; last log lines:"
    tail -n 30 "$CH_DIR/log/stdout.log" "$CH_DIR/log/clickhouse-server.err.log" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.5
done
log "server did not answer /ping in 60 s"
tail -n 30 "$CH_DIR/log/clickhouse-server.err.log" >&2 2>/dev/null || true
exit 1
