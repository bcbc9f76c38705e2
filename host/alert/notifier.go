package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sluicehq/sluice/host/queue"
	"github.com/sluicehq/sluice/storage"
)

// Kind is the River job kind of an alert, worked on its own River queue (QueueName).
const Kind = "sluice_alert"

// QueueName is the River queue of alerts: their own workers, never a run's.
const QueueName = "alerts"

// Job is one alert to deliver (River job args of kind "sluice_alert"). It is unique by
// Key in every state for the queue's retention: enqueuing an alert twice (a run job
// handed to another host after a crash enqueues its alert again) delivers it once.
type Job struct {
	Key      string `json:"key" river:"unique"`
	Type     string `json:"type"`
	ExportID string `json:"export_id"`
	RunID    string `json:"run_id"`
	// The run as it failed.
	Attempt       int       `json:"attempt"`
	Generation    int       `json:"generation"`
	BackfillID    string    `json:"backfill_id,omitempty"`
	IntervalStart time.Time `json:"interval_start"`
	IntervalEnd   time.Time `json:"interval_end"`
	Error         string    `json:"error"`
	At            time.Time `json:"at"`
	// The auto-pause's count (TypeExportPaused).
	FailedRuns     int `json:"failed_runs,omitempty"`
	ConsideredRuns int `json:"considered_runs,omitempty"`
}

// Kind implements queue.Args.
func (Job) Kind() string { return Kind }

// Store is what alerts need of storage.
type Store interface {
	GetExportIncludingDeleted(ctx context.Context, id string) (storage.BatchExport, error)
	UpdateAlertState(ctx context.Context, exportID string, fn func(*storage.AlertState) (bool, error)) (storage.AlertState, error)
	AppendLog(ctx context.Context, e storage.LogEntry) (storage.LogEntry, error)
}

// Inserter enqueues jobs (the host's *queue.Queue).
type Inserter interface {
	Insert(ctx context.Context, args queue.Args, opts queue.InsertOptions) (bool, error)
}

// Notifier enqueues alerts when runs fail or exports pause, and delivers them.
type Notifier struct {
	cfg   Config
	db    Store
	q     Inserter
	send  *Sender
	clock clockwork.Clock
	log   *slog.Logger
}

// New validates cfg and returns a Notifier. Give it the queue (UseQueue) before use.
func New(cfg Config, db Store, clock clockwork.Clock, log *slog.Logger) (*Notifier, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if log == nil {
		log = slog.Default()
	}
	return &Notifier{cfg: cfg, db: db, send: NewSender(cfg.Timeout), clock: clock, log: log}, nil
}

// JobKind declares the alert jobs to the queue (queue.Config.Kinds).
func (n *Notifier) JobKind() queue.JobKind {
	return queue.NewKind(queue.KindConfig{
		Queue: QueueName, Workers: n.cfg.Workers, MaxAttempts: n.cfg.MaxAttempts,
		// One delivery is bounded by the sender; the rest is two small transactions.
		Timeout:   n.cfg.Timeout + 30*time.Second,
		RetryBase: n.cfg.RetryBase, RetryMax: n.cfg.RetryMax,
	}, n.handle)
}

// UseQueue sets the queue alerts are enqueued on.
func (n *Notifier) UseQueue(q Inserter) { n.q = q }

// target is where the export's alerts go, in which format ("" when nowhere).
func (n *Notifier) target(e storage.BatchExport) (string, Format) {
	url := e.AlertWebhookURL
	if url == "" {
		url = n.cfg.WebhookURL
	}
	f := n.cfg.Format
	if e.AlertFormat != "" {
		f = Format(e.AlertFormat)
	}
	return url, f
}

func (n *Notifier) period(e storage.BatchExport) time.Duration {
	if e.AlertPeriodSeconds != nil {
		return time.Duration(*e.AlertPeriodSeconds) * time.Second
	}
	return n.cfg.Period
}

