package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config sizes one chaos run.
type Config struct {
	Hosts             int           // sluice serve processes (3)
	Kills             int           // kill -9 of a random host, each followed by a restart
	BackfillIntervals int           // hourly intervals backfilled
	EventsPerInterval int           // seeded events per backfilled hour
	LiveIntervals     int           // 5-minute intervals exported while capture runs
	LiveLead          time.Duration // from the start to the first live interval's end (< 5m)
	CaptureRate       int           // captured events per second
	RunTimeout        time.Duration // --run-timeout; --rescue-after is 1 s more
	SettleDelay       time.Duration
	RestartDelay      time.Duration // up to this long between a kill and the restart
	Drain             time.Duration // after the last kill, how long runs may take to finish
	Dir               string        // work directory (logs, data dirs)
	Bin               string        // the built sluice
	SharedCache       string        // wazero compilation cache shared by the hosts (optional)
	Sample            time.Duration // > 0: sample every host's RSS and goroutines this often (soak)
	ExtraArgs         []string      // more `sluice serve` flags
	Logf              func(format string, args ...any)
}

// Short is the version `go test` runs (CI): a few kills, a 6-interval backfill and one
// live interval, about two minutes.
func Short() Config {
	return Config{Hosts: 3, Kills: 5, BackfillIntervals: 6, EventsPerInterval: 2000, LiveIntervals: 1,
		LiveLead: 60 * time.Second, CaptureRate: 100, RunTimeout: 15 * time.Second, SettleDelay: 6 * time.Second,
		RestartDelay: 2 * time.Second, Drain: 3 * time.Minute}
}

// Full is `make chaos`: 50 kills, a 48-interval backfill and three live 5-minute intervals.
func Full() Config {
	return Config{Hosts: 3, Kills: 50, BackfillIntervals: 48, EventsPerInterval: 5000, LiveIntervals: 3,
		LiveLead: 90 * time.Second, CaptureRate: 100, RunTimeout: 20 * time.Second, SettleDelay: 10 * time.Second,
		RestartDelay: 3 * time.Second, Drain: 5 * time.Minute}
}

// Report is what a chaos run measured.
type Report struct {
	Config       Config
	Started      time.Time
	Duration     time.Duration
	Kills        int
	Restarts     int
	Crashes      int // hosts that exited without being killed
	Capture      CaptureStats
	AckedMissing int // acknowledged events absent from the source
	AckedOutside int // acknowledged events stored after the last live interval (not exported by design)
	SourceDupes  int // uuids stored more than once (a re-sent batch whose failed try was stored)
	Exports      []ExportCheck
	LeftoverJobs int
	OpenUploads  int
	Faults       map[string]int64
	Samples      []Sample
	Notes        []string
}

// OK reports whether every check passed.
func (r Report) OK() bool {
	for _, e := range r.Exports {
		if !e.OK() {
			return false
		}
	}
	return r.AckedMissing == 0 && r.LeftoverJobs == 0 && r.OpenUploads == 0 && r.Crashes == 0
}

// Totals sums the exports' figures.
func (r Report) Totals() (runs, completed, retried, events, exported, lost, doubled int) {
	for _, e := range r.Exports {
		runs += e.Runs
		completed += e.Completed
		retried += e.RetriedAttempts
		events += e.Events
		exported += e.Exported
		lost += e.Lost
		doubled += e.Doubled
	}
	return
}

