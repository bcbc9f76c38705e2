// Command sluice-capture measures the capture endpoint of a real `sluice serve` (embedded
// store) and the rate at which an export drains what it captured (see bench/capture.sh):
//
//   - capture: a bounded load of -events events in -batch-event POST /batch bodies
//     (PostHog-shaped, internal/demo, fresh uuids per request) from -concurrency workers,
//     into a fresh data dir, for each GOMAXPROCS in -procs, -reps times; with -baseline,
//     a second binary runs the same load right after (alternating which goes first) and the
//     ratio is printed. Every run checks afterwards that the store holds exactly the
//     acknowledged events;
//   - drain: -drain-events captured once, then an "every 5 minutes" export (first-party s3
//     plugin, JSON Lines + gzip, to the local sink, DATA_DIR/exports) backfilled
//     over them, timed by the runs' own started_at..finished_at, -reps times per GOMAXPROCS.
//
// Everything stays on 127.0.0.1.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/bench"
	_ "modernc.org/sqlite"
)

type config struct {
	sluice, baseline, pluginsDir, lock, work, key string
	procs                                         []int
	reps, events, batch, conc, warmup             int
	drainEvents                                   int
	randomUUIDs                                   bool
}

func main() {
	var c config
	var procs string
	flag.StringVar(&c.sluice, "sluice", "bin/sluice", "sluice binary measured (A)")
	flag.StringVar(&c.baseline, "baseline", "", "second sluice binary (B) run with the same load right after A, alternating; empty: none")
	flag.StringVar(&c.pluginsDir, "plugins-dir", "bin/plugins", "built first-party plugins")
	flag.StringVar(&c.lock, "lock", "plugins.lock", "plugins.lock")
	flag.StringVar(&c.work, "work", "", "scratch directory (default: a temp dir, removed)")
	flag.StringVar(&c.key, "key", "phc_sluice_bench", "capture project key")
	flag.StringVar(&procs, "procs", "1,2", "GOMAXPROCS values of sluice serve")
	flag.IntVar(&c.reps, "reps", 3, "repetitions")
	flag.IntVar(&c.events, "events", 200_000, "events per capture load (whole batches)")
	flag.IntVar(&c.batch, "batch", 100, "events per POST /batch")
	flag.IntVar(&c.conc, "concurrency", 8, "concurrent requests")
	flag.IntVar(&c.warmup, "warmup", 2_000, "events sent before the timed load")
	uuids := flag.String("uuid", "v7", "uuids of the events: v7 (time-ordered, as posthog-js) or v4 (random, as server SDKs)")
	flag.IntVar(&c.drainEvents, "drain-events", 0, "events captured and then exported to measure the drain rate (0: no drain)")
	flag.Parse()
	switch *uuids {
	case "v7":
	case "v4":
		c.randomUUIDs = true
	default:
		fail(fmt.Errorf("-uuid: %q is not v7 or v4", *uuids))
	}
	for _, p := range strings.Split(procs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			fail(fmt.Errorf("-procs: %q is not a positive integer", p))
		}
		c.procs = append(c.procs, n)
	}
	if c.work == "" {
		d, err := os.MkdirTemp("", "sluice-capture-")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(d)
		c.work = d
	}
	ctx := context.Background()
	if err := capture(ctx, c); err != nil {
		fail(err)
	}
	if c.drainEvents > 0 {
		if err := drain(ctx, c); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sluice-capture:", err)
	os.Exit(1)
}

// ---- capture ----

