package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's connection opener for the shared handles lives until Close.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

// backend is one database shared by every Queue of a test (two Queues on one
// backend simulate two hosts).
type backend struct {
	name    string
	dialect string
	db      *sql.DB // sqlite: the shared handle
	pgURL   string
	pgConn  *pgx.Conn
}

func (b *backend) config(h Handler) Config {
	return Config{
		Dialect:      b.dialect,
		SQL:          b.db,
		PostgresURL:  b.pgURL,
		Handler:      h,
		Workers:      4,
		MaxAttempts:  5,
		JobTimeout:   10 * time.Second,
		RetryBase:    50 * time.Millisecond,
		RetryMax:     200 * time.Millisecond,
		PollInterval: 50 * time.Millisecond,
		CancelGrace:  2 * time.Second,
		Logger:       testLogger(),
	}
}

// testLogger: SLUICE_QUEUE_TEST_LOG=1 prints River's warnings and errors.
func testLogger() *slog.Logger {
	if os.Getenv("SLUICE_QUEUE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// exec runs raw SQL written with ? placeholders (rewritten to $n for postgres).
func (b *backend) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	ctx := context.Background()
	if b.dialect == DialectSQLite {
		if _, err := b.db.ExecContext(ctx, query, args...); err != nil {
			t.Fatalf("exec %s: %v", query, err)
		}
		return
	}
	if _, err := b.pgConn.Exec(ctx, pgPlaceholders(query), args...); err != nil {
		t.Fatalf("exec %s: %v", query, err)
	}
}

func (b *backend) queryInt(t *testing.T, query string, args ...any) int {
	t.Helper()
	ctx := context.Background()
	var n int
	var err error
	if b.dialect == DialectSQLite {
		err = b.db.QueryRowContext(ctx, query, args...).Scan(&n)
	} else {
		err = b.pgConn.QueryRow(ctx, pgPlaceholders(query), args...).Scan(&n)
	}
	if err != nil {
		t.Fatalf("query %s: %v", query, err)
	}
	return n
}

// stateOf returns the state of the job of runID.
func (b *backend) stateOf(t *testing.T, runID string) string {
	t.Helper()
	ctx := context.Background()
	var s string
	var err error
	if b.dialect == DialectSQLite {
		err = b.db.QueryRowContext(ctx, "SELECT state FROM river_job WHERE json_extract(args, '$.run_id') = ?", runID).Scan(&s)
	} else {
		err = b.pgConn.QueryRow(ctx, "SELECT state::text FROM river_job WHERE args->>'run_id' = $1", runID).Scan(&s)
	}
	if err != nil {
		t.Fatalf("state of %s: %v", runID, err)
	}
	return s
}

func pgPlaceholders(q string) string {
	out := make([]byte, 0, len(q)+8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			out = append(out, fmt.Sprintf("$%d", n)...)
			continue
		}
		out = append(out, q[i])
	}
	return string(out)
}

// sqliteDSNs: the brief's plain DSN and the storage package's (immediate
// transactions, sqlite time format, foreign keys).
var sqliteDSNs = map[string]string{
	"sqlite": "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)",
	"sqlite-storage-dsn": "?" + (url.Values{
		"_pragma":      {"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(NORMAL)"},
		"_txlock":      {"immediate"},
		"_time_format": {"sqlite"},
	}).Encode(),
}

func forEachBackend(t *testing.T, fn func(t *testing.T, b *backend)) {
	for _, name := range []string{"sqlite", "sqlite-storage-dsn"} {
		if name != "sqlite" && testing.Short() {
			continue
		}
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sluice.db")
			db, err := sql.Open("sqlite", path+sqliteDSNs[name])
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(16) // as storage does: the pool is shared with gorm
			t.Cleanup(func() { db.Close() })
			fn(t, &backend{name: name, dialect: DialectSQLite, db: db})
		})
	}
	t.Run("postgres", func(t *testing.T) {
		base := os.Getenv("SLUICE_TEST_POSTGRES_URL")
		if base == "" {
			t.Skip("SLUICE_TEST_POSTGRES_URL not set")
		}
		ctx := context.Background()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Fatalf("connect %s: %v", base, err)
		}
		dbName := fmt.Sprintf("sluice_queue_%d_%d", time.Now().UnixNano(), rand.IntN(1e6))
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+dbName); err != nil {
			admin.Close(ctx)
			t.Fatal(err)
		}
		u, _ := url.Parse(base)
		u.Path = "/" + dbName
		conn, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			conn.Close(ctx)
			_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
			admin.Close(ctx)
		})
		fn(t, &backend{name: "postgres", dialect: DialectPostgres, pgURL: u.String(), pgConn: conn})
	})
}

