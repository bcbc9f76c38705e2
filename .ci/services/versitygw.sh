#!/usr/bin/env bash
# Starts a local versitygw S3 server (posix backend) for the objstore tests
# and prints the environment to use it:
#   eval "$(bash .ci/services/versitygw.sh)"
# Idempotent: if a server already answers on the port, it is reused.
# Everything but the final export line goes to stderr.
set -euo pipefail

VERSION=v1.8.0
ADDR=${SLUICE_VERSITYGW_ADDR:-127.0.0.1:7070}
ACCESS=sluice-test
SECRET=sluice-test-secret
STATE=${SLUICE_VERSITYGW_DIR:-${TMPDIR:-/tmp}/sluice-versitygw}

export PATH="$PATH:/usr/local/go/bin"
GOBIN_DIR="$(go env GOBIN)"
[ -n "$GOBIN_DIR" ] || GOBIN_DIR="$(go env GOPATH)/bin"

answers() { (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}") 2>/dev/null; }

if ! answers; then
	bin="$(command -v versitygw || true)"
	[ -n "$bin" ] || { [ -x "$GOBIN_DIR/versitygw" ] && bin="$GOBIN_DIR/versitygw"; } || true
	if [ -z "$bin" ]; then
		echo "versitygw: installing $VERSION (first time takes a few minutes)" >&2
		go install "github.com/versity/versitygw/cmd/versitygw@$VERSION" >&2
		bin="$GOBIN_DIR/versitygw"
	fi
	mkdir -p "$STATE/data"
	echo "versitygw: starting $bin on $ADDR, data in $STATE/data, log $STATE/versitygw.log" >&2
	nohup "$bin" --access "$ACCESS" --secret "$SECRET" --port "$ADDR" posix "$STATE/data" \
		>"$STATE/versitygw.log" 2>&1 </dev/null &
	echo $! >"$STATE/versitygw.pid"
	for _ in $(seq 1 100); do
		answers && break
		if ! kill -0 "$(cat "$STATE/versitygw.pid")" 2>/dev/null; then
			echo "versitygw: exited early; log follows" >&2
			cat "$STATE/versitygw.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	answers || { echo "versitygw: $ADDR does not answer after 10s" >&2; cat "$STATE/versitygw.log" >&2; exit 1; }
fi

echo "export SLUICE_TEST_S3_ENDPOINT=http://$ADDR SLUICE_TEST_S3_ACCESS_KEY=$ACCESS SLUICE_TEST_S3_SECRET_KEY=$SECRET"