// Summary is the report as text (docs/reliability.md quotes it).
func (r Report) Summary() string {
	var b strings.Builder
	runs, completed, retried, events, exported, lost, doubled := r.Totals()
	fmt.Fprintf(&b, "hosts %d, kills %d, restarts %d, crashes %d, duration %s\n", r.Config.Hosts, r.Kills, r.Restarts, r.Crashes, r.Duration.Round(time.Second))
	fmt.Fprintf(&b, "runs %d, completed %d, retried attempts %d; events %d, exported %d, lost %d, doubled %d\n",
		runs, completed, retried, events, exported, lost, doubled)
	fmt.Fprintf(&b, "capture: %d events acknowledged in %d batches, %d requests, %d not acknowledged and re-sent, %d events re-sent after a failed try; acknowledged but absent %d, stored after the last live interval %d, uuids stored twice %d\n",
		r.Capture.Events, r.Capture.Batches, r.Capture.Requests, r.Capture.Failures, r.Capture.Uncertain, r.AckedMissing, r.AckedOutside, r.SourceDupes)
	for _, e := range r.Exports {
		fmt.Fprintf(&b, "export %s: intervals %d, runs %d, completed %d, unfinished %d, missing %d, extra %d, max attempt %d, retried attempts %d, objects %d, events %d, exported %d, lost %d, doubled %d, records mismatches %d, runs with repeated completion %d\n",
			e.Name, e.Intervals, e.Runs, e.Completed, e.Unfinished, e.Missing, e.Extra, e.MaxAttempt, e.RetriedAttempts, e.Objects, e.Events, e.Exported, e.Lost, e.Doubled, len(e.RecordsMismatch), len(e.CompletedLogs))
		for _, s := range e.NotCompleted {
			fmt.Fprintf(&b, "  not completed: %s\n", s)
		}
		for _, s := range e.RecordsMismatch {
			fmt.Fprintf(&b, "  %s\n", s)
		}
		for id, n := range e.CompletedLogs {
			fmt.Fprintf(&b, "  run %s logged completion %d times\n", id, n)
		}
	}
	fmt.Fprintf(&b, "unfinished queue jobs %d, open multipart uploads %d\n", r.LeftoverJobs, r.OpenUploads)
	if len(r.Faults) > 0 {
		keys := make([]string, 0, len(r.Faults))
		for k := range r.Faults {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "fault %s: %d\n", k, r.Faults[k])
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}

// Killer kills a random host at random moments and restarts it.
type Killer struct {
	Cluster      *Cluster
	RestartDelay time.Duration
	Logf         func(string, ...any)
	mu           sync.Mutex
	kills        int
}

// Run performs n kills at uniformly random moments within window, then returns once the
// last killed host is started again.
func (k *Killer) Run(ctx context.Context, n int, window time.Duration) {
	start := time.Now()
	at := make([]time.Duration, n)
	for i := range at {
		at[i] = time.Duration(rand.Int64N(int64(window)))
	}
	sort.Slice(at, func(i, j int) bool { return at[i] < at[j] })
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, d := range at {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(d))):
		}
		var up []*Host
		for _, h := range k.Cluster.Hosts {
			if h.Running() {
				up = append(up, h)
			}
		}
		if len(up) == 0 {
			continue
		}
		h := up[rand.IntN(len(up))]
		if !h.Kill() {
			continue
		}
		k.mu.Lock()
		k.kills++
		k.mu.Unlock()
		if k.Logf != nil {
			k.Logf("kill %d/%d: host %d at +%s", i+1, n, h.N, d.Round(time.Millisecond))
		}
		delay := time.Duration(rand.Int64N(int64(k.RestartDelay) + 1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(delay)
			if err := h.Start(); err != nil && k.Logf != nil {
				k.Logf("restart host %d: %v", h.N, err)
			}
		}()
	}
}

// Kills is the number of kills done.
func (k *Killer) Kills() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.kills
}

// Scenario is a started cluster with its env, ready for exports and load.
type Scenario struct {
	Env     *Env
	Cluster *Cluster
	Client  *Client
	Token   string
}

// StartScenario creates the env and starts cfg.Hosts hosts on it (dbURL/chDSN override
// the env's own, e.g. through a proxy).
func StartScenario(ctx context.Context, svc Services, label string, cfg Config, dbURL, chDSN func(*Env) string) (*Scenario, error) {
	env, err := NewEnv(ctx, svc, label)
	if err != nil {
		return nil, err
	}
	s := &Scenario{Env: env, Token: "chaos-token-" + env.Name}
	db, ch := env.PGURL, env.CHDSN
	if dbURL != nil {
		db = dbURL(env)
	}
	if chDSN != nil {
		ch = chDSN(env)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return s, err
	}
	s.Cluster, err = NewCluster(cfg.Hosts, HostConfig{Bin: cfg.Bin, Dir: cfg.Dir, DatabaseURL: db, ClickHouseDSN: ch,
		SecretKey: env.SecretKey, Token: s.Token, RunTimeout: cfg.RunTimeout, RescueAfter: cfg.RunTimeout + time.Second,
		SettleDelay: cfg.SettleDelay, SharedCache: cfg.SharedCache, ExtraArgs: cfg.ExtraArgs})
	if err != nil {
		return s, err
	}
	s.Client = &Client{Cluster: s.Cluster, Token: s.Token}
	// The first host migrates the database alone; the others follow.
	if err := s.Cluster.Hosts[0].Start(); err != nil {
		return s, err
	}
	if err := s.Cluster.Hosts[0].WaitReady(ctx, readyTimeout); err != nil {
		return s, err
	}
	return s, s.Cluster.Start(ctx)
}

