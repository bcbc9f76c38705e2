package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"
)

// FireFunc is called once per interval end, with the interval END (not the
// time it fires). The context is cancelled when the Scheduler stops. An error
// (or a panic) keeps that end pending: the next trigger hands it over again,
// before any later end, so a failed enqueue loses no interval.
type FireFunc func(ctx context.Context, end time.Time) error

// Option configures a Scheduler.
type Option func(*Scheduler)

// WithSettleDelay fires each interval end d after the end (so late rows can
// land); the callback still receives the end. Default 0.
func WithSettleDelay(d time.Duration) Option {
	return func(s *Scheduler) {
		if d > 0 {
			s.settle = d
		}
	}
}

// Scheduler fires a callback at each interval end of every registered
// export. It is built on gocron v2: one cron-type job per export whose next
// run time comes from Spec (DST-correct), in UTC.
type Scheduler struct {
	clock  clockwork.Clock
	log    *slog.Logger
	settle time.Duration
	cron   gocron.Scheduler

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	entries map[string]*entry
	started bool
	stopped bool
}

type entry struct {
	jobID uuid.UUID
	spec  Spec
	fire  FireFunc

	mu      sync.Mutex // serialises fires of one export
	lastMu  sync.Mutex // guards lastEnd; never held across a fire, so Upsert never waits for one
	lastEnd time.Time  // last end handed to fire (or the registration time)
}

func (e *entry) last() time.Time {
	e.lastMu.Lock()
	defer e.lastMu.Unlock()
	return e.lastEnd
}

// fireTolerance lets a trigger that runs a hair early still see its end.
const fireTolerance = time.Second

// New returns a stopped Scheduler. clock nil means the real clock; logger nil
// discards.
func New(clock clockwork.Clock, logger *slog.Logger, opts ...Option) (*Scheduler, error) {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{clock: clock, log: logger, entries: map[string]*entry{}}
	for _, o := range opts {
		o(s)
	}
	c, err := gocron.NewScheduler(
		gocron.WithClock(clock),
		gocron.WithLocation(time.UTC),
		gocron.WithLogger(logger),
		gocron.WithStopTimeout(30*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("schedule: gocron: %w", err)
	}
	s.cron = c
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// NewBatch returns a Batch (see NewBatch) whose calls run with the Scheduler's context:
// Stop cancels them.
func (s *Scheduler) NewBatch(fn BatchFunc, max int, window time.Duration) *Batch {
	return NewBatch(s.ctx, fn, max, window)
}

// Settle returns the configured settle delay.
func (s *Scheduler) Settle() time.Duration { return s.settle }

// Upsert registers (or replaces) the schedule of an export. Ends after now
// (the clock's) fire; missed ends are the caller's business (CatchUp). When
// the spec is unchanged the fire bookkeeping is kept. An ended spec (no
// further end) removes the export.
func (s *Scheduler) Upsert(exportID string, spec Spec, fire FireFunc) error {
	if exportID == "" || fire == nil {
		return errors.New("schedule: Upsert needs an export id and a fire func")
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("schedule: scheduler stopped")
	}
	now := s.clock.Now()
	old := s.entries[exportID]
	if spec.Next(now.Add(-s.settle)).IsZero() {
		if old != nil {
			delete(s.entries, exportID)
			_ = s.cron.RemoveJob(old.jobID)
		}
		s.log.Info("schedule: export has no further interval", "export_id", exportID)
		return nil
	}
	e := &entry{spec: spec, fire: fire, lastEnd: now.Add(-s.settle)}
	if old != nil && specEqual(old.spec, spec) {
		// Not old.mu: a fire in progress may call back into the Scheduler (Remove), which
		// waits for s.mu, held here. An end that fire hands over after this read is handed
		// over again by e, and finds its run already there.
		e.lastEnd = old.last()
	}
	def := gocron.CronJob(spec.crontab(), true)
	task := gocron.NewTask(func(ctx context.Context) { s.run(ctx, exportID, e) })
	jopts := []gocron.JobOption{
		gocron.WithName(exportID),
		gocron.WithTags(exportID),
		gocron.WithContext(s.ctx),
		gocron.WithCronImplementation(&specCron{spec: spec, settle: s.settle}),
	}
	var (
		j   gocron.Job
		err error
	)
	if old != nil {
		j, err = s.cron.Update(old.jobID, def, task, jopts...)
	} else {
		j, err = s.cron.NewJob(def, task, jopts...)
	}
	if err != nil {
		return fmt.Errorf("schedule: register %s: %w", exportID, err)
	}
	e.jobID = j.ID()
	s.entries[exportID] = e
	return nil
}

// Remove unregisters an export (no-op if unknown).
func (s *Scheduler) Remove(exportID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[exportID]; ok {
		delete(s.entries, exportID)
		_ = s.cron.RemoveJob(e.jobID)
	}
}

// NextFire reports when the export's callback fires next (zero if unknown).
func (s *Scheduler) NextFire(exportID string) time.Time {
	s.mu.Lock()
	e, ok := s.entries[exportID]
	s.mu.Unlock()
	if !ok {
		return time.Time{}
	}
	end := e.spec.Next(s.clock.Now().Add(-s.settle))
	if end.IsZero() {
		return end
	}
	return end.Add(s.settle)
}

// Start starts firing. Calling it twice is a no-op.
func (s *Scheduler) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return
	}
	s.started = true
	s.cron.Start()
}

