#!/usr/bin/env bash
# End-to-end benchmark of a real `sluice serve`: ClickHouse 18.16 -> s3 plugin (JSON Lines +
# gzip) -> versitygw, against `clickhouse-client ... FORMAT JSONEachRow | gzip -1` on the same
# rows, and the peak RSS of exporting 1, 2.4 and 5 GB hourly intervals. From anywhere:
#   bash bench/e2e.sh
# About 15 minutes on 2 cores (loading 17.5M events into ClickHouse takes ~2.5 of them).
# Environment (all optional):
#   SLUICE_E2E_EVENTS   events of the interval timed against clickhouse-client   default 2000000
#   SLUICE_E2E_REPS     repetitions of that comparison (alternating order)         default 3
#   SLUICE_E2E_RSS      event counts of the intervals whose peak RSS is measured   default 2000000,5000000,10500000
#                       (10.5M events = 5.0 GB of event data; empty skips the RSS runs)
#   SLUICE_E2E_SKIP_E2E=1   only the RSS runs
#   SLUICE_E2E_SKIP_PLAIN=1 skip the plain (unsorted) clickhouse-client dump
#   SLUICE_E2E_SLUICE_ENV   extra environment of sluice serve, comma-separated K=V (e.g. GOMEMLIMIT=200MiB)
#   SLUICE_E2E_KEEP=1   keep the ClickHouse database sluice_bench (the next run skips loading)
#   SLUICE_E2E_DB       the ClickHouse database                                    default sluice_bench
#   SLUICE_E2E_SKIP_SAME=1  skip the clickhouse-client dump of Sluice's own sorted query
#   SLUICE_E2E_VARIANTS sluice configurations timed side by side in every repetition,
#                       ';'-separated name[@binary][:K=V,K=V], e.g.
#                       'p1:GOMAXPROCS=1;p2:GOMAXPROCS=2;p4:GOMAXPROCS=4'; the binary "base" is
#                       sluice built from the commit SLUICE_E2E_BASE_REF (e.g. HEAD~1)
#   SLUICE_E2E_PROFILE=file  after the reps, one more export of the first variant with a CPU
#                       profile of sluice serve (a build with net/http/pprof on loopback,
#                       added by go build -overlay; the timed builds do not have it)
#   SLUICE_E2E_EXPORTS  RSS runs: this many exports backfill the interval at once, in one process   default 1
#   SLUICE_E2E_SLUICE_ARGS  extra arguments of sluice serve (e.g. "--backfill-parallelism 4")
#   SLUICE_E2E_SLUICE   a sluice binary to measure instead of building this tree's
#   SLUICE_E2E_DEST     RSS runs: the stores exported to, in turn for each size, comma-separated:
#                       s3 (versitygw, s3 plugin) and/or azure (Azurite, azure-blob plugin, needs
#                       SLUICE_TEST_AZURITE_CONNECTION_STRING; .ci/services/azurite.sh)   default s3
# Needs ~8 GB free under /tmp (ClickHouse data + its external sort); the S3 objects are
# deleted after each run. Nothing leaves the machine: ClickHouse and versitygw listen on
# 127.0.0.1, and the helper refuses non-loopback endpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export AWS_EC2_METADATA_DISABLED=true

echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
df -h /tmp | tail -n 1 | awk '{print "== free under /tmp: " $4}'
avail_kb=$(df -Pk /tmp | awk 'NR==2 {print $4}')
if [ "${avail_kb:-0}" -lt $((8 * 1024 * 1024)) ]; then
	echo "less than 8 GB free under /tmp; refusing" >&2
	exit 1
fi

if [ ! -f bin/plugins/s3.wasm ]; then
	echo "== building bin/plugins/s3.wasm" >&2
	make --no-print-directory bin/plugins/s3.wasm >&2
