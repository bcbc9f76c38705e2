// Package control is Sluice's control plane: it wires storage, the plugin runtime, the
// event source, the scheduler and the run queue, executes runs, and implements the
// operations the REST API needs (install plugins, backfills, retries, tests).
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"github.com/sluicehq/sluice/host/alert"
	"github.com/sluicehq/sluice/host/httpcap"
	"github.com/sluicehq/sluice/host/pluginreg"
	"github.com/sluicehq/sluice/host/queue"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/schedule"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/host/sqlcap"
	"github.com/sluicehq/sluice/storage"
)

// Config configures a Host. Zero values take the defaults in WithDefaults.
type Config struct {
	DataDir       string // default ./data
	DatabaseURL   string // empty: SQLite in DataDir; postgres://...: PostgreSQL
	SecretKey     string // SLUICE_SECRET_KEY; empty: a key file in DataDir
	ClickHouseDSN string // empty: the embedded event store in DataDir/events.db

	PluginsDir string // first-party plugins built by `make plugins`; installed at start if LockFile pins them
	LockFile   string // plugins.lock

	Workers             int           // runs executed at once by this host (default 4)
	MaxAttempts         int           // attempts per run before it ends Failed (default 8)
	RunTimeout          time.Duration // per-attempt deadline (default 1h)
	RescueAfter         time.Duration // a run of a dead host is picked up after this (default RunTimeout + 1m)
	SettleDelay         time.Duration // wait after an interval ends before querying it (default 30s)
	CatchUpWindow       time.Duration // on start, enqueue intervals missed within this window (default 7 days)
	BackfillParallelism int           // backfill runs executing at once on this host, all backfills together, oldest request first (default 2)
	AutoPauseFailures   int           // pause an export with this many Failed runs... (default 10)
	AutoPauseRuns       int           // ...among its last this many finished runs (default 50)
	RunCheckInterval    time.Duration // how often an executing run reads its own status, to stop when cancelled elsewhere (default 2s)
	BatchRecords        int           // source batch size in rows (default 10k)
	BatchBytes          int           // source batch size in bytes (default 8 MiB)
	RetryBase           time.Duration // first retry delay, doubled each try (default 10s)
	// CountTimeout caps one count query on the source: a backfill's estimate and its
	// total_records_count, the earliest event, a run's records_total_count (default 60s;
	// PostHog caps its estimate at 300s, but a dry run is answered within the request).
	CountTimeout time.Duration
	// MissingDataInterval is how often the missing-data check runs (one River job per
	// period across hosts; default 1h; negative: never); MissingDataWindow is how far back
	// it looks, by interval end (default 24h).
	MissingDataInterval, MissingDataWindow time.Duration

	// HostID names this host in run logs ("attempt 1 on host a: ..."), so that one can tell
	// which host of several ran a run (default: the machine's host name).
	HostID string
	// ScheduleSyncInterval is how often the host reads which exports changed through other
	// hosts (one narrow read of ids and updated_at) and reschedules those (default 5s).
	ScheduleSyncInterval time.Duration
	// ReapInterval is how often the host looks for runs that no queue job will finish
	// (default 30s); ReapAfter is how long such a run must have been unchanged first
	// (default 2m).
	ReapInterval, ReapAfter time.Duration

	// S3PartSize is the multipart part size of S3 uploads (0: 50 MiB). An upload holds up to
	// S3Concurrency + 1 parts in memory: smaller parts lower a run's memory, at more requests
	// per object.
	S3PartSize int64
	// S3Concurrency is the number of parts an S3 upload sends at once (0: objstore's default,
	// 2). With sluice serve both come from the memory budget (host/membudget).
	S3Concurrency int
	// EncoderWorkers is how many goroutines compress one file's blocks (0: GOMAXPROCS).
	EncoderWorkers int
	// Memory admits each run into the host's memory budget before it executes (a
	// *membudget.Budget); nil admits every run at once.
	Memory Admitter
	// S3AmbientCredentials lets an S3 destination whose config has no access key use the
	// host's default AWS credential chain (environment variables, shared config files, web
	// identity, container or instance role). Off by default: such an export fails at
	// binding. Turning it on grants every user with the write scope the host's AWS
	// identity, for any bucket and endpoint their export names (SLUICE_S3_AMBIENT_CREDENTIALS).
	S3AmbientCredentials bool
	// HTTP is the policy of the http capability (ABI 1.1): private and loopback addresses
	// (off by default; SLUICE_HTTP_ALLOW_PRIVATE), request time, response and body sizes,
	// requests per run. Zero fields take httpcap's defaults.
	HTTP httpcap.Config
	// SQL is the policy of the sql capability (ABI 1.1): private addresses allowed, loopback
	// refused by default (SLUICE_SQL_ALLOW_PRIVATE, SLUICE_SQL_ALLOW_LOOPBACK), pool sizes.
	SQL sqlcap.Config

	// BigQueryEndpoint, when set, sends every bigquery capability to this BigQuery-compatible
	// REST endpoint without authentication (a loopback fake or an emulator), never to Google.
	BigQueryEndpoint string
	// GCSEndpoint, when set, sends every object capability bound to Google Cloud Storage
	// (object.gcs.*) to this JSON API base URL (http://127.0.0.1:PORT/storage/v1/: a loopback
	// fake-gcs-server or emulator) without authentication, never to Google.
	GCSEndpoint string
	// SnowflakeEndpoint, when set, sends every snowflake capability to this address
	// (http://127.0.0.1:PORT: a loopback fake) instead of <account>.snowflakecomputing.com.
	// Authentication still happens, with the export's credentials.
	SnowflakeEndpoint string

	// Alerts: where and how often failed runs and auto-pauses are notified (docs/alerts.md).
	Alerts alert.Config

	// PluginTrust: with keys, every module installed (upload, registry, plugins.lock) must
	// come with a signature by one of them over its sha256 and requested capabilities
	// (SLUICE_PLUGIN_TRUSTED_KEYS); without, signatures are not checked. PluginRegistry:
	// the registries plugins may be installed from by reference, and their address policy
	// (SLUICE_PLUGIN_REGISTRIES, SLUICE_PLUGIN_REGISTRY_ALLOW_PRIVATE). See
	// docs/plugin-authors.md, "Signed plugins from an OCI registry".
	PluginTrust    pluginreg.Trust
	PluginRegistry pluginreg.Policy

	Runtime runtime.Config
	Clock   clockwork.Clock // default the real clock; tests drive a fake one
	Logger  *slog.Logger
}