// Close stops the hosts and drops the env.
func (s *Scenario) Close() {
	if s.Cluster != nil {
		s.Cluster.Stop()
	}
	if s.Env != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s.Env.Close(ctx)
	}
}

const live = 5 * time.Minute

// Run runs the chaos scenario: seed and backfill cfg.BackfillIntervals hours, capture into
// a 5-minute export for cfg.LiveIntervals intervals, kill cfg.Kills times meanwhile, then
// wait for every run and verify.
func Run(ctx context.Context, svc Services, cfg Config) (Report, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rep := Report{Config: cfg, Started: time.Now(), Faults: map[string]int64{}}
	label := "kill"
	if cfg.Sample > 0 {
		label = "soak"
	}
	s, err := StartScenario(ctx, svc, label, cfg, nil, nil)
	if s != nil {
		defer s.Close()
	}
	if err != nil {
		return rep, err
	}
	env := s.Env

	// The backfill: hours [h0 - n h, h0), seeded before the hosts see them.
	h0 := time.Now().UTC().Truncate(time.Hour)
	var hourEnds []time.Time
	for i := cfg.BackfillIntervals - 1; i >= 0; i-- {
		hourEnds = append(hourEnds, h0.Add(-time.Duration(i)*time.Hour))
	}
	if len(hourEnds) > 0 {
		seeded, err := Seed(ctx, env, hourEnds, time.Hour, cfg.EventsPerInterval, 0)
		if err != nil {
			return rep, fmt.Errorf("seed: %w", err)
		}
		logf("seeded %d events into %d hours", seeded, len(hourEnds))
	}

	// The live export's interval ends are placed by its offset: the first one LiveLead
	// from now, the last LiveIntervals-1 periods later; end_at stops it there.
	t0 := time.Now().UTC()
	firstEnd := t0.Add(cfg.LiveLead).Truncate(time.Second)
	offset := int(firstEnd.Sub(firstEnd.Truncate(live)) / time.Second)
	var liveEnds []time.Time
	for i := 0; i < cfg.LiveIntervals; i++ {
		liveEnds = append(liveEnds, firstEnd.Add(time.Duration(i)*live))
	}
	lastEnd := liveEnds[len(liveEnds)-1]
	dest := func(prefix string) map[string]any {
		return S3Destination(svc.S3Endpoint, env.Bucket, prefix, svc.S3Access, svc.S3Secret)
	}
	liveID, err := s.Client.CreateExport(ctx, map[string]any{"name": "chaos-live", "interval": "every 5 minutes",
		"interval_offset": offset, "end_at": lastEnd.Format(time.RFC3339), "destination": dest("live")})
	if err != nil {
		return rep, err
	}
	exports := []ExportSpec{{Name: "5-minute live", ID: liveID, Prefix: "live", Ends: liveEnds, Interval: live}}
	if len(hourEnds) > 0 {
		hourly, err := s.Client.CreateExport(ctx, map[string]any{"name": "chaos-hourly", "interval": "hour",
			"end_at": h0.Format(time.RFC3339), "destination": dest("hourly")})
		if err != nil {
			return rep, err
		}
		if err := s.Client.Backfill(ctx, hourly, h0.Add(-time.Duration(cfg.BackfillIntervals)*time.Hour), h0); err != nil {
			return rep, err
		}
		exports = append([]ExportSpec{{Name: "hourly backfill", ID: hourly, Prefix: "hourly", Ends: hourEnds, Interval: time.Hour}}, exports...)
	}
	sampleCtx, sampleCancel := context.WithCancel(ctx)
	sampled := make(chan []Sample, 1)
	go func() { sampled <- SampleHosts(sampleCtx, s.Cluster, cfg.Sample) }()
	logf("exports created; live intervals end at %v; kills over %s", liveEnds, time.Until(lastEnd.Add(cfg.SettleDelay+20*time.Second)).Round(time.Second))

	capCtx, capCancel := context.WithCancel(ctx)
	defer capCancel()
	capturer := &Capturer{Cluster: s.Cluster, Rate: cfg.CaptureRate, BatchSize: 20}
	stop := make(chan struct{})
	capDone := make(chan struct{})
	go func() { capturer.Run(capCtx, stop); close(capDone) }()
	go func() {
		// Stop sending new batches shortly before the last live interval ends.
		select {
		case <-time.After(time.Until(lastEnd.Add(-3 * time.Second))):
		case <-ctx.Done():
		}
		close(stop)
	}()

	killer := &Killer{Cluster: s.Cluster, RestartDelay: cfg.RestartDelay, Logf: logf}
	window := time.Until(lastEnd.Add(cfg.SettleDelay + 20*time.Second))
	killer.Run(ctx, cfg.Kills, window)
	<-capDone
	rep.Kills = killer.Kills()
	for _, h := range s.Cluster.Hosts {
		if err := h.WaitReady(ctx, readyTimeout); err != nil {
			rep.Notes = append(rep.Notes, err.Error()+"\n"+h.LogTail(30))
		}
	}
	logf("kills done (%d); waiting up to %s for every run", rep.Kills, cfg.Drain)

	want := map[string]int{}
	for _, e := range exports {
		want[e.ID] = len(e.Ends)
	}
	WaitFinished(ctx, s.Client, want, cfg.Drain)
	sampleCancel()
	rep.Samples = <-sampled
	rep.Duration = time.Since(rep.Started)
	for _, h := range s.Cluster.Hosts {
		starts, _ := h.Counts()
		rep.Restarts += starts - 1
		if h.Exited() {
			rep.Crashes++
			rep.Notes = append(rep.Notes, fmt.Sprintf("host %d exited on its own:\n%s", h.N, h.LogTail(30)))
		}
	}
	return rep, Verify(ctx, s, &rep, capturer, exports)
}

