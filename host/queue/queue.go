// Package queue is Sluice's durable run queue, built on River
// (github.com/riverqueue/river): riversqlite over the process's one shared
// SQLite *sql.DB (modernc.org/sqlite), or riverpgxv5 over a pgx pool on
// PostgreSQL.
//
// One job is one run of one export interval. Jobs are unique by (ExportID,
// IntervalEnd, Attempt generation) across every state, so any number of
// schedulers (hosts) enqueueing the same interval create exactly one job.
// A handler steers what happens next with its error: nil completes, Cancel
// stops for good, Snooze runs again later without using an attempt, any other
// error retries with exponential backoff and jitter up to MaxAttempts. A
// running job of a host that died is picked up by River's rescuer on a live
// host after RescueAfter. Other job kinds (alerts) ride the same client on queues
// of their own (kinds.go). See docs/scheduling.md.
package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

// Kind is the River job kind of a Sluice run.
const Kind = "sluice_run"

// QueueBackfill is the River queue of backfill runs. It has its own workers
// (Config.BackfillWorkers), so scheduled runs never wait behind a long backfill, and
// backfills share them oldest request first.
const QueueBackfill = "backfill"

// Dialects.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Job is one run of one export interval (River job args of kind "sluice_run").
//
// Uniqueness is by ExportID, IntervalEnd (normalised to UTC) and Attempt.
// Attempt is the generation of the run: 0 for the scheduled run (and its
// automatic retries, which stay in the same job); a deliberate re-run of the
// interval (user retry, backfill over it again) passes a higher number to get
// a new job. River's own try counter is in Info(ctx).Attempt.
type Job struct {
	RunID       string    `json:"run_id"`
	ExportID    string    `json:"export_id" river:"unique"`
	IntervalEnd time.Time `json:"interval_end" river:"unique"`
	Attempt     int       `json:"attempt" river:"unique"`
}

// Kind implements river.JobArgs.
func (Job) Kind() string { return Kind }

// Handler runs one job. Return nil (done), Cancel(err) (no retry), Snooze(d)
// (again after d) or any other error (retry with backoff).
type Handler func(ctx context.Context, j Job) error

// Cancel wraps err so the job is not retried (non-retryable error).
func Cancel(err error) error {
	if err == nil {
		err = errors.New("cancelled")
	}
	return river.JobCancel(err)
}

// Snooze makes the job run again after d without counting an attempt.
func Snooze(d time.Duration) error {
	if d < 0 {
		d = 0
	}
	return river.JobSnooze(d)
}

// Info describes the River job being worked (from a Handler's context).
type Info struct {
	ID          int64
	Attempt     int // River's try number, 1 on the first try
	MaxAttempts int
	AttemptedBy []string
}

type infoKey struct{}

// JobInfo returns the River job behind a Handler call.
func JobInfo(ctx context.Context) (Info, bool) {
	i, ok := ctx.Value(infoKey{}).(Info)
	return i, ok
}