func newQueue(t *testing.T, cfg Config) *Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return q
}

func start(t *testing.T, q *Queue) {
	t.Helper()
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func enqueue(t *testing.T, q *Queue, j Job, o EnqueueOptions) bool {
	t.Helper()
	ok, err := q.Enqueue(context.Background(), j, o)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return ok
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", within, what)
}

var end0 = time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)

type calls struct {
	mu    sync.Mutex
	jobs  []Job
	infos []Info
	times []time.Time
}

func (c *calls) add(ctx context.Context, j Job) {
	info, _ := JobInfo(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.jobs = append(c.jobs, j)
	c.infos = append(c.infos, info)
	c.times = append(c.times, time.Now())
}

func (c *calls) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.jobs)
}

func TestEnqueueAndWork(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		var c calls
		q := newQueue(t, b.config(func(ctx context.Context, j Job) error { c.add(ctx, j); return nil }))
		start(t, q)
		ny, _ := time.LoadLocation("America/New_York")
		for i := range 3 {
			end := end0.Add(time.Duration(i) * time.Hour).In(ny)
			if !enqueue(t, q, Job{RunID: fmt.Sprintf("run-%d", i), ExportID: "exp", IntervalEnd: end}, EnqueueOptions{}) {
				t.Fatalf("job %d not inserted", i)
			}
		}
		eventually(t, 10*time.Second, "3 jobs worked", func() bool { return c.n() == 3 })
		c.mu.Lock()
		defer c.mu.Unlock()
		seen := map[string]bool{}
		for i, j := range c.jobs {
			seen[j.RunID] = true
			if j.ExportID != "exp" || j.IntervalEnd.Location() != time.UTC || j.IntervalEnd.Minute() != 0 {
				t.Errorf("job %+v", j)
			}
			if c.infos[i].Attempt != 1 || c.infos[i].ID == 0 || c.infos[i].MaxAttempts != 5 {
				t.Errorf("info %+v", c.infos[i])
			}
		}
		if len(seen) != 3 {
			t.Fatalf("runs seen %v", seen)
		}
		eventually(t, 5*time.Second, "completed", func() bool { return b.stateOf(t, "run-2") == "completed" })
	})
}

func TestUniqueConcurrentEnqueuersTwoHosts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		// Two insert-only Queues on the same database: two hosts' schedulers.
		hosts := []*Queue{newQueue(t, b.config(nil)), newQueue(t, b.config(nil))}
		paris, _ := time.LoadLocation("Europe/Paris")
		var inserted atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				end := end0
				if i%2 == 1 {
					end = end0.In(paris) // same instant, other zone: still one job
				}
				ok, err := hosts[i%2].Enqueue(context.Background(),
					Job{RunID: fmt.Sprintf("host%d-run", i), ExportID: "exp-u", IntervalEnd: end}, EnqueueOptions{})
				if err != nil {
					errs <- err
					return
				}
				if ok {
					inserted.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("concurrent Enqueue: %v", err)
		}
		if got := inserted.Load(); got != 1 {
			t.Fatalf("%d inserted, want exactly 1", got)
		}
		if n := b.queryInt(t, "SELECT count(*) FROM river_job"); n != 1 {
			t.Fatalf("%d rows, want 1", n)
		}
		// A deliberate re-run (new generation) is a new job; repeating it is not.
		if !enqueue(t, hosts[0], Job{RunID: "rerun", ExportID: "exp-u", IntervalEnd: end0, Attempt: 1}, EnqueueOptions{}) {
			t.Fatal("generation 1 not inserted")
		}
		if enqueue(t, hosts[1], Job{RunID: "rerun-dup", ExportID: "exp-u", IntervalEnd: end0, Attempt: 1}, EnqueueOptions{}) {
			t.Fatal("generation 1 inserted twice")
		}
		// Another interval or export is another job.
		if !enqueue(t, hosts[1], Job{RunID: "next", ExportID: "exp-u", IntervalEnd: end0.Add(time.Hour)}, EnqueueOptions{}) {
			t.Fatal("next interval not inserted")
		}
		if !enqueue(t, hosts[1], Job{RunID: "other", ExportID: "exp-v", IntervalEnd: end0}, EnqueueOptions{}) {
			t.Fatal("other export not inserted")
		}
		if n := b.queryInt(t, "SELECT count(*) FROM river_job"); n != 4 {
			t.Fatalf("%d rows, want 4", n)
		}
	})
}

func TestTwoWorkingHostsRunEachJobOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		var mu sync.Mutex
		count := map[string]int{}
		h := func(ctx context.Context, j Job) error {
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			count[j.RunID]++
			mu.Unlock()
			return nil
		}
		q1, q2 := newQueue(t, b.config(h)), newQueue(t, b.config(h))
		start(t, q1)
		start(t, q2)
		const jobs = 20
		for i := range jobs {
			for _, q := range []*Queue{q1, q2} { // both hosts' schedulers tick
				enqueue(t, q, Job{RunID: fmt.Sprintf("r%d", i), ExportID: "exp-2h", IntervalEnd: end0.Add(time.Duration(i) * 5 * time.Minute)}, EnqueueOptions{})
			}
		}
		eventually(t, 20*time.Second, "all jobs worked", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(count) == jobs
		})
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		for r, n := range count {
			if n != 1 {
				t.Errorf("%s worked %d times", r, n)
			}
		}
	})
}

func TestCancelStopsRetries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		var c calls
		q := newQueue(t, b.config(func(ctx context.Context, j Job) error {
			c.add(ctx, j)
			return Cancel(errors.New("bucket does not exist"))
		}))
		start(t, q)
		enqueue(t, q, Job{RunID: "cancel-me", ExportID: "exp", IntervalEnd: end0}, EnqueueOptions{})
		eventually(t, 10*time.Second, "cancelled", func() bool { return b.stateOf(t, "cancel-me") == "cancelled" })
		time.Sleep(500 * time.Millisecond)
		if c.n() != 1 {
			t.Fatalf("handler ran %d times, want 1", c.n())
		}
		// A late scheduler cannot resurrect the interval; a new generation can.
		if enqueue(t, q, Job{RunID: "late", ExportID: "exp", IntervalEnd: end0}, EnqueueOptions{}) {
			t.Fatal("cancelled interval enqueued again with the same generation")
		}
	})
}

func TestSnoozeRunsAgainAfterDelay(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		var c calls
		q := newQueue(t, b.config(func(ctx context.Context, j Job) error {
			c.add(ctx, j)
			if c.n() == 1 {
				return Snooze(time.Second)
			}
			return nil
		}))
		start(t, q)
		enqueue(t, q, Job{RunID: "snooze", ExportID: "exp", IntervalEnd: end0}, EnqueueOptions{})
		eventually(t, 10*time.Second, "second run", func() bool { return c.n() == 2 })
		c.mu.Lock()
		gap := c.times[1].Sub(c.times[0])
		attempts := []int{c.infos[0].Attempt, c.infos[1].Attempt}
		c.mu.Unlock()
		if gap < 900*time.Millisecond {
			t.Fatalf("re-ran after %s, want >= 1s", gap)
		}
		t.Logf("snooze gap %s, River attempts %v", gap, attempts)
		eventually(t, 5*time.Second, "completed", func() bool { return b.stateOf(t, "snooze") == "completed" })
	})
}