func jobFor(typ, key string, e storage.BatchExport, r storage.Run, msg string, at time.Time) Job {
	j := Job{Key: key, Type: typ, ExportID: e.ID, RunID: r.ID, Attempt: r.Attempt, Generation: r.Generation,
		IntervalStart: r.IntervalStart.UTC(), IntervalEnd: r.IntervalEnd.UTC(), Error: truncate(msg, 4*maxErrorLen), At: at.UTC()}
	if r.BackfillID != nil {
		j.BackfillID = *r.BackfillID
	}
	return j
}

// RunFailed enqueues the alert of a run that ended Failed with msg, when the export has a
// receiver (its own webhook or the host's). Calling it again for the same run generation
// enqueues nothing more.
func (n *Notifier) RunFailed(ctx context.Context, e storage.BatchExport, r storage.Run, msg string) error {
	key := fmt.Sprintf("%s:%s:%d", TypeRunFailed, r.ID, r.Generation)
	return n.enqueue(ctx, e, jobFor(TypeRunFailed, key, e, r, msg, n.clock.Now()))
}

// ExportPaused enqueues the alert of an export paused automatically (e as stored after
// the pause) because failed of its last considered runs failed, the last being r. Two
// hosts reporting the same pause (same LastPausedAt) enqueue one alert.
func (n *Notifier) ExportPaused(ctx context.Context, e storage.BatchExport, r storage.Run, msg string, failed, considered int) error {
	at := n.clock.Now()
	if e.LastPausedAt != nil {
		at = *e.LastPausedAt
	}
	j := jobFor(TypeExportPaused, fmt.Sprintf("%s:%s:%s", TypeExportPaused, e.ID, at.UTC().Format(time.RFC3339Nano)), e, r, msg, at)
	j.FailedRuns, j.ConsideredRuns = failed, considered
	return n.enqueue(ctx, e, j)
}

func (n *Notifier) enqueue(ctx context.Context, e storage.BatchExport, j Job) error {
	if url, _ := n.target(e); url == "" {
		return nil // no receiver: nothing to send
	}
	if n.q == nil {
		return errors.New("alert: no queue (UseQueue)")
	}
	if _, err := n.q.Insert(ctx, j, queue.InsertOptions{}); err != nil {
		return fmt.Errorf("enqueue %s alert of export %s: %w", j.Type, j.ExportID, err)
	}
	return nil
}

