package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/faultproxy"
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
	S3Latency         time.Duration // the backfill's S3 requests are delayed by up to this
	Logf              func(format string, args ...any)
}

// Short is the version `go test` runs (CI): a few kills, a 6-interval backfill and one
// live interval, about two minutes.
func Short() Config {
	return Config{Hosts: 3, Kills: 5, BackfillIntervals: 6, EventsPerInterval: 2000, LiveIntervals: 1,
		LiveLead: 60 * time.Second, CaptureRate: 100, S3Latency: 1500 * time.Millisecond, RunTimeout: 15 * time.Second, SettleDelay: 10 * time.Second,
		RestartDelay: 2 * time.Second, Drain: 3 * time.Minute}
}

// Full is `make chaos`: 50 kills, a 48-interval backfill and three live 5-minute intervals.
func Full() Config {
	return Config{Hosts: 3, Kills: 50, BackfillIntervals: 48, EventsPerInterval: 5000, LiveIntervals: 3,
		LiveLead: 90 * time.Second, CaptureRate: 100, S3Latency: 1500 * time.Millisecond, RunTimeout: 20 * time.Second, SettleDelay: 10 * time.Second,
		RestartDelay: 3 * time.Second, Drain: 5 * time.Minute}
}

// Report is what a chaos run measured.
type Report struct {
	Config       Config
	Started      time.Time
	Duration     time.Duration
	Kills        int
	KillsBusy    int // kills done while a run was executing (on any host)
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
	fmt.Fprintf(&b, "hosts %d, kills %d (%d while runs were executing), restarts %d, crashes %d, duration %s\n", r.Config.Hosts, r.Kills, r.KillsBusy, r.Restarts, r.Crashes, r.Duration.Round(time.Second))
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

// Killer kills a random running host and restarts it after a random delay.
type Killer struct {
	Cluster      *Cluster
	RestartDelay time.Duration
	Logf         func(string, ...any)
	// Busy, when set, reports whether runs are executing (for the figures).
	Busy func() bool

	mu          sync.Mutex
	kills, busy int
	wg          sync.WaitGroup
}

// KillAt waits until at, then kills a random running host and starts it again 0 to
// RestartDelay later (without waiting for it). It reports whether it killed.
func (k *Killer) KillAt(ctx context.Context, at time.Time, label string) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(at)):
	}
	var up []*Host
	for _, h := range k.Cluster.Hosts {
		if h.Running() {
			up = append(up, h)
		}
	}
	if len(up) == 0 {
		return false
	}
	busy := k.Busy != nil && k.Busy()
	h := up[rand.IntN(len(up))]
	if !h.Kill() {
		return false
	}
	k.mu.Lock()
	k.kills++
	if busy {
		k.busy++
	}
	n := k.kills
	k.mu.Unlock()
	if k.Logf != nil {
		k.Logf("kill %d (%s): host %d, runs executing: %v", n, label, h.N, busy)
	}
	delay := time.Duration(rand.Int64N(int64(k.RestartDelay) + 1))
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		time.Sleep(delay)
		if err := h.Start(); err != nil && k.Logf != nil {
			k.Logf("restart host %d: %v", h.N, err)
		}
	}()
	return true
}

// Wait waits for the restarts in flight.
func (k *Killer) Wait() { k.wg.Wait() }

// Kills is the number of kills done, and how many of them found runs executing.
func (k *Killer) Kills() (kills, busy int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.kills, k.busy
}

// Schedule is when the kills happen. Uniform moments over the whole run would mostly hit
// idle hosts (a 48-interval backfill takes a minute or two here, a live run a second or
// two), so: during the backfill, up to half the kills, each a random 0–1.5 s after runs
// were seen executing; then two per live interval, each a random 0–0.3 s after its run
// was seen executing (from 1 s before its end + settle delay); the others at uniformly
// random moments over the rest of the window. The victim is always a random running host:
// with three hosts, about a third of the kills hit the host executing a given run.
func (k *Killer) Schedule(ctx context.Context, n int, backfillBusy func() bool, liveEnds []time.Time, settle, tail time.Duration) {
	defer k.Wait()
	done := 0
	for done < n/2 && backfillBusy != nil && backfillBusy() && ctx.Err() == nil {
		if !k.waitBusy(ctx, time.Now().Add(30*time.Second)) {
			continue
		}
		if k.KillAt(ctx, time.Now().Add(time.Duration(rand.Int64N(int64(1500*time.Millisecond)))), "backfill") {
			done++
		}
	}
	live := min(2*len(liveEnds), n-done)
	random := n - done - live
	last := liveEnds[len(liveEnds)-1].Add(settle + tail)
	// The random kills run beside the live ones, over the whole rest of the window.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		now := time.Now()
		at := make([]time.Time, random)
		for i := range at {
			at[i] = now.Add(time.Duration(rand.Int64N(int64(max(last.Sub(now), time.Second)))))
		}
		sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
		for _, t := range at {
			// A host being killed by the other loop at the same moment: try again.
			for !k.KillAt(ctx, t, "random") && ctx.Err() == nil && time.Now().Before(last.Add(time.Minute)) {
				t = time.Now().Add(time.Second)
			}
		}
	}()
	for i := 0; i < live && ctx.Err() == nil; i++ {
		start := liveEnds[i/2].Add(settle - time.Second)
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start)):
		}
		label := "live run"
		if !k.waitBusy(ctx, start.Add(30*time.Second)) {
			label = "live, no run seen executing"
		}
		for !k.KillAt(ctx, time.Now().Add(time.Duration(rand.Int64N(int64(300*time.Millisecond)))), label) && ctx.Err() == nil {
			time.Sleep(time.Second)
		}
	}
	wg.Wait()
}

