// Command sluice-scale measures one host carrying many `every 5 minutes` exports (issue 16):
// it starts a real `sluice serve` (SQLite, or a fresh database on a PostgreSQL server),
// creates the exports through the REST API (timed), then over several ticks measures how
// late each run reaches Running after its interval end plus the settle delay, the host's
// CPU and RSS while idle between ticks, and the latency of listing every export page by
// page. At the end it stops the host and checks in storage that every export got exactly
// one run per measured tick, all Completed.
//
//	go run ./bench/cmd/sluice-scale -exports 10000 -ticks 3
//	go run ./bench/cmd/sluice-scale -database-url "$SLUICE_TEST_POSTGRES_URL" -exports 10000
//
// bench/scale.sh builds sluice and runs it on both databases.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // CREATE DATABASE / DROP DATABASE on the PostgreSQL server

	"github.com/sluicehq/sluice/bench"
	"github.com/sluicehq/sluice/storage"
)

type config struct {
	sluice, pluginsDir, lock string
	work                     string
	dbServer                 string // a PostgreSQL server URL: a fresh database in it; empty: SQLite
	exports, ticks           int
	concurrency              int
	settle                   time.Duration
	workers                  int
	pageLimit                int
	pprofDir                 string
	profileTick              int
	keep                     bool
	createMargin             time.Duration
	drainTimeout             time.Duration
	cacheDir                 string
	idleWalks                int
	serveArgs                []string
}

func main() {
	var c config
	flag.StringVar(&c.sluice, "sluice", "bin/sluice", "the sluice binary")
	flag.StringVar(&c.pluginsDir, "plugins-dir", "bin/plugins", "built first-party plugins")
	flag.StringVar(&c.lock, "lock", "plugins.lock", "plugins.lock")
	flag.StringVar(&c.work, "work", "", "work directory (default a temp dir, removed at the end)")
	flag.StringVar(&c.dbServer, "database-url", "", "PostgreSQL server URL (a fresh database is created in it and dropped); empty: SQLite")
	flag.IntVar(&c.exports, "exports", 10000, "exports to create")
	flag.IntVar(&c.ticks, "ticks", 3, "5-minute ticks to measure after the exports exist")
	flag.IntVar(&c.concurrency, "concurrency", 8, "concurrent create requests")
	flag.DurationVar(&c.settle, "settle-delay", 10*time.Second, "the host's --settle-delay")
	flag.IntVar(&c.workers, "workers", 0, "the host's --workers (0: its default)")
	flag.IntVar(&c.pageLimit, "page-limit", 100, "limit of each GET /api/v1/batch_exports page")
	flag.StringVar(&c.pprofDir, "pprof-dir", "", "write CPU profiles of one tick's runs and of the idle host, a heap and a goroutine profile here")
	flag.IntVar(&c.profileTick, "profile-tick", 1, "the tick (1-based) whose runs and following idle time are profiled with -pprof-dir")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory")
	flag.StringVar(&c.cacheDir, "cache-dir", filepath.Join(os.TempDir(), "sluice-scale-wazero-cache"), "wazero compilation cache shared by the runs (empty: the data dir's own)")
	flag.IntVar(&c.idleWalks, "idle-walks", 3, "walks through every export by next_cursor on the idle host, right after creating them")
	flag.DurationVar(&c.drainTimeout, "drain-timeout", 20*time.Minute, "after the last tick, wait this long at most for every run to finish")
	flag.DurationVar(&c.createMargin, "create-margin", 4*time.Minute, "start creating only with at least this much time before the next fire (else wait for it)")
	var extra string
	flag.StringVar(&extra, "serve-args", "", "more arguments for sluice serve, space-separated")
	flag.Parse()
	c.serveArgs = strings.Fields(extra)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-scale:", err)
		os.Exit(1)
	}
}

// period is the interval of every export: the issue's `every 5 minutes`.
const period = 5 * time.Minute

