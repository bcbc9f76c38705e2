// Command sluice-bench runs Sluice's export benchmarks in one process and prints a table of
// throughputs and wasm/native ratios, or (with -mem-bytes) one large export through the
// WASM path with its peak memory. Run it from the repository root (see bench/run.sh):
//
//	go run ./bench/cmd/sluice-bench -plan s3=1000000,local=300000,discard=300000 -reps 3
//	go run ./bench/cmd/sluice-bench -mem-bytes 1e9 -mem-format parquet+zstd
//
// The S3 sink is the versitygw at $SLUICE_TEST_S3_ENDPOINT (loopback only) when set, else an
// in-process gofakes3.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/bench"
)

func main() {
	plan := flag.String("plan", "s3=1000000,local=300000,discard=300000", "sink=events,... to measure, in order")
	formats := flag.String("formats", "jsonl+gzip,parquet+zstd", "formats to measure")
	reps := flag.Int("reps", 3, "repetitions; each runs wasm and native back to back (alternating which goes first)")
	batch := flag.Int("batch", 10_000, "rows per SLB1 batch")
	distinct := flag.Int("distinct", 20, "distinct batches built (the sequence cycles through them)")
	memBytes := flag.Float64("mem-bytes", 0, "memory mode: push this many uncompressed batch bytes through the WASM path")
	memFormat := flag.String("mem-format", "parquet+zstd", "memory mode: format")
	memSink := flag.String("mem-sink", "local", "memory mode: sink (local, discard, s3; the S3 server's memory is not counted only if it is another process)")
	memPath := flag.String("mem-path", "wasm", "memory mode: wasm or native")
	dir := flag.String("dir", "", "parent of the local sink's temporary directory (default: system temp)")
	flag.Parse()
	ctx := context.Background()
	_ = os.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	path, err := bench.PluginPath()
	if err != nil {
		fail(err)
	}
	t0 := time.Now()
	w, err := bench.LoadWASM(ctx, path)
	if err != nil {
		fail(err)
	}
	defer w.Close(ctx)
	fmt.Printf("# plugin %s (sha256 %s…), loaded in %v; GOMAXPROCS=%d, %s/%s, %s\n",
		path, w.Plugin.SHA256[:12], time.Since(t0).Round(time.Millisecond), goruntime.GOMAXPROCS(0),
		goruntime.GOOS, goruntime.GOARCH, goruntime.Version())

	if *memBytes > 0 {
		f, err := bench.FormatByName(*memFormat)
		if err != nil {
			fail(err)
		}
		memory(ctx, w, f, *memSink, *memPath, *dir, int64(*memBytes), *batch)
		return
	}

	type cell struct {
		sink   string
		events int
		f      bench.Format
		data   *bench.Data
		wasm   []float64
		native []float64
		ratios []float64
		out    int64
	}
	var cells []*cell
	sinks := map[string]*bench.Sink{}
	datas := map[int]*bench.Data{}
	for _, p := range strings.Split(*plan, ",") {
		name, nStr, ok := strings.Cut(strings.TrimSpace(p), "=")
		n, err := strconv.Atoi(nStr)
		if !ok || err != nil || n <= 0 {
			fail(fmt.Errorf("-plan: %q is not sink=events", p))
		}
		s, err := bench.OpenSink(ctx, name, *dir)
		if err != nil {
			fail(err)
		}
		defer s.Close()
		sinks[name] = s
		fmt.Printf("# sink %s: %s\n", name, s.Desc)
		if datas[n] == nil {
			t := time.Now()
			datas[n] = bench.NewData(n, *batch, *distinct)
			fmt.Printf("# %d events: %.1f MB of SLB1 batches (%d B/event), %d-row batches, built in %v\n",
				n, float64(datas[n].Bytes)/1e6, datas[n].Bytes/int64(n), *batch, time.Since(t).Round(time.Millisecond))
		}
		for _, fn := range strings.Split(*formats, ",") {
			f, err := bench.FormatByName(strings.TrimSpace(fn))
			if err != nil {
				fail(err)
			}
			cells = append(cells, &cell{sink: name, events: n, f: f, data: datas[n]})
		}
	}
	start := time.Now()
	for r := 0; r < *reps; r++ {
		for _, c := range cells {
			run := func(kind string) float64 {
				goruntime.GC()
				var res bench.Result
				var err error
				if kind == "wasm" {
					res, err = w.Run(ctx, sinks[c.sink].Store, c.f, c.data)
				} else {
					res, err = bench.RunNative(ctx, sinks[c.sink].Store, c.f, c.data)
				}
				if err != nil {
					fail(fmt.Errorf("%s %s %s: %w", c.sink, c.f.Name, kind, err))
				}
				if res.Records != int64(c.events) {
					fail(fmt.Errorf("%s %s %s: %d records, want %d", c.sink, c.f.Name, kind, res.Records, c.events))
				}
				c.out = res.Written
				return res.MBps(c.data.Bytes)
			}
			var wm, nm float64
			if r%2 == 0 {
				wm, nm = run("wasm"), run("native")
			} else {
				nm, wm = run("native"), run("wasm")
			}
			c.wasm, c.native, c.ratios = append(c.wasm, wm), append(c.native, nm), append(c.ratios, wm/nm)
			fmt.Fprintf(os.Stderr, "rep %d %-7s %-12s wasm %6.1f MB/s  native %6.1f MB/s  ratio %.3f\n", r+1, c.sink, c.f.Name, wm, nm, wm/nm)
		}
	}
	fmt.Printf("# %d reps in %v; MB/s = 10^6 bytes of uncompressed SLB1 batches per second, median of reps;\n", *reps, time.Since(start).Round(time.Second))
	fmt.Printf("# ratio = median of per-rep wasm/native (each rep runs both back to back), [min–max]\n\n")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sink\tformat\tevents\tMB in\tMB out\tnative MB/s\twasm MB/s\twasm/native\trange\ttotal-time ratio\t")
	for _, c := range cells {
		var tn, tw2 float64 // total time, in units of data bytes
		for i := range c.native {
			tn += 1 / c.native[i]
			tw2 += 1 / c.wasm[i]
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.3f\t%.3f–%.3f\t%.3f\t\n", c.sink, c.f.Name, c.events,
			float64(c.data.Bytes)/1e6, float64(c.out)/1e6, median(c.native), median(c.wasm), median(c.ratios),
			slices.Min(c.ratios), slices.Max(c.ratios), tn/tw2)
	}
	tw.Flush()

	// The sandbox alone: the same plugin with encoders that do nothing, into the discard sink.
	var big *bench.Data
	for _, d := range datas {
		if big == nil || d.Events > big.Events {
			big = d
		}
	}
	one := bench.NewData(*batch, *batch, 1)
	best := func(d *bench.Data) time.Duration {
		b := time.Duration(1<<63 - 1)
		for range 5 {
			goruntime.GC()
			r, err := w.RunNoEncode(ctx, d)
			if err != nil {
				fail(fmt.Errorf("no-encode run: %w", err))
			}
			b = min(b, r.Duration)
		}
		return b
	}
	t1, tn := best(one), best(big)
	perBatch := (tn - t1) / time.Duration(big.Batches()-1)
	fmt.Printf("\n# plugin overhead (no-op encoders, discard sink, best of 5): export of 1 batch %v; "+
		"%d batches %v; %v per extra WriteBatch of %d rows (%.0f ns/row)\n",
		t1.Round(time.Microsecond), big.Batches(), tn.Round(time.Microsecond), perBatch.Round(time.Microsecond),
		*batch, float64(perBatch.Nanoseconds())/float64(*batch))
	for _, c := range cells {
		if c.sink != "discard" {
			continue
		}
		nativeBatch := time.Duration(float64(c.data.Bytes)/float64(c.data.Batches())/(median(c.native)*1e6)*1e9) * time.Nanosecond
		fmt.Printf("#   vs native %s encoding of one batch (%v): %.2f%%\n", c.f.Name, nativeBatch.Round(time.Microsecond),
			100*float64(perBatch)/float64(nativeBatch))
	}
}