// waitBusy polls Busy every 100 ms until it is true (true) or deadline passes (false).
func (k *Killer) waitBusy(ctx context.Context, deadline time.Time) bool {
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if k.Busy != nil && k.Busy() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
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
		if err := s.Env.Close(context.Background()); err != nil {
			slog.Warn("chaos: cleanup", "err", err)
		}
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
	hourlyID := ""
	if len(hourEnds) > 0 {
		// The backfill's S3 requests take up to S3Latency more (a distant S3): runs last long
		// enough for kills to land in them.
		slow, err := faultproxy.ListenHTTP(svc.S3Endpoint, faultproxy.HTTPFaults{Latency: cfg.S3Latency})
		if err != nil {
			return rep, err
		}
		defer slow.Close()
		hourly, err := s.Client.CreateExport(ctx, map[string]any{"name": "chaos-hourly", "interval": "hour",
			"end_at": h0.Format(time.RFC3339), "destination": S3Destination(slow.URL(), env.Bucket, "hourly", svc.S3Access, svc.S3Secret)})
		if err != nil {
			return rep, err
		}
		hourlyID = hourly
		if err := s.Client.Backfill(ctx, hourly, h0.Add(-time.Duration(cfg.BackfillIntervals)*time.Hour), h0); err != nil {
			return rep, err
		}
		exports = append([]ExportSpec{{Name: "hourly backfill", ID: hourly, Prefix: "hourly", Ends: hourEnds, Interval: time.Hour}}, exports...)
	}
	sampleCtx, sampleCancel := context.WithCancel(ctx)
	defer sampleCancel()
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

	db, err := sql.Open("pgx", env.PGURL)
	if err != nil {
		return rep, err
	}
	defer db.Close()
	count := func(q string, args ...any) int {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		n := -1
		_ = db.QueryRowContext(qctx, q, args...).Scan(&n)
		return n
	}
	killer := &Killer{Cluster: s.Cluster, RestartDelay: cfg.RestartDelay, Logf: logf,
		Busy: func() bool { return count(`SELECT count(*) FROM runs WHERE status = 'Running'`) > 0 }}
	var backfillBusy func() bool
	if hourlyID != "" {
		backfillBusy = func() bool {
			return count(`SELECT count(*) FROM runs WHERE export_id = $1 AND status NOT IN ('Completed', 'Failed', 'Cancelled')`, hourlyID) != 0
		}
	}
	if cfg.Kills > 0 {
		killer.Schedule(ctx, cfg.Kills, backfillBusy, liveEnds, cfg.SettleDelay, 20*time.Second)
	}
	<-capDone
	rep.Kills, rep.KillsBusy = killer.Kills()
	for _, h := range s.Cluster.Hosts {
		if err := h.WaitReady(ctx, readyTimeout); err != nil {
			rep.Notes = append(rep.Notes, err.Error()+"\n"+h.LogTail(30))
		}
	}
	logf("kills done (%d); waiting up to %s for every run", rep.Kills, cfg.Drain)

	if !WaitFinished(ctx, s.Client, exports, cfg.Drain) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("runs not finished after %s", cfg.Drain))
	}
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

// WaitFinished waits until every export has a run in a final state for each of its
// expected interval ends, or drain passes. It reports whether they finished.
func WaitFinished(ctx context.Context, c *Client, exports []ExportSpec, drain time.Duration) bool {
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := true
		for _, e := range exports {
			runs, err := c.Runs(ctx, e.ID)
			if err != nil {
				done = false
				break
			}
			final := map[time.Time]bool{}
			for _, r := range runs {
				final[r.IntervalEnd.UTC()] = r.Status == "Completed" || r.Status == "Failed" || r.Status == "Cancelled"
			}
			for _, end := range e.Ends {
				done = done && final[end.UTC()]
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