// Config configures a Queue.
type Config struct {
	// Dialect is "sqlite" or "postgres".
	Dialect string
	// SQL is the process's one shared SQLite *sql.DB (modernc.org/sqlite;
	// SQLite >= 3.45). Required for sqlite; River shares it (do not open a
	// second handle on the same file).
	SQL *sql.DB
	// PostgresURL is used for postgres: the Queue builds (and owns) a pgx pool.
	PostgresURL string
	// Handler works jobs; nil makes an insert-only Queue (Start is refused).
	Handler Handler
	// Kinds are extra job kinds (NewKind), each on its own River queue with its own
	// workers, attempts and backoff; worked when Handler is set (kinds.go).
	Kinds []JobKind
	// Workers is the number of concurrent jobs of the default queue (default 4).
	Workers int
	// BackfillWorkers is the number of concurrent jobs of QueueBackfill (default 1).
	BackfillWorkers int
	// MaxAttempts bounds tries of one job (default 10).
	MaxAttempts int
	// JobTimeout bounds one try (default 1h).
	JobTimeout time.Duration
	// RescueAfter is how long a job may stay running before River's rescuer
	// (on the leader host, checked at start-up and every 30 s) treats its host
	// as dead and schedules a retry. Default JobTimeout + 1 min; must be >=
	// JobTimeout.
	RescueAfter time.Duration
	// RetryBase and RetryMax shape the backoff: base*2^(try-1) capped at max,
	// with +/-20% jitter (defaults 10 s and 1 h).
	RetryBase, RetryMax time.Duration
	// PollInterval is how often an idle host looks for available jobs
	// (default 1 s; SQLite has no LISTEN/NOTIFY so this is the latency).
	PollInterval time.Duration
	// FetchCooldown is the least time between two fetches of one queue (default 100 ms).
	// A worker that frees up fetches again at most this soon: it bounds how many short
	// runs one worker completes per second.
	FetchCooldown time.Duration
	// Retention keeps finished (completed, cancelled, discarded) jobs, and so
	// their uniqueness, this long (default 7 days).
	Retention time.Duration
	// CancelGrace is how long Stop waits after cancelling running jobs'
	// contexts once its own ctx is done (default 10 s).
	CancelGrace time.Duration
	// ClientID names this host in attempted_by (default: River's host-based ID).
	ClientID string
	// Logger receives River's and the queue's logs (nil discards).
	Logger *slog.Logger
}

// EnqueueOptions adjusts one insert.
type EnqueueOptions struct {
	// ScheduledAt delays the job (zero: now).
	ScheduledAt time.Time
	// Priority 1 (highest, default) to 4.
	Priority int
	// Queue is the River queue: "" (the default queue) or QueueBackfill.
	Queue string
}

// riverClient is what Queue needs of river.Client[pgx.Tx] / river.Client[*sql.Tx].
type riverClient interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Stopped() <-chan struct{}
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	JobCancel(ctx context.Context, jobID int64) (*rivertype.JobRow, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
}

// Queue is the durable run queue.
type Queue struct {
	cfg    Config
	client riverClient
	pool   *pgxpool.Pool // owned, postgres only
	log    *slog.Logger

	mu      sync.Mutex
	started bool
	stopped bool
	closed  bool
}

// uniqueStates: uniqueness holds in every state, so a finished (even
// cancelled or discarded) interval is not enqueued again by a late scheduler;
// a re-run needs a new generation.
var uniqueStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStateCancelled, rivertype.JobStateCompleted,
	rivertype.JobStateDiscarded, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