// Admitter reserves a run's memory allowance, waiting while the budget is spent; waiting is
// called once if it has to wait. release gives the allowance back.
type Admitter interface {
	Admit(ctx context.Context, waiting func()) (release func(), err error)
}

// DefaultCountTimeout is Config.CountTimeout's default.
const DefaultCountTimeout = 60 * time.Second

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	def(&c.RunTimeout, time.Hour)
	def(&c.RescueAfter, c.RunTimeout+time.Minute)
	def(&c.SettleDelay, 30*time.Second)
	def(&c.CatchUpWindow, 7*24*time.Hour)
	def(&c.RunCheckInterval, 2*time.Second)
	def(&c.CountTimeout, DefaultCountTimeout)
	def(&c.MissingDataInterval, time.Hour)
	def(&c.MissingDataWindow, 24*time.Hour)
	def(&c.ScheduleSyncInterval, 5*time.Second)
	def(&c.ReapInterval, 30*time.Second)
	def(&c.ReapAfter, 2*time.Minute)
	if c.HostID == "" {
		c.HostID, _ = os.Hostname()
	}
	if c.BackfillParallelism <= 0 {
		c.BackfillParallelism = 2
	}
	if c.AutoPauseFailures <= 0 {
		c.AutoPauseFailures = 10
	}
	if c.AutoPauseRuns <= 0 {
		c.AutoPauseRuns = 50
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Runtime.CacheDir == "" {
		c.Runtime.CacheDir = filepath.Join(c.DataDir, "cache", "wazero")
	}
	if c.Runtime.Logger == nil {
		c.Runtime.Logger = c.Logger
	}
	return c
}

// Host is one Sluice process's control plane. Start and Stop bound its background work.
type Host struct {
	cfg    Config
	log    *slog.Logger
	db     *storage.DB
	rt     *runtime.Runtime
	src    source.Source
	events *source.SQLite // the embedded store, nil when ClickHouse is the source
	sched  *schedule.Scheduler
	due    *schedule.Batch // the scheduler's fires, enqueued a batch at a time (enqueueDue)
	q      *queue.Queue
	alerts *alert.Notifier
	sql    *sqlcap.Pools // the sql capability's connection pools, one per distinct binding

	metrics Metrics

	mu      sync.Mutex
	plugins map[string]*runtime.Plugin    // by storage plugin ID
	running map[string]context.CancelFunc // runs executing on this host

	// draining is set when Stop begins: readiness turns false, and an attempt stopped by
	// the shutdown hands its run back to the queue (docs/deploy.md).
	draining atomic.Bool
	// versions is the updated_at of every export as this host last scheduled it.
	versionsMu sync.Mutex
	versions   map[string]time.Time
	bgStop     context.CancelFunc
	bg         sync.WaitGroup
	// countCtx bounds the background counts of backfills (countBackfillAsync); close
	// cancels it and waits for counts.
	countCtx  context.Context
	countStop context.CancelFunc
	counts    sync.WaitGroup
}