func capture(ctx context.Context, c config) error {
	b, err := newBodies(c.batch, 16, c.key)
	if err != nil {
		return err
	}
	b.random = c.randomUUIDs
	kind := "time-ordered (v7-like)"
	if b.random {
		kind = "random (v4)"
	}
	fmt.Printf("== capture: %d events per load in POST /batch of %d (%d bytes per body), %s uuids, concurrency %d, %d reps\n",
		c.events, c.batch, len(b.tmpl[0]), kind, c.conc, c.reps)
	fmt.Printf("   load average before: %s\n", bench.LoadAvg())
	bins := []string{c.sluice}
	if c.baseline != "" {
		bins = append(bins, c.baseline)
	}
	type row struct {
		rates [][]float64 // per binary
		p50   [][]time.Duration
		p99   [][]time.Duration
		cpu   [][]float64
		ratio []float64
	}
	rows := map[int]*row{}
	for rep := range c.reps {
		for _, p := range c.procs {
			r := rows[p]
			if r == nil {
				r = &row{rates: make([][]float64, len(bins)), p50: make([][]time.Duration, len(bins)),
					p99: make([][]time.Duration, len(bins)), cpu: make([][]float64, len(bins))}
				rows[p] = r
			}
			order := []int{0, 1}[:len(bins)]
			if rep%2 == 1 {
				slices.Reverse(order)
			}
			got := make([]float64, len(bins))
			for _, i := range order {
				res, err := captureOnce(ctx, c, bins[i], p, b, fmt.Sprintf("cap-%d-%d-%d", p, rep, i))
				if err != nil {
					return fmt.Errorf("%s GOMAXPROCS=%d: %w", bins[i], p, err)
				}
				got[i] = res.rate()
				r.rates[i] = append(r.rates[i], res.rate())
				r.p50[i] = append(r.p50[i], res.pct(0.50))
				r.p99[i] = append(r.p99[i], res.pct(0.99))
				r.cpu[i] = append(r.cpu[i], res.cpuPerEvent())
				fmt.Printf("   rep %d GOMAXPROCS=%d %-28s %8.0f events/s  p50 %6.1f ms  p99 %6.1f ms  server CPU %5.1f µs/event  (%.1f s, %.0f MB/s of JSON)  load %s\n",
					rep+1, p, filepath.Base(filepath.Dir(bins[i]))+"/"+filepath.Base(bins[i]), res.rate(),
					ms(res.pct(0.50)), ms(res.pct(0.99)), res.cpuPerEvent(), res.elapsed.Seconds(), float64(res.bytes)/1e6/res.elapsed.Seconds(), bench.LoadAvg())
			}
			if len(bins) == 2 {
				r.ratio = append(r.ratio, got[0]/got[1])
			}
		}
	}
	fmt.Printf("\n| binary | GOMAXPROCS | events/s (median) | range | p50 ms (median) | p99 ms (median) | server CPU µs/event (median) | range |\n|---|---:|---:|---|---:|---:|---:|---|\n")
	for _, p := range c.procs {
		r := rows[p]
		for i, bin := range bins {
			lo, hi := slices.Min(r.rates[i]), slices.Max(r.rates[i])
			fmt.Printf("| %s | %d | %.0f | %.0f–%.0f | %.1f | %.1f | %.1f | %.1f–%.1f |\n", bin, p, median(r.rates[i]), lo, hi,
				ms(medianD(r.p50[i])), ms(medianD(r.p99[i])), median(r.cpu[i]), slices.Min(r.cpu[i]), slices.Max(r.cpu[i]))
		}
		if len(r.ratio) > 0 {
			fmt.Printf("| A/B ratio | %d | %.2f | %.2f–%.2f | | | | |\n", p, median(r.ratio), slices.Min(r.ratio), slices.Max(r.ratio))
		}
	}
	fmt.Printf("   load average after: %s\n", bench.LoadAvg())
	return nil
}

func captureOnce(ctx context.Context, c config, bin string, procs int, b *bodies, name string) (loadResult, error) {
	data := filepath.Join(c.work, name)
	defer os.RemoveAll(data)
	s, err := startServe(c, bin, data, procs, false)
	if err != nil {
		return loadResult{}, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.conc}}
	url := s.base + "/batch"
	var res loadResult
	if _, err = drive(ctx, client, url, b, c.batch, c.warmup, c.conc); err == nil {
		cpu0 := bench.ProcCPU(s.pid)
		res, err = drive(ctx, client, url, b, c.batch, c.events, c.conc)
		res.serverCPU = bench.ProcCPU(s.pid) - cpu0
	}
	client.CloseIdleConnections()
	if serr := s.stop(err != nil); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return res, err
	}
	want := int64(roundUp(c.warmup, c.batch) + res.events)
	if n, err := countEvents(filepath.Join(data, "events.db")); err != nil || n != want {
		return res, fmt.Errorf("the store holds %d events after the load, want %d (%v)", n, want, err)
	}
	return res, nil
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

func countEvents(path string) (int64, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.QueryRow("SELECT count(*) FROM events").Scan(&n)
	return n, err
}

// ---- drain ----