func TestPlainErrorRetriesUpToMaxAttempts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		var c calls
		cfg := b.config(func(ctx context.Context, j Job) error {
			c.add(ctx, j)
			return errors.New("connection reset")
		})
		cfg.MaxAttempts = 3
		q := newQueue(t, cfg)
		start(t, q)
		enqueue(t, q, Job{RunID: "flaky", ExportID: "exp", IntervalEnd: end0}, EnqueueOptions{})
		eventually(t, 15*time.Second, "discarded", func() bool { return b.stateOf(t, "flaky") == "discarded" })
		time.Sleep(500 * time.Millisecond)
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.jobs) != 3 {
			t.Fatalf("handler ran %d times, want 3", len(c.jobs))
		}
		for i, info := range c.infos {
			if info.Attempt != i+1 {
				t.Errorf("try %d has River attempt %d", i, info.Attempt)
			}
		}
	})
}

func TestScheduledAtAndPriority(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		var c calls
		q := newQueue(t, b.config(func(ctx context.Context, j Job) error { c.add(ctx, j); return nil }))
		start(t, q)
		at := time.Now().Add(700 * time.Millisecond)
		enqueue(t, q, Job{RunID: "later", ExportID: "exp", IntervalEnd: end0}, EnqueueOptions{ScheduledAt: at, Priority: 2})
		if _, err := q.Enqueue(context.Background(), Job{ExportID: "exp", IntervalEnd: end0.Add(time.Hour)}, EnqueueOptions{Priority: 9}); err == nil {
			t.Fatal("priority 9 accepted")
		}
		eventually(t, 10*time.Second, "scheduled job worked", func() bool { return c.n() == 1 })
		if c.times[0].Before(at) {
			t.Fatalf("ran at %s before %s", c.times[0], at)
		}
	})
}

func TestCancelJobsForRun(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		running := make(chan struct{})
		var ctxErr atomic.Value
		q := newQueue(t, b.config(func(ctx context.Context, j Job) error {
			if j.RunID == "busy" {
				close(running)
				<-ctx.Done()
				ctxErr.Store(context.Cause(ctx).Error())
				return ctx.Err()
			}
			return nil
		}))
		// Queued (scheduled) jobs.
		enqueue(t, q, Job{RunID: "r1", ExportID: "exp", IntervalEnd: end0}, EnqueueOptions{ScheduledAt: time.Now().Add(time.Hour)})
		enqueue(t, q, Job{RunID: "r2", ExportID: "exp", IntervalEnd: end0.Add(time.Hour)}, EnqueueOptions{ScheduledAt: time.Now().Add(time.Hour)})
		n, err := q.CancelJobsForRun(context.Background(), "r1")
		if err != nil || n != 1 {
			t.Fatalf("CancelJobsForRun = %d, %v", n, err)
		}
		if s := b.stateOf(t, "r1"); s != "cancelled" {
			t.Fatalf("r1 %s", s)
		}
		if s := b.stateOf(t, "r2"); s != "scheduled" {
			t.Fatalf("r2 %s", s)
		}
		// A running job: its context is cancelled and it is not retried.
		start(t, q)
		enqueue(t, q, Job{RunID: "busy", ExportID: "exp", IntervalEnd: end0.Add(2 * time.Hour)}, EnqueueOptions{})
		select {
		case <-running:
		case <-time.After(10 * time.Second):
			t.Fatal("busy job did not start")
		}
		if n, err := q.CancelJobsForRun(context.Background(), "busy"); err != nil || n != 1 {
			t.Fatalf("CancelJobsForRun(busy) = %d, %v", n, err)
		}
		eventually(t, 10*time.Second, "busy cancelled", func() bool { return b.stateOf(t, "busy") == "cancelled" })
		t.Logf("running job's context cause: %v", ctxErr.Load())
	})
}