// Stop stops firing, cancels the callbacks' context and waits for running
// callbacks until ctx is done.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.cancel()
	if err := s.cron.ShutdownWithContext(ctx); err != nil {
		return fmt.Errorf("schedule: stop: %w", err)
	}
	return nil
}

// run is the gocron task: it hands every end between the last one fired and
// now-settle to fire, in order, so a late or skipped trigger loses nothing.
func (s *Scheduler) run(ctx context.Context, exportID string, e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	upTo := s.clock.Now().Add(-s.settle + fireTolerance)
	ends := e.spec.EndsBetween(e.last(), upTo)
	for _, end := range ends {
		if ctx.Err() != nil {
			return
		}
		// With the tolerance an end may lie up to a second ahead: wait for it.
		if d := end.Add(s.settle).Sub(s.clock.Now()); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.clock.After(d):
			}
		}
		s.log.Debug("schedule: interval end", "export_id", exportID, "end", end)
		if err := s.safeFire(ctx, exportID, e.fire, end); err != nil {
			if ctx.Err() != nil {
				return // the export was removed or the scheduler stopped meanwhile
			}
			s.log.Error("schedule: interval end not handed over; retried at the next trigger", "export_id", exportID, "end", end, "err", err)
			return
		}
		e.lastMu.Lock()
		e.lastEnd = end
		e.lastMu.Unlock()
	}
}

func (s *Scheduler) safeFire(ctx context.Context, exportID string, fire FireFunc, end time.Time) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fire panicked: %v", r)
		}
	}()
	return fire(ctx, end)
}

func specEqual(a, b Spec) bool {
	eq := func(x, y *time.Time) bool {
		if x == nil || y == nil {
			return x == y
		}
		return x.Equal(*y)
	}
	return a.norm() == b.norm() && a.Timezone == b.Timezone && a.Offset == b.Offset &&
		eq(a.StartAt, b.StartAt) && eq(a.EndAt, b.EndAt)
}

// crontab is the cron statement (with seconds, CRON_TZ) equivalent to the
// spec away from DST changes. It is informational: the next run times come
// from specCron, which follows Spec exactly.
func (s Spec) crontab() string {
	off := int64(s.Offset / time.Second)
	sec, min, hour := off%60, (off/60)%60, (off/3600)%24
	var expr string
	switch s.norm() {
	case Interval5Minutes, Interval15Minutes:
		step := int64(s.Period() / time.Minute)
		if first := (off / 60) % step; first != 0 {
			expr = fmt.Sprintf("%d %d/%d * * * *", sec, first, step)
		} else {
			expr = fmt.Sprintf("%d */%d * * * *", sec, step)
		}
	case IntervalHour:
		expr = fmt.Sprintf("%d %d * * * *", sec, min)
	case IntervalDay:
		expr = fmt.Sprintf("%d %d %d * * *", sec, min, hour)
	case IntervalWeek:
		expr = fmt.Sprintf("%d %d %d * * %d", sec, min, hour, off/86400)
	}
	return "CRON_TZ=" + s.Location().String() + " " + expr
}

// specCron is gocron's Cron implementation for a Spec: the next fire time is
// the next interval end plus the settle delay, in UTC (so gocron's wall-clock
// fall-back de-duplication never merges two distinct ends).
type specCron struct {
	spec   Spec
	settle time.Duration
}

func (c *specCron) IsValid(string, *time.Location, time.Time) error { return c.spec.Validate() }

func (c *specCron) Next(lastRun time.Time) time.Time {
	end := c.spec.Next(lastRun.Add(-c.settle))
	if end.IsZero() {
		return end
	}
	return end.Add(c.settle).UTC()
}