// New validates cfg, runs River's migrations and builds the client. It does
// not start working (Start).
func New(ctx context.Context, cfg Config) (*Queue, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.BackfillWorkers <= 0 {
		cfg.BackfillWorkers = 1
	}
	if cfg.FetchCooldown <= 0 {
		cfg.FetchCooldown = 100 * time.Millisecond
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = time.Hour
	}
	if cfg.RescueAfter <= 0 {
		cfg.RescueAfter = cfg.JobTimeout + time.Minute
	}
	if cfg.RescueAfter < cfg.JobTimeout {
		return nil, fmt.Errorf("queue: RescueAfter %s is shorter than JobTimeout %s", cfg.RescueAfter, cfg.JobTimeout)
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 10 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = time.Hour
	}
	if cfg.RetryMax < cfg.RetryBase {
		cfg.RetryMax = cfg.RetryBase
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.CancelGrace <= 0 {
		cfg.CancelGrace = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := checkKinds(cfg.Kinds); err != nil {
		return nil, err
	}
	q := &Queue{cfg: cfg, log: cfg.Logger}

	rcfg := &river.Config{
		ID:                          cfg.ClientID,
		Logger:                      cfg.Logger,
		MaxAttempts:                 cfg.MaxAttempts,
		JobTimeout:                  cfg.JobTimeout,
		RescueStuckJobsAfter:        cfg.RescueAfter,
		RetryPolicy:                 &backoff{base: cfg.RetryBase, max: cfg.RetryMax},
		FetchPollInterval:           cfg.PollInterval,
		FetchCooldown:               min(cfg.FetchCooldown, cfg.PollInterval),
		CompletedJobRetentionPeriod: cfg.Retention,
		CancelledJobRetentionPeriod: cfg.Retention,
		DiscardedJobRetentionPeriod: cfg.Retention,
		ErrorHandler:                &errorLogger{log: cfg.Logger},
	}
	if cfg.Handler != nil {
		workers := river.NewWorkers()
		if err := river.AddWorkerSafely(workers, &worker{h: cfg.Handler}); err != nil {
			return nil, fmt.Errorf("queue: add worker: %w", err)
		}
		rcfg.Workers = workers
		rcfg.Queues = map[string]river.QueueConfig{
			river.QueueDefault: {MaxWorkers: cfg.Workers},
			QueueBackfill:      {MaxWorkers: cfg.BackfillWorkers},
		}
		for _, k := range cfg.Kinds {
			if err := k.register(workers); err != nil {
				return nil, fmt.Errorf("queue: add worker of %s: %w", k.kind(), err)
			}
			rcfg.Queues[k.config().Queue] = river.QueueConfig{MaxWorkers: k.config().Workers}
		}
	}

	switch cfg.Dialect {
	case DialectSQLite:
		if cfg.SQL == nil {
			return nil, errors.New("queue: sqlite needs Config.SQL (the shared *sql.DB)")
		}
		if err := checkSQLiteVersion(ctx, cfg.SQL); err != nil {
			return nil, err
		}
		drv := riversqlite.New(cfg.SQL)
		if err := migrate(ctx, drv, cfg.Logger); err != nil {
			return nil, err
		}
		c, err := river.NewClient(drv, rcfg)
		if err != nil {
			return nil, fmt.Errorf("queue: river client: %w", err)
		}
		q.client = c
	case DialectPostgres:
		if cfg.PostgresURL == "" {
			return nil, errors.New("queue: postgres needs Config.PostgresURL")
		}
		pool, err := pgxpool.New(ctx, cfg.PostgresURL)
		if err != nil {
			return nil, fmt.Errorf("queue: postgres pool: %w", err)
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("queue: postgres ping: %w", err)
		}
		drv := riverpgxv5.New(pool)
		if err := migratePostgres(ctx, pool, drv, cfg.Logger); err != nil {
			pool.Close()
			return nil, err
		}
		c, err := river.NewClient(drv, rcfg)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("queue: river client: %w", err)
		}
		q.client, q.pool = c, pool
	default:
		return nil, fmt.Errorf("queue: unknown dialect %q (want %q or %q)", cfg.Dialect, DialectSQLite, DialectPostgres)
	}
	return q, nil
}

// checkSQLiteVersion: riversqlite stores args as JSONB (SQLite >= 3.45).
func checkSQLiteVersion(ctx context.Context, db *sql.DB) error {
	var v string
	if err := db.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&v); err != nil {
		return fmt.Errorf("queue: sqlite version: %w", err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		return fmt.Errorf("queue: sqlite version %q: %w", v, err)
	}
	if major < 3 || (major == 3 && minor < 45) {
		return fmt.Errorf("queue: SQLite %s is too old: River's SQLite driver needs >= 3.45", v)
	}
	return nil
}

func migrate[TTx any](ctx context.Context, drv riverdriver.Driver[TTx], log *slog.Logger) error {
	m, err := rivermigrate.New(drv, &rivermigrate.Config{Logger: log})
	if err != nil {
		return fmt.Errorf("queue: migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("queue: river migrations: %w", err)
	}
	return nil
}

// migratePostgres serialises concurrent hosts' migrations with an advisory lock.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool, drv *riverpgxv5.Driver, log *slog.Logger) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("queue: acquire: %w", err)
	}
	defer conn.Release()
	const lockKey = 0x5117ce // arbitrary, Sluice's queue migrations
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(lockKey)); err != nil {
		return fmt.Errorf("queue: migration lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(lockKey)) }()
	return migrate(ctx, drv, log)
}

// Start starts working jobs (needs a Handler).
func (q *Queue) Start(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cfg.Handler == nil {
		return errors.New("queue: Start needs Config.Handler")
	}
	if q.stopped || q.closed {
		return errors.New("queue: stopped")
	}
	if q.started {
		return nil
	}
	// River's client context must outlive Start's caller: cancelling it is a
	// hard stop. Stop is the way to end it.
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("queue: start: %w", err)
	}
	q.started = true
	return nil
}

