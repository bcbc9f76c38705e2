#!/usr/bin/env bash
# Capture endpoint throughput (issue 16): a real `sluice serve` (embedded store) driven by
# bench/cmd/sluice-capture with 100-event POST /batch bodies, at GOMAXPROCS 1 and 2, then
# the rate at which an export (s3 plugin, JSON Lines + gzip, local sink) drains what was
# captured. From anywhere:
#   bash bench/capture.sh
# Environment (all optional):
#   CAPTURE_EVENTS       events per timed load               default 200000
#   CAPTURE_REPS         repetitions                         default 3
#   CAPTURE_CONCURRENCY  concurrent requests                 default 8
#   CAPTURE_PROCS        GOMAXPROCS values                   default 1,2
#   CAPTURE_UUID         v7 (time-ordered, as posthog-js) or v4 (random)   default v7
#   CAPTURE_BASELINE     a second sluice binary (e.g. built from the commit before a change):
#                        the same load runs on it right after, alternating, and the A/B
#                        ratio is printed                    default none
#   CAPTURE_DRAIN_EVENTS events captured then exported (0 skips; waits for the current
#                        5-minute interval to end, up to 5 min)   default 1000000
# Nothing leaves the machine: every process listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export AWS_EC2_METADATA_DISABLED=true

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "== building sluice and the load generator" >&2
CGO_ENABLED=0 go build -trimpath -o "$tmp/sluice" ./cmd/sluice
go build -o "$tmp/sluice-capture" ./bench/cmd/sluice-capture
if [ ! -f bin/plugins/s3.wasm ] && [ "${CAPTURE_DRAIN_EVENTS:-1000000}" != 0 ]; then
	echo "== building bin/plugins/s3.wasm (the drain exports with it)" >&2
	make --no-print-directory bin/plugins/s3.wasm >&2
fi
baseline=()
if [ -n "${CAPTURE_BASELINE:-}" ]; then
	baseline=(-baseline "$CAPTURE_BASELINE")
fi
echo "== $(uname -m), $(nproc) CPUs, $(uptime)"
"$tmp/sluice-capture" -sluice "$tmp/sluice" "${baseline[@]}" \
	-plugins-dir bin/plugins -lock plugins.lock \
	-events "${CAPTURE_EVENTS:-200000}" -reps "${CAPTURE_REPS:-3}" \
	-concurrency "${CAPTURE_CONCURRENCY:-8}" -procs "${CAPTURE_PROCS:-1,2}" -uuid "${CAPTURE_UUID:-v7}" \
	-drain-events "${CAPTURE_DRAIN_EVENTS:-1000000}" -work "$tmp"
echo "== $(uptime)"