// WaitFinished waits until every export (id -> runs expected) has its runs, all in a
// final state, or drain passes. It reports whether they finished.
func WaitFinished(ctx context.Context, c *Client, want map[string]int, drain time.Duration) bool {
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := true
		for id, n := range want {
			runs, err := c.Runs(ctx, id)
			if err != nil || len(runs) < n {
				done = false
				break
			}
			for _, r := range runs {
				if r.Status != "Completed" && r.Status != "Failed" && r.Status != "Cancelled" {
					done = false
				}
			}
		}
		if done {
			return true
		}
		time.Sleep(2 * time.Second)
	}
	return false
}

// ExportSpec names an export to verify and the intervals it must have run.
type ExportSpec struct {
	Name, ID, Prefix string
	Ends             []time.Time
	Interval         time.Duration
}

// Verify fills rep's checks: every export's runs and objects against the source, the
// captured events against the source, the leftover jobs and uploads.
func Verify(ctx context.Context, s *Scenario, rep *Report, capturer *Capturer, exports []ExportSpec) error {
	src, err := SourceRows(ctx, s.Env)
	if err != nil {
		return fmt.Errorf("read the source: %w", err)
	}
	for id, times := range src {
		if len(times) > 1 {
			rep.SourceDupes++
		}
		_ = id
	}
	if capturer != nil {
		rep.Capture = capturer.Stats()
		var lastEnd time.Time
		for _, e := range exports {
			for _, end := range e.Ends {
				if e.Interval == live && end.After(lastEnd) {
					lastEnd = end
				}
			}
		}
		for id := range capturer.Acked() {
			times, ok := src[id]
			if !ok {
				rep.AckedMissing++
				continue
			}
			if !lastEnd.IsZero() && !times[0].Before(lastEnd) {
				rep.AckedOutside++
			}
		}
	}
	for _, e := range exports {
		c, err := CheckExport(ctx, s.Client, s.Env, e.Name, e.ID, e.Prefix, e.Ends, e.Interval, src)
		if err != nil {
			return fmt.Errorf("check %s: %w", e.Name, err)
		}
		rep.Exports = append(rep.Exports, c)
	}
	rep.LeftoverJobs, rep.OpenUploads, err = Leftovers(ctx, s.Env)
	return err
}