// Stop stops fetching, waits for running jobs until ctx is done, then
// cancels their contexts and waits up to CancelGrace more. A job still
// running after that stays "running" in the database and is rescued by
// another host after RescueAfter.
func (q *Queue) Stop(ctx context.Context) error {
	q.mu.Lock()
	if !q.started || q.stopped {
		q.stopped = true
		q.mu.Unlock()
		return nil
	}
	q.stopped = true
	q.mu.Unlock()
	err := q.client.Stop(ctx)
	if err == nil || ctx.Err() == nil {
		return err
	}
	q.log.Warn("queue: graceful stop timed out; cancelling running jobs")
	cctx, cancel := context.WithTimeout(context.Background(), q.cfg.CancelGrace)
	defer cancel()
	if err := q.client.StopAndCancel(cctx); err != nil {
		return fmt.Errorf("queue: hard stop: %w", err)
	}
	return nil
}

// Close stops the queue (as Stop with ctx), waits until River has really
// stopped (or ctx is done) and releases the pgx pool it owns. The shared
// SQLite *sql.DB is not closed.
func (q *Queue) Close(ctx context.Context) error {
	err := q.Stop(ctx)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started && !q.closed {
		// A Stop that timed out leaves River finishing in the background:
		// keep the pool until it is done (or ctx ends).
		select {
		case <-q.client.Stopped():
		case <-ctx.Done():
		}
	}
	if !q.closed && q.pool != nil {
		q.pool.Close()
	}
	q.closed = true
	return err
}

// Enqueue inserts a job unless one for the same (ExportID, IntervalEnd,
// Attempt) exists in any state; inserted reports which.
func (q *Queue) Enqueue(ctx context.Context, j Job, opts EnqueueOptions) (inserted bool, err error) {
	n, err := q.EnqueueMany(ctx, []Job{j}, opts)
	return n == 1, err
}

// enqueueChunk bounds the jobs of one InsertMany.
const enqueueChunk = 500

// EnqueueMany is Enqueue for many jobs, a few hundred per statement; it returns how many
// it inserted (the others existed already).
func (q *Queue) EnqueueMany(ctx context.Context, jobs []Job, opts EnqueueOptions) (inserted int, err error) {
	prio := opts.Priority
	if prio == 0 {
		prio = 1
	}
	if prio < 1 || prio > 4 {
		return 0, fmt.Errorf("queue: priority %d out of 1..4", opts.Priority)
	}
	if opts.Queue != "" && opts.Queue != QueueBackfill {
		return 0, fmt.Errorf("queue: unknown queue %q", opts.Queue)
	}
	io := &river.InsertOpts{
		Priority:    prio,
		Queue:       opts.Queue,
		MaxAttempts: q.cfg.MaxAttempts,
		UniqueOpts:  river.UniqueOpts{ByArgs: true, ByState: uniqueStates},
	}
	if !opts.ScheduledAt.IsZero() {
		io.ScheduledAt = opts.ScheduledAt
	}
	params := make([]river.InsertManyParams, 0, min(len(jobs), enqueueChunk))
	for lo := 0; lo < len(jobs); lo += enqueueChunk {
		params = params[:0]
		for _, j := range jobs[lo:min(lo+enqueueChunk, len(jobs))] {
			j.ExportID = strings.TrimSpace(j.ExportID)
			if j.ExportID == "" || j.IntervalEnd.IsZero() {
				return inserted, errors.New("queue: job needs ExportID and IntervalEnd")
			}
			if j.Attempt < 0 {
				return inserted, errors.New("queue: negative Attempt generation")
			}
			j.IntervalEnd = j.IntervalEnd.UTC().Round(0) // one JSON spelling per instant
			params = append(params, river.InsertManyParams{Args: j, InsertOpts: io})
		}
		res, err := q.client.InsertMany(ctx, params)
		if err != nil {
			first := params[0].Args.(Job)
			return inserted, fmt.Errorf("queue: enqueue %d jobs from %s@%s: %w", len(params), first.ExportID, first.IntervalEnd.Format(time.RFC3339), err)
		}
		for _, r := range res {
			if !r.UniqueSkippedAsDuplicate {
				inserted++
			}
		}
	}
	return inserted, nil
}

