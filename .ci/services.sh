#!/usr/bin/env bash
# Starts (or reuses) every loopback server the integration suites need, one script per
# server under .ci/services/, and prints the environment that points the tests at them:
#   eval "$(bash .ci/services.sh)"
# Progress goes to stderr. With SLUICE_REQUIRE_SERVICES=1 (CI) a server that did not start
# is an error: the suites skip without their server, and a skip would hide a broken setup.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=()
for svc in .ci/services/*.sh; do
  name=$(basename "$svc" .sh)
  echo "services: starting $name" >&2
  if out=$(bash "$svc"); then
    echo "$out"
    eval "$out"
  else
    echo "services: $name did not start" >&2
    failed+=("$name")
  fi
done

if [ "${SLUICE_REQUIRE_SERVICES:-0}" = 1 ]; then
  for v in SLUICE_TEST_POSTGRES_URL SLUICE_TEST_CLICKHOUSE_DSN SLUICE_TEST_CHDB_DSN SLUICE_TEST_S3_ENDPOINT SLUICE_TEST_AZURITE_CONNECTION_STRING; do
    if [ -z "${!v:-}" ]; then
      echo "services: $v is not set: a server did not start (${failed[*]:-})" >&2
      exit 1
    fi
  done
fi