// New opens storage, the runtime, the source and the queue. Nothing runs until Start.
func New(ctx context.Context, cfg Config) (h *Host, err error) {
	cfg = cfg.WithDefaults()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	h = &Host{cfg: cfg, log: cfg.Logger, metrics: noMetrics{}, plugins: map[string]*runtime.Plugin{}, running: map[string]context.CancelFunc{}, versions: map[string]time.Time{}}
	h.countCtx, h.countStop = context.WithCancel(context.Background())
	h.sql = sqlcap.NewPools(cfg.SQL)
	defer func() {
		if err != nil {
			h.close(context.Background())
		}
	}()
	if h.db, err = storage.Open(ctx, storage.Config{DatabaseURL: cfg.DatabaseURL, DataDir: cfg.DataDir, SecretKey: cfg.SecretKey}); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if h.rt, err = runtime.New(ctx, cfg.Runtime); err != nil {
		return nil, fmt.Errorf("plugin runtime: %w", err)
	}
	if cfg.ClickHouseDSN != "" {
		if h.src, err = source.NewClickHouse(ctx, source.ClickHouseConfig{DSN: cfg.ClickHouseDSN}); err != nil {
			return nil, fmt.Errorf("clickhouse source: %w", err)
		}
	} else {
		if h.events, err = source.NewSQLite(filepath.Join(cfg.DataDir, "events.db")); err != nil {
			return nil, fmt.Errorf("embedded event store: %w", err)
		}
		h.src = h.events
	}
	if h.sched, err = schedule.New(cfg.Clock, h.log, schedule.WithSettleDelay(cfg.SettleDelay)); err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	h.due = h.sched.NewBatch(h.enqueueDue, 0, 0)
	qcfg := queue.Config{
		Dialect:     h.db.Dialect(),
		SQL:         h.db.SQL(),
		PostgresURL: cfg.DatabaseURL,
		Workers:     cfg.Workers,
		// Backfill runs have their own workers: scheduled runs never wait behind them.
		BackfillWorkers: cfg.BackfillParallelism,
		// A freed worker fetches its next run at once: the default 100 ms cooldown capped a
		// backfill of empty intervals at 10 runs per second per worker.
		FetchCooldown: 5 * time.Millisecond,
		MaxAttempts:   cfg.MaxAttempts,
		JobTimeout:    cfg.RunTimeout,
		RescueAfter:   cfg.RescueAfter,
		RetryBase:     cfg.RetryBase,
		Logger:        h.log,
		Handler:       h.runJob,
		ClientID:      riverClientID(cfg.HostID),
	}
	if h.alerts, err = alert.New(cfg.Alerts, h.db, cfg.Clock, h.log); err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	qcfg.Kinds = append(qcfg.Kinds, h.alerts.JobKind(), h.missingDataKind())
	if h.q, err = queue.New(ctx, qcfg); err != nil {
		return nil, fmt.Errorf("run queue: %w", err)
	}
	h.alerts.UseQueue(h.q)
	return h, nil
}

// Metrics receives run outcomes (the API's Prometheus collectors implement it).
type Metrics interface {
	RunFinished(destination string, status storage.RunStatus, d time.Duration, records, bytes int64)
	RunRetried(destination string)
}

type noMetrics struct{}

func (noMetrics) RunFinished(string, storage.RunStatus, time.Duration, int64, int64) {}
func (noMetrics) RunRetried(string)                                                  {}

// UseMetrics sends run outcomes to m. Call it before Start. If m also implements
// runtime.MetricSink (api.Metrics does), the plugins' own metrics go to it too.
func (h *Host) UseMetrics(m Metrics) {
	h.metrics = m
	if s, ok := m.(runtime.MetricSink); ok {
		h.rt.UseMetrics(s)
	}
}

// SourceTeamIDs lists up to max team ids present in the event source (nil when the source
// cannot tell): the API requires team_id on exports of a source holding several teams.
func (h *Host) SourceTeamIDs(ctx context.Context, max int) ([]int64, error) {
	if tl, ok := h.src.(source.TeamLister); ok {
		return tl.TeamIDs(ctx, max)
	}
	return nil, nil
}

