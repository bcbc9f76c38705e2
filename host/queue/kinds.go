package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"
)

// Args is the arguments of a job of an extra kind: a JSON-serialisable struct whose Kind
// names it (river.JobArgs). Fields tagged `river:"unique"` make the job unique by their
// values, in every state, for the queue's Retention (no tag: unique by all its fields).
type Args interface{ Kind() string }

// KindConfig shapes the work of an extra job kind. Each kind has its own River queue and
// workers, so it never takes a worker from the runs, nor waits behind them.
type KindConfig struct {
	// Queue is the River queue of the kind's jobs (required; not "default" nor
	// QueueBackfill, and one per kind).
	Queue string
	// Workers is the number of the kind's jobs worked at once by this host (default 1).
	Workers int
	// MaxAttempts bounds tries of one job (default 5).
	MaxAttempts int
	// Timeout bounds one try (default 1 min).
	Timeout time.Duration
	// RetryBase and RetryMax shape the kind's own backoff: base*2^(try-1) capped at max,
	// +/-20% jitter (defaults 10 s and 10 min).
	RetryBase, RetryMax time.Duration
}

// JobKind is an extra job kind worked beside the runs; build it with NewKind and pass it
// in Config.Kinds.
type JobKind interface {
	kind() string
	config() KindConfig
	register(*river.Workers) error
}

// NewKind declares a job kind with args of type T, worked by h. h's error steers the job as
// a Handler's does (nil, Cancel, Snooze, other: retry with the kind's backoff); JobInfo
// works in h's context, so h can tell its last attempt.
func NewKind[T Args](c KindConfig, h func(ctx context.Context, args T) error) JobKind {
	if c.Workers <= 0 {
		c.Workers = 1
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Minute
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 10 * time.Second
	}
	if c.RetryMax < c.RetryBase {
		c.RetryMax = max(c.RetryBase, 10*time.Minute)
	}
	var zero T
	return &kindWorker[T]{name: zero.Kind(), cfg: c, h: h, backoff: backoff{base: c.RetryBase, max: c.RetryMax}}
}

type kindWorker[T Args] struct {
	river.WorkerDefaults[T]
	name    string
	cfg     KindConfig
	h       func(ctx context.Context, args T) error
	backoff backoff
}

func (w *kindWorker[T]) kind() string       { return w.name }
func (w *kindWorker[T]) config() KindConfig { return w.cfg }
func (w *kindWorker[T]) register(ws *river.Workers) error {
	return river.AddWorkerSafely[T](ws, w)
}

// NextRetry gives the kind its own backoff instead of the runs'.
func (w *kindWorker[T]) NextRetry(j *river.Job[T]) time.Time {
	return time.Now().Add(w.backoff.delay(j.Attempt))
}

// Timeout bounds one try.
func (w *kindWorker[T]) Timeout(*river.Job[T]) time.Duration { return w.cfg.Timeout }

func (w *kindWorker[T]) Work(ctx context.Context, j *river.Job[T]) error {
	ctx = context.WithValue(ctx, infoKey{}, Info{ID: j.ID, Attempt: j.Attempt, MaxAttempts: j.MaxAttempts, AttemptedBy: j.AttemptedBy})
	return w.h(ctx, j.Args)
}

// checkKinds validates the extra kinds against each other and the run queues.
func checkKinds(kinds []JobKind) error {
	queues := map[string]string{river.QueueDefault: Kind, QueueBackfill: Kind}
	names := map[string]bool{Kind: true}
	for _, k := range kinds {
		if k.kind() == "" || names[k.kind()] {
			return fmt.Errorf("queue: job kind %q is empty or declared twice", k.kind())
		}
		names[k.kind()] = true
		q := k.config().Queue
		if q == "" {
			return fmt.Errorf("queue: job kind %q has no queue", k.kind())
		}
		if other, dup := queues[q]; dup {
			return fmt.Errorf("queue: job kind %q wants queue %q, which %q uses", k.kind(), q, other)
		}
		queues[q] = k.kind()
	}
	return nil
}

// InsertOptions adjusts one Insert.
type InsertOptions struct {
	// ScheduledAt delays the job (zero: now).
	ScheduledAt time.Time
}

// Insert enqueues a job of an extra kind declared in Config.Kinds, on its queue, unless a
// job with the same unique args exists in any state (within Retention); inserted reports
// which. It works on an insert-only Queue too.
func (q *Queue) Insert(ctx context.Context, args Args, opts InsertOptions) (inserted bool, err error) {
	var cfg *KindConfig
	for _, k := range q.cfg.Kinds {
		if k.kind() == args.Kind() {
			c := k.config()
			cfg = &c
			break
		}
	}
	if cfg == nil {
		return false, fmt.Errorf("queue: job kind %q is not declared in Config.Kinds (runs are enqueued with Enqueue)", args.Kind())
	}
	io := &river.InsertOpts{
		Queue:       cfg.Queue,
		MaxAttempts: cfg.MaxAttempts,
		UniqueOpts:  river.UniqueOpts{ByArgs: true, ByState: uniqueStates},
	}
	if !opts.ScheduledAt.IsZero() {
		io.ScheduledAt = opts.ScheduledAt
	}
	res, err := q.client.Insert(ctx, args, io)
	if err != nil {
		return false, fmt.Errorf("queue: insert %s job: %w", args.Kind(), err)
	}
	return !res.UniqueSkippedAsDuplicate, nil
}
