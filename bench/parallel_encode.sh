#!/usr/bin/env bash
# Parallel block compression vs one serial stream, side by side (host/encode
# BenchmarkParallelEncode: one file of 8 x 10,000 events, ~50 MB of SLB1).
#
# For each repetition and each GOMAXPROCS in $CPUS, runs "old" (BlockSize(0): one stream,
# as before) and "new" (defaults: 1 MiB blocks, GOMAXPROCS workers) back to back, alternating
# which goes first, then prints new/old throughput ratios (min / median / max over the
# repetitions) and the machine's load.
#
#   bash bench/parallel_encode.sh                    # jsonl+gzip, -cpu 1,2,4, 3 reps
#   REPS=5 CASE='csv\+gzip' bash bench/parallel_encode.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
CPUS=${CPUS:-"1 2 4"}
CASE=${CASE:-'jsonl\+gzip'}
BENCHTIME=${BENCHTIME:-5x}
bin=$(mktemp -d)/encode.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" ./host/encode/
echo "load before: $(uptime)"
results=$(mktemp)
for rep in $(seq 1 "$REPS"); do
  for cpu in $CPUS; do
    order="old new"
    if (( rep % 2 == 0 )); then order="new old"; fi
    for v in $order; do
      tf=$(mktemp)
      mbs=$(/usr/bin/time -o "$tf" -f '%e %U %S' "$bin" -test.run '^$' -test.bench "ParallelEncode/${CASE}/${v}\$" \
              -test.benchtime "$BENCHTIME" -test.cpu "$cpu" |
            awk '/MB\/s/ { for (i = 1; i <= NF; i++) if ($(i) == "MB/s") print $(i-1) }')
      # cores used by the whole process (CPU seconds / wall seconds): what the machine gave it
      cores=$(awk '{ printf "%.2f", ($2 + $3) / $1 }' "$tf"); rm -f "$tf"
      echo "$rep $cpu $v $mbs $cores" | tee -a "$results"
    done
  done
done
echo "load after: $(uptime)"
echo
echo "columns of the runs above: rep GOMAXPROCS variant MB/s cores-used"
echo
echo "GOMAXPROCS | old MB/s (median) | new MB/s (median) | new/old min | median | max | cores used old / new (median)"
for cpu in $CPUS; do
  awk -v cpu="$cpu" '
    $2 == cpu && $3 == "old" { old[$1] = $4; oc[$1] = $5 }
    $2 == cpu && $3 == "new" { new[$1] = $4; nc[$1] = $5 }
    function median(a, n,   s, i, j, t) {
      for (i = 1; i <= n; i++) s[i] = a[i]
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (s[j] < s[i]) { t = s[i]; s[i] = s[j]; s[j] = t }
      return n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
    }
    END {
      n = 0
      for (r in old) { n++; o[n] = old[r]; w[n] = new[r]; q[n] = new[r] / old[r]; c1[n] = oc[r]; c2[n] = nc[r] }
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (q[j] < q[i]) { t = q[i]; q[i] = q[j]; q[j] = t }
      printf "%d | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f / %.2f\n", cpu, median(o, n), median(w, n), q[1], median(q, n), q[n], median(c1, n), median(c2, n)
    }' "$results"
done