// DB is the host's storage.
func (h *Host) DB() *storage.DB { return h.db }

// Events is the embedded event store the capture endpoint writes to; nil when the source
// is ClickHouse.
func (h *Host) Events() *source.SQLite { return h.events }

// Start installs the locked first-party plugins, schedules every active export, enqueues
// the intervals missed while the host was down, and starts the scheduler and the workers.
func (h *Host) Start(ctx context.Context) error {
	if err := h.storeLegacyModules(ctx); err != nil {
		return fmt.Errorf("plugin modules: %w", err)
	}
	if err := h.installLocked(ctx); err != nil {
		return err
	}
	// Validating the plugins compiled them: hand the compiler's garbage back to the OS now
	// rather than carry it, resident, into the first runs (docs/performance.md).
	debug.FreeOSMemory()
	exports, err := h.db.ListExports(ctx, storage.ExportFilter{})
	if err != nil {
		return fmt.Errorf("list exports: %w", err)
	}
	for _, e := range exports {
		if err := h.schedule(ctx, e, true); err != nil {
			h.log.Error("cannot schedule export", "export_id", e.ID, "err", err)
		}
	}
	if err := h.enqueueWaiting(ctx); err != nil {
		return err
	}
	if err := h.reconcileBackfills(ctx, exports); err != nil {
		return err
	}
	if err := h.q.Start(ctx); err != nil {
		return fmt.Errorf("start run queue: %w", err)
	}
	h.sched.Start()
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	h.bgStop = stop
	h.every(bg, h.cfg.ScheduleSyncInterval, "schedule sync", h.syncSchedules)
	h.every(bg, h.cfg.ReapInterval, "run reaper", h.reap)
	h.every(bg, h.cfg.ReapInterval, "deleted plugin unload", func(ctx context.Context) error {
		_, err := h.UnloadDeletedPlugins(ctx)
		return err
	})
	if h.cfg.MissingDataInterval > 0 {
		h.every(bg, h.cfg.MissingDataInterval, "missing-data check", h.enqueueMissingDataCheck)
	}
	return nil
}

// every calls fn every d until ctx ends (the host's background loops).
func (h *Host) every(ctx context.Context, d time.Duration, what string, fn func(context.Context) error) {
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				h.log.Warn(what+" failed; trying again later", "err", err)
			}
		}
	}()
}

// Draining reports whether the host is shutting down (Stop was called).
func (h *Host) Draining() bool { return h.draining.Load() }

// Drain stops the host's work and keeps its storage open (the API still answers):
// readiness turns false, the scheduler and the background loops stop, the queue fetches
// no more runs and lets the running ones finish until ctx ends. Runs still executing then
// are cancelled and handed back: each goes back to Starting with its job snoozed for a
// moment, so another host takes it at once (docs/deploy.md). Calling it again is a no-op.
func (h *Host) Drain(ctx context.Context) error {
	h.draining.Store(true)
	if h.bgStop != nil {
		h.bgStop()
		h.bg.Wait()
	}
	var errs []error
	if h.sched != nil {
		errs = append(errs, h.sched.Stop(ctx))
	}
	if h.q != nil {
		errs = append(errs, h.q.Stop(ctx))
	}
	return errors.Join(errs...)
}

// Stop drains the host (Drain) and closes its storage, runtime and source.
func (h *Host) Stop(ctx context.Context) error {
	return errors.Join(h.Drain(ctx), h.close(ctx))
}

func (h *Host) close(ctx context.Context) error {
	h.countStop()
	h.counts.Wait()
	var errs []error
	if h.sql != nil {
		h.sql.Close()
	}
	if h.q != nil {
		errs = append(errs, h.q.Close(ctx)) // releases the queue's PostgreSQL pool
	}
	if h.src != nil {
		errs = append(errs, h.src.Close())
	}
	if h.rt != nil {
		errs = append(errs, h.rt.Close(ctx))
	}
	if h.db != nil {
		errs = append(errs, h.db.Close())
	}
	return errors.Join(errs...)
}

// riverClientID names this host's queue client: the host id and a random suffix, unique
// even when two hosts share an id (River elects its leader by client id).
func riverClientID(hostID string) string {
	if hostID == "" {
		return ""
	}
	if len(hostID) > 80 {
		hostID = hostID[:80] // River allows 100 characters
	}
	return hostID + "_" + uuid.NewString()[:8]
}
