#!/usr/bin/env bash
# Runs Sluice's export benchmarks and prints the wasm/native ratios and the peak memory of
# a 1 GB export. About 4 minutes on 2 cores. From anywhere:
#   bash bench/run.sh
# Environment (all optional):
#   SLUICE_BENCH_PLAN   sink=events,...      default s3=1000000,local=300000,discard=300000
#   SLUICE_BENCH_REPS   repetitions          default 3
#   SLUICE_BENCH_MEM    bytes for the memory runs (0 skips them)   default 1e9
#   SLUICE_BENCH_GOTEST=1  also run `go test -bench Export -count 3` (adds ~4 minutes)
#   SLUICE_BENCH_NO_VERSITYGW=1  use the in-process gofakes3 instead of starting versitygw
# Nothing leaves the machine: S3 is a loopback versitygw (or gofakes3), static credentials.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export AWS_EC2_METADATA_DISABLED=true

PLAN=${SLUICE_BENCH_PLAN:-s3=1000000,local=300000,discard=300000}
REPS=${SLUICE_BENCH_REPS:-3}
MEM=${SLUICE_BENCH_MEM:-1e9}

if [ ! -f bin/plugins/s3.wasm ]; then
	echo "== building bin/plugins/s3.wasm" >&2
	make --no-print-directory bin/plugins/s3.wasm >&2
fi

if [ -z "${SLUICE_BENCH_NO_VERSITYGW:-}" ]; then
	if env_line="$(bash .ci/services/versitygw.sh)"; then
		eval "$env_line"
	else
		echo "== versitygw unavailable: the s3 sink falls back to an in-process gofakes3" >&2
	fi
else
	unset SLUICE_TEST_S3_ENDPOINT || true
fi
case "${SLUICE_TEST_S3_ENDPOINT:-}" in
"" | http://127.* | http://localhost* | http://\[::1\]*) ;;
*) echo "SLUICE_TEST_S3_ENDPOINT=$SLUICE_TEST_S3_ENDPOINT is not loopback; refusing" >&2; exit 1 ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/sluice-bench" ./bench/cmd/sluice-bench

echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "== throughput: wasm path vs native path (plan $PLAN, $REPS reps)"
"$tmp/sluice-bench" -plan "$PLAN" -reps "$REPS"

if [ "$MEM" != "0" ]; then
	# One process per run: VmHWM is a process-wide high-water mark.
	for fmt in parquet+zstd jsonl+gzip; do
		for bytes in 2e8 "$MEM"; do
			echo
			echo "== memory: $bytes bytes through the WASM path, $fmt, local dir"
			"$tmp/sluice-bench" -mem-bytes "$bytes" -mem-format "$fmt" -mem-sink local
		done
	done
fi

if [ -n "${SLUICE_BENCH_GOTEST:-}" ]; then
	echo
	echo "== go test -bench Export -count 3 (SLUICE_BENCH_EVENTS=${SLUICE_BENCH_EVENTS:-200000})"
	go test -run '^$' -bench Export -count 3 ./bench/
fi