func drain(ctx context.Context, c config) error {
	b, err := newBodies(c.batch, 16, c.key)
	if err != nil {
		return err
	}
	data := filepath.Join(c.work, "drain")
	defer os.RemoveAll(data)
	fmt.Printf("\n== drain: %d events captured, then exported by the s3 plugin (JSON Lines + gzip) to the local sink (DATA_DIR/exports), %d reps\n",
		c.drainEvents, c.reps)
	s, err := startServe(c, c.sluice, data, 2, false)
	if err != nil {
		return err
	}
	t0 := time.Now().UTC()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.conc}}
	res, err := drive(ctx, client, s.base+"/batch", b, c.batch, c.drainEvents, c.conc)
	t1 := time.Now().UTC()
	if serr := s.stop(err != nil); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	fmt.Printf("   captured %d events at %.0f events/s (GOMAXPROCS=2)\n", res.events, res.rate())
	// Only the s3 plugin, compiled once into the shared cache while the interval ends.
	if c.lock, err = s3Lock(c.lock, filepath.Join(c.work, "s3.lock")); err != nil {
		return err
	}
	warm, err := startServe(c, c.sluice, filepath.Join(c.work, "warm"), 2, true)
	if err != nil {
		return fmt.Errorf("compiling the s3 plugin: %w", err)
	}
	if err := warm.stop(false); err != nil {
		return err
	}
	start, end := t0.Truncate(5*time.Minute), t1.Truncate(5*time.Minute).Add(5*time.Minute)
	if wait := time.Until(end.Add(2 * time.Second)); wait > 0 {
		fmt.Printf("   waiting %s for the 5-minute interval to end\n", wait.Round(time.Second))
		time.Sleep(wait)
	}
	type row struct{ rates []float64 }
	rows := map[int]*row{}
	for rep := range c.reps {
		for _, p := range c.procs {
			rate, records, wall, err := drainOnce(c, data, p, start, end, rep)
			if err != nil {
				return fmt.Errorf("drain GOMAXPROCS=%d: %w", p, err)
			}
			if records != int64(res.events) {
				return fmt.Errorf("drain GOMAXPROCS=%d exported %d records, %d were captured", p, records, res.events)
			}
			if rows[p] == nil {
				rows[p] = &row{}
			}
			rows[p].rates = append(rows[p].rates, rate)
			fmt.Printf("   rep %d GOMAXPROCS=%d drain %8.0f events/s (runs' own time; %.1f s from backfill request to Completed)  load %s\n",
				rep+1, p, rate, wall.Seconds(), bench.LoadAvg())
		}
	}
	fmt.Printf("\n| GOMAXPROCS | drain events/s (median) | range |\n|---:|---:|---|\n")
	for _, p := range c.procs {
		r := rows[p].rates
		fmt.Printf("| %d | %.0f | %.0f–%.0f |\n", p, median(r), slices.Min(r), slices.Max(r))
	}
	return nil
}

// s3Lock writes the s3 plugin's entry of lock into a lock file of its own at path.
func s3Lock(lock, path string) (string, error) {
	raw, err := os.ReadFile(lock)
	if err != nil {
		return "", err
	}
	var l struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return "", fmt.Errorf("%s: %w", lock, err)
	}
	l.Plugins = slices.DeleteFunc(l.Plugins, func(p map[string]any) bool { return p["name"] != "s3" })
	if len(l.Plugins) != 1 {
		return "", fmt.Errorf("%s: no s3 plugin", lock)
	}
	out, _ := json.Marshal(l)
	return path, os.WriteFile(path, out, 0o640)
}

type runView struct {
	Status           string
	LatestError      string     `json:"latest_error"`
	RecordsCompleted int64      `json:"records_completed"`
	StartedAt        *time.Time `json:"started_at"`
	FinishedAt       *time.Time `json:"finished_at"`
}