// handle delivers one alert: the queue's handler of kind "sluice_alert".
func (n *Notifier) handle(ctx context.Context, j Job) error {
	log := n.log.With("alert", j.Key, "export_id", j.ExportID, "run_id", j.RunID)
	e, err := n.db.GetExportIncludingDeleted(ctx, j.ExportID)
	if errors.Is(err, storage.ErrNotFound) {
		return queue.Cancel(fmt.Errorf("alert %s: export %s no longer exists", j.Key, j.ExportID))
	}
	if err != nil {
		return fmt.Errorf("alert %s: read export: %w", j.Key, err)
	}
	if e.DeletedAt != nil {
		log.Info("alert dropped: the export was deleted")
		return nil
	}
	url, format := n.target(e)
	if url == "" {
		log.Info("alert dropped: the export has no alert webhook any more")
		return nil
	}
	period := n.period(e)
	now := n.clock.Now().UTC()
	var v verdict
	var carried int
	st, err := n.db.UpdateAlertState(ctx, e.ID, func(s *storage.AlertState) (bool, error) {
		var changed bool
		v, carried, changed = claim(s, j.Key, j.Type == TypeExportPaused, now, period)
		return changed, nil
	})
	if err != nil {
		return fmt.Errorf("alert %s: rate limit: %w", j.Key, err)
	}
	switch v {
	case verdictDuplicate:
		return nil
	case verdictSuppress:
		last := "-"
		if st.LastAlertAt != nil {
			last = st.LastAlertAt.Format(time.RFC3339)
		}
		msg := fmt.Sprintf("failure alert not sent: one was sent at %s, at most one per %s (%d not sent since)", last, period, st.Suppressed)
		log.Info("alert suppressed by the rate limit", "last_alert_at", last, "period", period, "suppressed", st.Suppressed)
		n.runLog(ctx, j, storage.LevelInfo, msg)
		return nil
	}

	ev := Event{
		ID: j.Key, Type: j.Type,
		Export: ExportInfo{ID: e.ID, Name: e.Name, DestinationType: e.DestinationType},
		Run:    RunInfo{ID: j.RunID, Attempt: j.Attempt, Generation: j.Generation, BackfillID: j.BackfillID, IntervalStart: j.IntervalStart, IntervalEnd: j.IntervalEnd},
		Error:  j.Error, OccurredAt: j.At, Suppressed: carried, Period: period,
		FailedRuns: j.FailedRuns, ConsideredRuns: j.ConsideredRuns,
		Links: LinksFor(n.cfg.PublicURL, e.ID, j.RunID),
	}
	body, err := Payload(ev, format)
	if err != nil {
		return queue.Cancel(fmt.Errorf("alert %s: %w", j.Key, err))
	}
	to := Origin(url)
	sendErr := n.send.Send(ctx, url, j.Key, body)
	if sendErr == nil {
		if _, err := n.db.UpdateAlertState(context.WithoutCancel(ctx), e.ID, func(s *storage.AlertState) (bool, error) {
			return delivered(s, j.Key, carried), nil
		}); err != nil {
			// Delivered, not recorded: a retry would send it again; the receiver has it.
			log.Error("alert delivered, but its state was not stored", "err", err)
		}
		log.Info("alert sent", "type", j.Type, "to", to, "format", format, "suppressed_before", carried)
		n.runLog(ctx, j, storage.LevelInfo, fmt.Sprintf("%s alert sent to %s (%s)", j.Type, to, format))
		return nil
	}
	info, _ := queue.JobInfo(ctx)
	var de *DeliveryError
	final := errors.As(sendErr, &de) && !de.Retryable
	if final || info.Attempt >= info.MaxAttempts {
		if _, err := n.db.UpdateAlertState(context.WithoutCancel(ctx), e.ID, func(s *storage.AlertState) (bool, error) {
			return gaveUp(s, j.Key), nil
		}); err != nil {
			log.Error("cannot free the alert period", "err", err)
		}
		log.Error("alert not delivered; giving up", "to", to, "attempt", info.Attempt, "max_attempts", info.MaxAttempts, "err", sendErr)
		n.runLog(ctx, j, storage.LevelError, fmt.Sprintf("%s alert to %s not delivered after %d attempt(s), giving up: %v", j.Type, to, info.Attempt, sendErr))
		return queue.Cancel(fmt.Errorf("alert %s to %s: %w", j.Key, to, sendErr))
	}
	log.Warn("alert delivery failed; will retry", "to", to, "attempt", info.Attempt, "max_attempts", info.MaxAttempts, "err", sendErr)
	n.runLog(ctx, j, storage.LevelWarn, fmt.Sprintf("%s alert to %s failed (attempt %d of %d), will retry: %v", j.Type, to, info.Attempt, info.MaxAttempts, sendErr))
	return fmt.Errorf("alert %s to %s: %w", j.Key, to, sendErr)
}

// runLog records a line in the log of the alert's run (source "alert").
func (n *Notifier) runLog(ctx context.Context, j Job, level storage.LogLevel, msg string) {
	id := j.RunID
	_, err := n.db.AppendLog(context.WithoutCancel(ctx), storage.LogEntry{
		ExportID: j.ExportID, RunID: &id, Level: level, Source: "alert", Message: msg, Time: n.clock.Now().UTC(),
	})
	if err != nil {
		n.log.Warn("cannot store log line", "export_id", j.ExportID, "err", err)
	}
}