func run(ctx context.Context, c config) (err error) {
	if c.work == "" {
		if c.work, err = os.MkdirTemp("", "sluice-scale-"); err != nil {
			return err
		}
	}
	if !c.keep {
		defer os.RemoveAll(c.work)
	}
	data := filepath.Join(c.work, "data")
	if err := os.MkdirAll(filepath.Join(data, "cache"), 0o750); err != nil {
		return err
	}
	// One wazero compilation cache for every run: the host starts like a restarted server.
	if c.cacheDir != "" {
		if err := os.MkdirAll(c.cacheDir, 0o750); err != nil {
			return err
		}
		if err := os.Symlink(c.cacheDir, filepath.Join(data, "cache", "wazero")); err != nil {
			return err
		}
	}
	dbURL := ""
	if c.dbServer != "" {
		var drop func()
		if dbURL, drop, err = freshDatabase(c.dbServer); err != nil {
			return err
		}
		defer drop()
	}
	addr, err := bench.FreeAddr()
	if err != nil {
		return err
	}
	const token = "sluice-scale-bench-token"
	args := []string{"serve", "--addr", addr, "--data-dir", data, "--api-token", token,
		"--plugins-dir", c.pluginsDir, "--lock", c.lock, "--settle-delay", c.settle.String()}
	if c.workers > 0 {
		args = append(args, "--workers", strconv.Itoa(c.workers))
	}
	pprofAddr := ""
	if c.pprofDir != "" {
		if pprofAddr, err = bench.FreeAddr(); err != nil {
			return err
		}
		args = append(args, "--pprof-addr", pprofAddr)
		if err := os.MkdirAll(c.pprofDir, 0o750); err != nil {
			return err
		}
	}
	args = append(args, c.serveArgs...)
	logPath := filepath.Join(c.work, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(c.sluice, args...)
	cmd.Env = append(os.Environ(), "SLUICE_DATABASE_URL="+dbURL, "AWS_EC2_METADATA_DISABLED=true",
		"SLUICE_BIGQUERY_ENDPOINT=http://127.0.0.1:1/", "SLUICE_SNOWFLAKE_ENDPOINT=http://127.0.0.1:1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	stopped := false
	stopServe := func() {
		if !stopped {
			stopped = true
			bench.Stop(cmd, 60*time.Second)
		}
	}
	defer func() {
		stopServe()
		if err != nil {
			bench.PrintLogTail(logPath, 30)
		}
	}()
	pid := cmd.Process.Pid
	h := host{API: bench.API{Base: "http://" + addr, Token: token}, base: "http://" + addr, token: token, pid: pid, pprof: pprofAddr}
	if err := bench.WaitReady(h.base, cmd); err != nil {
		return err
	}
	db := "sqlite"
	if dbURL != "" {
		db = "postgres"
	}
	fmt.Printf("# sluice-scale: %d exports every 5 minutes, %s, settle %s, %s\n", c.exports, db, c.settle, "load "+bench.LoadAvg())

	// Create the exports, starting right after a boundary so that creation does not
	// straddle one (at 10,000 exports it takes well under 5 minutes).
	if wait := time.Until(nextBoundary(time.Now()).Add(c.settle)); wait < c.createMargin {
		fmt.Printf("waiting %s for the next boundary before creating\n", wait.Round(time.Second))
		if err := sleepCtx(ctx, wait+time.Second); err != nil {
			return err
		}
	}
	cr, err := h.createExports(ctx, c)
	if err != nil {
		return err
	}
	fmt.Printf("create: %d exports in %s (%.0f/s, %d concurrent): request p50 %s p99 %s max %s; VmRSS %s\n",
		c.exports, cr.took.Round(time.Millisecond), float64(c.exports)/cr.took.Seconds(), c.concurrency,
		ms(pct(cr.lat, 50)), ms(pct(cr.lat, 99)), ms(pct(cr.lat, 100)), mib(bench.ProcStatusOf(pid, "VmRSS")))

	// Lists on the idle host: the exports exist, no run has come due yet.
	var idlePages, idleWalks []time.Duration
	for range c.idleWalks {
		w, ps, err := h.walkExports(c.pageLimit, c.exports)
		if err != nil {
			return err
		}
		idleWalks, idlePages = append(idleWalks, w), append(idlePages, ps...)
	}
	if len(idleWalks) > 0 {
		fmt.Printf("list on the idle host, %d walks: page (limit %d) p50 %s p99 %s max %s, whole walk %s\n", len(idleWalks), c.pageLimit,
			ms(pct(idlePages, 50)), ms(pct(idlePages, 99)), ms(pct(idlePages, 100)), durRange(idleWalks))
	}

	// The ticks: every export was created before first, so each has a run at every
	// boundary from first on.
	first := nextBoundary(time.Now())
	var (
		ticks    []tickResult
		base0    int
		pages    []time.Duration
		walks    []time.Duration
		idleFrom = time.Now()
		rssPeak  atomic.Int64
	)
	stopRSS := sampleRSS(pid, &rssPeak)
	defer stopRSS()
	for i := 0; i < c.ticks; i++ {
		end := first.Add(time.Duration(i) * period)
		fire := end.Add(c.settle)
		var tr tickResult
		tr.end = end
		// Idle: from the previous tick's drain (and list walk) to just before this fire.
		idleUntil := fire.Add(-3 * time.Second)
		profileIdle := c.pprofDir != "" && i == c.profileTick
		if profileIdle {
			go h.profile(filepath.Join(c.pprofDir, fmt.Sprintf("%s-idle.cpu.pprof", db)), "profile", time.Until(idleUntil)-2*time.Second)
		}
		if idleUntil.Sub(idleFrom) > 20*time.Second {
			cpu0 := bench.ProcCPU(pid)
			if err := sleepCtx(ctx, time.Until(idleUntil)); err != nil {
				return err
			}
			tr.idleCPU = (bench.ProcCPU(pid) - cpu0).Seconds() / time.Since(idleFrom).Seconds()
			tr.idleWall = time.Since(idleFrom)
			tr.idleRSS = bench.ProcStatusOf(pid, "VmRSS")
			if profileIdle {
				h.save(filepath.Join(c.pprofDir, db+"-idle.heap.pprof"), "heap")
				h.save(filepath.Join(c.pprofDir, db+"-idle.goroutine.txt"), "goroutine?debug=1")
			}
		} else if err := sleepCtx(ctx, time.Until(idleUntil)); err != nil {
			return err
		}
		base, err := h.runsTotal()
		if err != nil {
			return err
		}
		if c.pprofDir != "" && i+1 == c.profileTick {
			go h.profile(filepath.Join(c.pprofDir, fmt.Sprintf("%s-tick.cpu.pprof", db)), "profile", 60*time.Second)
		}
		rssPeak.Store(0)
		cpu0 := bench.ProcCPU(pid)
		if err := sleepCtx(ctx, time.Until(fire)); err != nil {
			return err
		}
		// Drained: N more run attempts ended (sluice_runs_total), or the next fire is near.
		if i == 0 {
			base0 = base
		}
		n, err := h.waitRuns(ctx, base+c.exports, fire.Add(period-20*time.Second))
		if err != nil {
			return err
		}
		tr.drained = -1
		if n >= base+c.exports {
			tr.drained = time.Since(fire)
		}
		tr.busyCPU = bench.ProcCPU(pid) - cpu0
		tr.busyRuns = n - base
		tr.busyRSS = rssPeak.Load()
		// List every export, page by page, on the idle host.
		w, ps, err := h.walkExports(c.pageLimit, c.exports)
		if err != nil {
			return err
		}
		walks, pages = append(walks, w), append(pages, ps...)
		tr.walk = w
		ticks = append(ticks, tr)
		fmt.Printf("tick %d (end %s, %s): drained %s after the fire (CPU %s for %d runs: %.1f ms each), VmRSS peak %s; idle before it: CPU %.2f%% of a core over %s, VmRSS %s; list walk %s\n",
			i+1, end.Format("15:04"), "load "+bench.LoadAvg(), dur(tr.drained), tr.busyCPU.Round(time.Millisecond), tr.busyRuns,
			float64(tr.busyCPU)/float64(time.Millisecond)/float64(max(tr.busyRuns, 1)), mib(tr.busyRSS),
			100*tr.idleCPU, tr.idleWall.Round(time.Second), mib(tr.idleRSS), w.Round(time.Millisecond))
		idleFrom = time.Now().Add(5 * time.Second)
		if err := sleepCtx(ctx, 5*time.Second); err != nil {
			return err
		}
	}
	// The runs of the last ticks may still be waiting: let them finish before the check.
	all0 := time.Now()
	if n, err := h.waitRuns(ctx, base0+c.ticks*c.exports, time.Now().Add(c.drainTimeout)); err != nil {
		return err
	} else if n < base0+c.ticks*c.exports {
		fmt.Printf("after the last tick: %d runs still unfinished after %s\n", base0+c.ticks*c.exports-n, c.drainTimeout)
	} else {
		fmt.Printf("after the last tick: every run finished %s later\n", time.Since(all0).Round(time.Second))
	}
	hwm := bench.ProcStatusOf(pid, "VmHWM")
	stopRSS()
	stopServe()

	// Every export: exactly one run per measured tick, Completed. Lateness from storage.
	st, err := storage.Open(ctx, storage.Config{DatabaseURL: dbURL, DataDir: data})
	if err != nil {
		return err
	}
	defer st.Close()
	check, err := checkRuns(ctx, st, c, ticks)
	if err != nil {
		return err
	}
	fmt.Printf("\n| tick | runs | late p50 | late p99 | late max | enqueued p99 | drained | idle CPU | idle VmRSS | busy VmRSS peak |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, t := range ticks {
		l := check.late[i]
		fmt.Printf("| %d | %d | %s | %s | %s | %s | %s | %.2f%% | %s | %s |\n", i+1, len(l), ms(pct(l, 50)), ms(pct(l, 99)), ms(pct(l, 100)),
			ms(pct(check.enq[i], 99)), dur(t.drained), 100*t.idleCPU, mib(t.idleRSS), mib(t.busyRSS))
	}
	all := slices.Concat(check.late...)
	fmt.Printf("\nsummary %s: create %s; lateness p50 %s p99 %s max %s over %d runs; idle CPU %s; VmHWM %s; list page (limit %d) p50 %s p99 %s, whole walk %s\n",
		db, cr.took.Round(time.Millisecond), ms(pct(all, 50)), ms(pct(all, 99)), ms(pct(all, 100)), len(all),
		idleRange(ticks), mib(hwm), c.pageLimit, ms(pct(pages, 50)), ms(pct(pages, 99)), durRange(walks))
	if check.problems != "" {
		return errors.New(check.problems)
	}
	fmt.Println("check: every export has exactly one Completed run per measured tick")
	return nil
}

type tickResult struct {
	end      time.Time
	drained  time.Duration // fire to the N-th finished attempt; -1: not drained
	busyCPU  time.Duration
	busyRSS  int64
	busyRuns int
	idleCPU  float64 // fraction of one core
	idleWall time.Duration
	idleRSS  int64
	walk     time.Duration
}

type runCheck struct {
	late, enq [][]time.Duration
	problems  string
}

// checkRuns reads every run back from storage: per measured tick, one run for every
// export, Completed, and its lateness (started_at - (end + settle)) and enqueue lateness
// (created_at - (end + settle)).
func checkRuns(ctx context.Context, st *storage.DB, c config, ticks []tickResult) (runCheck, error) {
	out := runCheck{late: make([][]time.Duration, len(ticks)), enq: make([][]time.Duration, len(ticks))}
	idx := map[time.Time]int{}
	for i, t := range ticks {
		idx[t.end] = i
	}
	seen := make([]map[string]bool, len(ticks))
	for i := range seen {
		seen[i] = map[string]bool{}
	}
	var problems []string
	byStatus := map[storage.RunStatus]int{}
	err := st.ForEachRun(ctx, storage.RunSet{}, func(r storage.Run) error {
		i, ok := idx[r.IntervalEnd]
		if !ok {
			return nil // a run before the first measured tick (creation straddled a boundary)
		}
		if seen[i][r.ExportID] {
			problems = append(problems, fmt.Sprintf("export %s has two runs ending %s", r.ExportID, r.IntervalEnd))
		}
		seen[i][r.ExportID] = true
		byStatus[r.Status]++
		if r.Status != storage.StatusCompleted {
			if len(problems) < 10 {
				problems = append(problems, fmt.Sprintf("run %s (end %s) is %s: %s", r.ID, r.IntervalEnd.Format("15:04"), r.Status, r.LatestError))
			}
		}
		due := r.IntervalEnd.Add(c.settle)
		if r.StartedAt != nil {
			out.late[i] = append(out.late[i], r.StartedAt.Sub(due))
		}
		out.enq[i] = append(out.enq[i], r.CreatedAt.Sub(due))
		return nil
	})
	if err != nil {
		return out, err
	}
	for i, s := range seen {
		if len(s) != c.exports {
			problems = append(problems, fmt.Sprintf("tick %d: %d exports have a run, want %d", i+1, len(s), c.exports))
		}
	}
	if len(problems) > 0 {
		out.problems = fmt.Sprintf("runs by status %v; %s", byStatus, strings.Join(problems, "; "))
	}
	return out, nil
}

type host struct {
	bench.API
	base, token, pprof string
	pid                int
}

type createResult struct {
	took time.Duration
	done time.Time
	lat  []time.Duration
}

// createExports POSTs the exports with c.concurrency requests in flight. The destination
// is the s3 plugin writing to a local directory; the embedded source is empty, so every
// run is an empty run.
func (h host) createExports(ctx context.Context, c config) (createResult, error) {
	var (
		res  createResult
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, c.concurrency)
	)
	res.lat = make([]time.Duration, 0, c.exports)
	began := time.Now()
	for w := 0; w < c.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= c.exports {
					return
				}
				t := time.Now()
				err := h.Do("POST", "/api/v1/batch_exports", map[string]any{
					"name": fmt.Sprintf("scale-%05d", i), "interval": "every 5 minutes",
					"destination": map[string]any{"type": "s3", "config": map[string]any{
						"bucket_name": "scale", "endpoint_url": "local", "prefix": fmt.Sprintf("e%05d", i),
						"file_format": "JSONLines", "compression": "gzip",
					}}}, http.StatusCreated, nil)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				res.lat = append(res.lat, time.Since(t))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.done = time.Now()
	res.took = res.done.Sub(began)
	return res, nil
}

// walkExports lists every export following next_cursor and times each page.
func (h host) walkExports(limit, want int) (time.Duration, []time.Duration, error) {
	var (
		pages  []time.Duration
		cursor string
		ids    = map[string]bool{}
	)
	began := time.Now()
	for {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Results []struct {
				ID string `json:"id"`
			} `json:"results"`
			NextCursor string `json:"next_cursor"`
		}
		t := time.Now()
		if err := h.Do("GET", "/api/v1/batch_exports?"+q.Encode(), nil, http.StatusOK, &page); err != nil {
			return 0, nil, err
		}
		pages = append(pages, time.Since(t))
		for _, r := range page.Results {
			ids[r.ID] = true
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	took := time.Since(began)
	if len(ids) != want {
		return 0, nil, fmt.Errorf("listing every export page by page gave %d distinct exports, want %d", len(ids), want)
	}
	return took, pages, nil
}

// waitRuns polls runsTotal until it reaches want or deadline passes, and returns the last
// count.
func (h host) waitRuns(ctx context.Context, want int, deadline time.Time) (int, error) {
	for {
		n, err := h.runsTotal()
		if err != nil || n >= want || time.Now().After(deadline) {
			return n, err
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return n, err
		}
	}
}

// runsTotal sums sluice_runs_total (run attempts that ended) from /metrics.
func (h host) runsTotal() (int, error) {
	req, err := http.NewRequest("GET", h.base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "sluice_runs_total{") {
			continue
		}
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			v, err := strconv.ParseFloat(l[i+1:], 64)
			if err != nil {
				return 0, fmt.Errorf("metrics: %q: %w", l, err)
			}
			total += v
		}
	}
	return int(total), sc.Err()
}