// drainOnce backfills [start, end) of a new export and returns events per second of the
// runs' own time (backfill parallelism 1: the runs do not overlap).
func drainOnce(c config, data string, procs int, start, end time.Time, rep int) (float64, int64, time.Duration, error) {
	s, err := startServe(c, c.sluice, data, procs, true, "--backfill-parallelism", "1")
	if err != nil {
		return 0, 0, 0, err
	}
	var failed error
	defer func() { _ = s.stop(failed != nil) }()
	bucket := fmt.Sprintf("sluice-capture-drain-%d-%d-%d", procs, rep, time.Now().UnixNano())
	cfg := map[string]any{"bucket_name": bucket, "endpoint_url": "local", "prefix": "events",
		"file_format": "JSONLines", "compression": "gzip"}
	var exp struct{ ID string }
	if failed = s.api("POST", "/api/v1/batch_exports", map[string]any{"name": bucket, "interval": "every 5 minutes",
		"end_at": end.Format(time.RFC3339), "destination": map[string]any{"type": "s3", "config": cfg}}, 201, &exp); failed != nil {
		return 0, 0, 0, failed
	}
	t0 := time.Now()
	if failed = s.api("POST", "/api/v1/batch_exports/"+exp.ID+"/backfills",
		map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, 201, nil); failed != nil {
		return 0, 0, 0, failed
	}
	want := int(end.Sub(start) / (5 * time.Minute))
	deadline := time.Now().Add(30 * time.Minute)
	for {
		var out struct{ Results []runView }
		if failed = s.api("GET", "/api/v1/batch_exports/"+exp.ID+"/runs?limit=100", nil, 200, &out); failed != nil {
			return 0, 0, 0, failed
		}
		done := 0
		var records int64
		var busy time.Duration
		for _, r := range out.Results {
			switch r.Status {
			case "Completed":
				done++
				records += r.RecordsCompleted
				if r.StartedAt != nil && r.FinishedAt != nil {
					busy += r.FinishedAt.Sub(*r.StartedAt)
				}
			case "Failed", "Cancelled":
				failed = fmt.Errorf("run %s: %s", r.Status, r.LatestError)
				return 0, 0, 0, failed
			}
		}
		if done >= want {
			wall := time.Since(t0)
			_ = s.api("DELETE", "/api/v1/batch_exports/"+exp.ID, nil, 0, nil)
			_ = os.RemoveAll(filepath.Join(data, "exports", bucket))
			return float64(records) / busy.Seconds(), records, wall, nil
		}
		if time.Now().After(deadline) {
			failed = errors.New("runs not Completed after 30 min")
			return 0, 0, 0, failed
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- sluice serve ----

type server struct {
	pid    int
	waited chan struct{}
	base   string
	log    *os.File
}

const token = "sluice-capture-bench-token"

func startServe(c config, bin, data string, procs int, plugins bool, extra ...string) (*server, error) {
	// Plugins compile once into a shared cache: each process starts like a restart.
	cache := filepath.Join(c.work, "wazero-cache")
	if err := os.MkdirAll(cache, 0o750); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(data, "cache"), 0o750); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(filepath.Join(data, "cache", "wazero")); err != nil {
		if err := os.Symlink(cache, filepath.Join(data, "cache", "wazero")); err != nil {
			return nil, err
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(c.work, filepath.Base(data)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--addr", addr, "--data-dir", data, "--api-token", token, "--capture-key", c.key, "--settle-delay", "1s"}
	if plugins {
		args = append(args, "--plugins-dir", c.pluginsDir, "--lock", c.lock)
	} else {
		// Capture needs no plugin: none is compiled, the process is ready in a second.
		args = append(args, "--plugins-dir", "", "--lock", "")
	}
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(procs), "AWS_EC2_METADATA_DISABLED=true",
		"SLUICE_BIGQUERY_ENDPOINT=http://127.0.0.1:1/", "SLUICE_SNOWFLAKE_ENDPOINT=http://127.0.0.1:1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &server{pid: cmd.Process.Pid, waited: make(chan struct{}), base: "http://" + addr, log: logf}
	go func() { _ = cmd.Wait(); close(s.waited) }()
	if err := s.waitReady(); err != nil {
		_ = s.stop(true)
		return nil, err
	}
	return s, nil
}

func (s *server) waitReady() error {
	// The first start with plugins compiles them (minutes on a busy machine, once: the
	// cache is shared).
	deadline := time.Now().Add(15 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-s.waited:
			return errors.New("sluice serve exited")
		default:
		}
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("sluice serve did not become ready in 15 min")
}

// stop ends the process with SIGTERM (graceful: the store is closed), printing the tail of
// its log when showLog.
func (s *server) stop(showLog bool) error {
	defer s.log.Close()
	_ = syscall.Kill(s.pid, syscall.SIGTERM)
	select {
	case <-s.waited:
	case <-time.After(40 * time.Second):
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
		<-s.waited
		return errors.New("sluice serve did not stop in 40s after SIGTERM")
	}
	if showLog {
		b, _ := os.ReadFile(s.log.Name())
		lines := strings.Split(string(b), "\n")
		fmt.Fprintf(os.Stderr, "sluice serve log (last lines):\n%s\n", strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
	return nil
}

func (s *server) api(method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if want != 0 && resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// ---- helpers ----

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianD(xs []time.Duration) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