func memory(ctx context.Context, w *bench.WASM, f bench.Format, sinkName, path, dir string, bytes int64, batch int) {
	probe := bench.NewData(batch, batch, 1)
	perEvent := probe.Bytes / int64(batch)
	events := int(bytes / perEvent)
	d := bench.NewData(events, batch, 10)
	s, err := bench.OpenSink(ctx, sinkName, dir)
	if err != nil {
		fail(err)
	}
	defer s.Close()
	probe = nil
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	hwm0, rss0 := bench.ProcStatus("VmHWM"), bench.ProcStatus("VmRSS")
	fmt.Printf("# memory: %s path, %s into %s: %d events, %.0f MB uncompressed (%d batches cycled, %.0f MB resident)\n",
		path, f.Name, s.Desc, events, float64(d.Bytes)/1e6, 10, float64(d.ResidentBytes())/1e6)
	fmt.Printf("before: HeapInuse %s  Sys %s  VmRSS %s  VmHWM %s\n", mib(m.HeapInuse), mib(m.Sys), mib(rss0), mib(hwm0))
	stop := bench.SampleMem(20 * time.Millisecond)
	var res bench.Result
	if path == "native" {
		res, err = bench.RunNative(ctx, s.Store, f, d)
	} else {
		res, err = w.Run(ctx, s.Store, f, d)
	}
	peak := stop()
	if err != nil {
		fail(err)
	}
	fmt.Printf("run:    %d records, %.1f MB written, %.1f MB/s, %v\n", res.Records, float64(res.Written)/1e6, res.MBps(d.Bytes), res.Duration.Round(time.Millisecond))
	fmt.Printf("peak:   HeapInuse %s  HeapSys %s  Sys %s  (%d samples)  VmHWM %s  VmRSS after %s\n",
		mib(peak.HeapInuse), mib(peak.HeapSys), mib(peak.Sys), peak.Samples, mib(bench.ProcStatus("VmHWM")), mib(bench.ProcStatus("VmRSS")))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mib[T int64 | uint64](n T) string {
	if n < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sluice-bench:", err)
	os.Exit(1)
}