// profile saves a CPU profile of d.
func (h host) profile(path, kind string, d time.Duration) {
	if d < time.Second {
		return
	}
	h.save(path, fmt.Sprintf("%s?seconds=%d", kind, int(d.Seconds())))
}

func (h host) save(path, what string) {
	resp, err := http.Get("http://" + h.pprof + "/debug/pprof/" + what)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pprof:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pprof:", err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		fmt.Fprintln(os.Stderr, "pprof:", err)
	}
}

// sampleRSS keeps the largest VmRSS seen (every 200 ms) in peak until stop is called.
func sampleRSS(pid int, peak *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if v := bench.ProcStatusOf(pid, "VmRSS"); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

func freshDatabase(server string) (string, func(), error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", nil, err
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", nil, fmt.Errorf("database server %s is not loopback; refusing", u.Host)
	}
	admin, err := sql.Open("pgx", server)
	if err != nil {
		return "", nil, err
	}
	defer admin.Close()
	name := fmt.Sprintf("scale_bench_%d", time.Now().UnixNano())
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		if a, err := sql.Open("pgx", server); err == nil {
			if _, err := a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
				fmt.Fprintln(os.Stderr, "drop database:", err)
			}
			a.Close()
		}
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

func nextBoundary(t time.Time) time.Time { return t.UTC().Truncate(period).Add(period) }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// pct is the p-th percentile (nearest rank) of xs; 0 for none.
func pct(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func idleRange(ts []tickResult) string {
	var v []float64
	for _, t := range ts {
		if t.idleWall > 0 {
			v = append(v, 100*t.idleCPU)
		}
	}
	if len(v) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f–%.2f%% of a core", slices.Min(v), slices.Max(v))
}

func durRange(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s–%s", ms(slices.Min(ds)), ms(slices.Max(ds)))
}

func ms(d time.Duration) string {
	if d < 10*time.Second && d > -10*time.Second {
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(100 * time.Millisecond).String()
}

func dur(d time.Duration) string {
	if d < 0 {
		return "not drained"
	}
	return d.Round(100 * time.Millisecond).String()
}

func mib(n int64) string {
	if n < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}