// A host dies while working a job: its handler never returns, the process
// stops without finishing it (the row stays "running"). Another host's River
// rescuer picks it up after RescueAfter and runs it.
func TestDeadHostJobIsRescued(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		release := make(chan struct{})
		started := make(chan struct{}, 1)
		cfg1 := b.config(func(ctx context.Context, j Job) error {
			started <- struct{}{}
			<-release // ignores ctx: a wedged or killed process
			return nil
		})
		cfg1.ClientID = "host-dead"
		cfg1.JobTimeout = time.Second
		cfg1.RescueAfter = 2 * time.Second
		cfg1.CancelGrace = 100 * time.Millisecond
		q1, err := New(context.Background(), cfg1)
		if err != nil {
			t.Fatal(err)
		}
		start(t, q1)
		enqueue(t, q1, Job{RunID: "orphan", ExportID: "exp", IntervalEnd: end0}, EnqueueOptions{})
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("job did not start on host 1")
		}
		startedAt := time.Now()
		sctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_ = q1.Stop(sctx) // times out: the job stays running in the database
		cancel()
		if s := b.stateOf(t, "orphan"); s != "running" {
			t.Fatalf("after host 1 died the job is %s, want running", s)
		}

		var c calls
		cfg2 := b.config(func(ctx context.Context, j Job) error { c.add(ctx, j); return nil })
		cfg2.ClientID = "host-live"
		cfg2.JobTimeout = time.Second
		cfg2.RescueAfter = 2 * time.Second
		q2 := newQueue(t, cfg2)
		// Host 2 comes up once the job is past RescueAfter (as a restarted or
		// surviving host would see it). River's rescuer checks when its host
		// becomes leader and then every 30 s, so a host already running
		// notices up to 30 s later.
		time.Sleep(time.Until(startedAt.Add(cfg2.RescueAfter + 200*time.Millisecond)))
		t0 := time.Now()
		start(t, q2)
		eventually(t, 15*time.Second, "rescued job run on host 2", func() bool { return c.n() == 1 })
		t.Logf("rescued and run %s after host 2 started", time.Since(t0).Round(time.Millisecond))
		c.mu.Lock()
		info := c.infos[0]
		c.mu.Unlock()
		if info.Attempt != 2 {
			t.Errorf("rescued try has attempt %d, want 2", info.Attempt)
		}
		eventually(t, 5*time.Second, "completed", func() bool { return b.stateOf(t, "orphan") == "completed" })

		// Let host 1's wedged goroutine finish so nothing leaks.
		close(release)
		ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel2()
		_ = q1.Close(ctx)
	})
}

// Same, but the dead host is simulated in the database only: a row left
// running long ago by a host that no longer exists.
func TestStaleRunningRowIsRescued(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ins := newQueue(t, b.config(nil))
		enqueue(t, ins, Job{RunID: "stale", ExportID: "exp", IntervalEnd: end0}, EnqueueOptions{})
		old := time.Now().Add(-time.Hour).UTC()
		if b.dialect == DialectSQLite {
			b.exec(t, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = ?, attempted_by = jsonb('["gone-host"]')`,
				old.Format("2006-01-02 15:04:05.000"))
		} else {
			b.exec(t, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = ?, attempted_by = ARRAY['gone-host']`, old)
		}
		var c calls
		cfg := b.config(func(ctx context.Context, j Job) error { c.add(ctx, j); return nil })
		cfg.JobTimeout = time.Second
		cfg.RescueAfter = 2 * time.Second
		q := newQueue(t, cfg)
		t0 := time.Now()
		start(t, q)
		eventually(t, 20*time.Second, "stale job rescued", func() bool { return c.n() == 1 })
		t.Logf("rescued after %s", time.Since(t0).Round(time.Millisecond))
	})
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Config{Dialect: "mysql"}); err == nil {
		t.Fatal("unknown dialect accepted")
	}
	if _, err := New(ctx, Config{Dialect: DialectSQLite}); err == nil {
		t.Fatal("sqlite without SQL accepted")
	}
	if _, err := New(ctx, Config{Dialect: DialectPostgres}); err == nil {
		t.Fatal("postgres without URL accepted")
	}
	if _, err := New(ctx, Config{Dialect: DialectSQLite, JobTimeout: time.Hour, RescueAfter: time.Minute}); err == nil {
		t.Fatal("RescueAfter < JobTimeout accepted")
	}
}

func TestBackoff(t *testing.T) {
	b := &backoff{base: time.Second, max: time.Minute}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 10: time.Minute, 500: time.Minute} {
		for range 50 {
			d := b.delay(attempt)
			if d < want*8/10 || d > want*12/10 {
				t.Fatalf("attempt %d: delay %s outside %s +/-20%%", attempt, d, want)
			}
		}
	}
}