// CancelJobsForRun cancels every unfinished job of runID (a running one gets
// its context cancelled and is not retried). It returns how many it cancelled.
func (q *Queue) CancelJobsForRun(ctx context.Context, runID string) (int, error) {
	where := "args->>'run_id' = @run_id"
	if q.cfg.Dialect == DialectSQLite {
		where = "json_extract(args, '$.run_id') = @run_id"
	}
	params := river.NewJobListParams().Kinds(Kind).
		States(rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
			rivertype.JobStateRunning, rivertype.JobStateScheduled).
		Where(where, river.NamedArgs{"run_id": runID}).First(1000)
	res, err := q.client.JobList(ctx, params)
	if err != nil {
		return 0, fmt.Errorf("queue: list jobs of run %s: %w", runID, err)
	}
	n := 0
	for _, row := range res.Jobs {
		if _, err := q.client.JobCancel(ctx, row.ID); err != nil {
			if errors.Is(err, river.ErrNotFound) {
				continue
			}
			return n, fmt.Errorf("queue: cancel job %d: %w", row.ID, err)
		}
		n++
	}
	return n, nil
}

// UnfinishedJobs lists the run jobs that may still execute (available, pending,
// retryable, running or scheduled), a thousand per read: what the host's reaper compares
// the unfinished runs with.
func (q *Queue) UnfinishedJobs(ctx context.Context) ([]Job, error) {
	const page = 1000
	params := river.NewJobListParams().Kinds(Kind).
		States(rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
			rivertype.JobStateRunning, rivertype.JobStateScheduled).First(page)
	var out []Job
	for {
		res, err := q.client.JobList(ctx, params)
		if err != nil {
			return nil, fmt.Errorf("queue: list unfinished jobs: %w", err)
		}
		for _, row := range res.Jobs {
			var j Job
			if err := json.Unmarshal(row.EncodedArgs, &j); err != nil {
				return nil, fmt.Errorf("queue: job %d args: %w", row.ID, err)
			}
			out = append(out, j)
		}
		if len(res.Jobs) < page || res.LastCursor == nil {
			return out, nil
		}
		params = params.After(res.LastCursor)
	}
}

type worker struct {
	river.WorkerDefaults[Job]
	h Handler
}

func (w *worker) Work(ctx context.Context, j *river.Job[Job]) error {
	ctx = context.WithValue(ctx, infoKey{}, Info{ID: j.ID, Attempt: j.Attempt, MaxAttempts: j.MaxAttempts, AttemptedBy: j.AttemptedBy})
	return w.h(ctx, j.Args)
}

// backoff is River's ClientRetryPolicy: exponential with +/-20% jitter.
type backoff struct{ base, max time.Duration }

func (b *backoff) NextRetry(job *rivertype.JobRow) time.Time {
	return time.Now().Add(b.delay(job.Attempt))
}

func (b *backoff) delay(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := float64(b.base) * math.Pow(2, float64(attempt-1))
	if d > float64(b.max) || math.IsInf(d, 0) {
		d = float64(b.max)
	}
	d *= 0.8 + 0.4*rand.Float64() //nolint:gosec // jitter, not security
	return time.Duration(d)
}

type errorLogger struct{ log *slog.Logger }

func (e *errorLogger) HandleError(ctx context.Context, job *rivertype.JobRow, err error) *river.ErrorHandlerResult {
	e.log.WarnContext(ctx, "queue: job failed", "job_id", job.ID, "attempt", job.Attempt, "max_attempts", job.MaxAttempts, "error", err)
	return nil
}

func (e *errorLogger) HandlePanic(ctx context.Context, job *rivertype.JobRow, panicVal any, trace string) *river.ErrorHandlerResult {
	e.log.ErrorContext(ctx, "queue: job panicked", "job_id", job.ID, "attempt", job.Attempt, "panic", panicVal, "trace", trace)
	return nil
}