fi
eval "$(bash .ci/services/versitygw.sh)"
eval "$(bash .ci/services/clickhouse.sh)"
case ",${SLUICE_E2E_DEST:-s3}," in
*,azure,*)
	[ -f bin/plugins/azure-blob.wasm ] || make --no-print-directory bin/plugins/azure-blob.wasm >&2
	eval "$(bash .ci/services/azurite.sh)"
	;;
esac
for u in "$SLUICE_TEST_S3_ENDPOINT" "$SLUICE_TEST_CLICKHOUSE_DSN"; do
	case "$u" in
	http://127.* | clickhouse://127.*) ;;
	*) echo "$u is not loopback; refusing" >&2; exit 1 ;;
	esac
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sluice="${SLUICE_E2E_SLUICE:-}"
if [ -z "$sluice" ]; then
	CGO_ENABLED=0 go build -trimpath -o "$tmp/sluice" ./cmd/sluice # as make build
	sluice="$tmp/sluice"
fi
go build -o "$tmp/sluice-e2e" ./bench/cmd/sluice-e2e
if [ -n "${SLUICE_E2E_BASE_REF:-}" ]; then
	mkdir "$tmp/base-src"
	git archive "$SLUICE_E2E_BASE_REF" | tar -x -C "$tmp/base-src"
	(cd "$tmp/base-src" && go build -o "$tmp/sluice-base" ./cmd/sluice)
	echo "== base: $(git rev-parse --short "$SLUICE_E2E_BASE_REF") built as $tmp/sluice-base"
fi
if [ -n "${SLUICE_E2E_PROFILE:-}" ]; then
	# The profiled build: the same source plus one file serving net/http/pprof on the
	# loopback address in SLUICE_BENCH_PPROF_ADDR.
	cat >"$tmp/pprof.go" <<'GO'
package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if a := os.Getenv("SLUICE_BENCH_PPROF_ADDR"); a != "" {
		go func() { _ = http.ListenAndServe(a, nil) }()
	}
}
GO
	printf '{"Replace":{"%s":"%s"}}' "$PWD/cmd/sluice/zz_bench_pprof.go" "$tmp/pprof.go" >"$tmp/overlay.json"
	go build -overlay "$tmp/overlay.json" -o "$tmp/sluice-pprof" ./cmd/sluice
fi

args=(-sluice "$sluice" -work "$tmp" -db "${SLUICE_E2E_DB:-sluice_bench}"
	-exports "${SLUICE_E2E_EXPORTS:-1}" -sluice-args "${SLUICE_E2E_SLUICE_ARGS:-}"
	-e2e-events "${SLUICE_E2E_EVENTS:-2000000}" -reps "${SLUICE_E2E_REPS:-3}"
	-rss "${SLUICE_E2E_RSS-2000000,5000000,10500000}"
	-sluice-env "${SLUICE_E2E_SLUICE_ENV:-}" -label "${SLUICE_E2E_SLUICE_ENV:-defaults}"
	-dest "${SLUICE_E2E_DEST:-s3}")
if [ -n "${SLUICE_E2E_VARIANTS:-}" ]; then
	IFS=';' read -ra vs <<<"$SLUICE_E2E_VARIANTS"
	for v in "${vs[@]}"; do args+=(-variant "${v/@base/@$tmp/sluice-base}"); done
fi
[ -n "${SLUICE_E2E_SKIP_SAME:-}" ] && args+=(-skip-same)
[ -n "${SLUICE_E2E_PROFILE:-}" ] && args+=(-profile "$SLUICE_E2E_PROFILE" -profile-bin "$tmp/sluice-pprof")
[ -n "${SLUICE_E2E_SKIP_E2E:-}" ] && args+=(-skip-e2e)
[ -n "${SLUICE_E2E_SKIP_PLAIN:-}" ] && args+=(-skip-plain)
[ -n "${SLUICE_E2E_KEEP:-}" ] && args+=(-keep)
"$tmp/sluice-e2e" "${args[@]}"
