package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/queue"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/storage"
)

// Run state transitions (docs/runs.md):
//
//	Starting ──worker picks it──▶ Running ──finish ok──▶ Completed
//	Running ──plugin says retry / host I/O retryable──▶ FailedRetryable ──backoff──▶ Running
//	Running ──plugin says fail / attempts exhausted──▶ Failed
//	Starting|Running|FailedRetryable ──cancel──▶ Cancelled
//	Completed|Failed|Cancelled|FailedRetryable ──retry (API), backfill──▶ Starting, generation+1
//
// A run is executed by one queue job at a time: the job of its current generation. A job
// of an earlier generation (a pending automatic retry when the user asked for a re-run)
// can neither start nor finish the run. A host killed mid-run leaves the run Running; the
// queue's rescuer hands the same job to another worker, which takes the run from Running
// again with the next attempt number.

var (
	errCancelledByUser = errors.New("run cancelled")
	errRunMoved        = errors.New("the stored run moved on: cancelled elsewhere or re-requested")
)

// runJob is the queue's handler: one attempt of one run.
func (h *Host) runJob(ctx context.Context, j queue.Job) error {
	run, err := h.db.GetRun(ctx, j.RunID)
	if errors.Is(err, storage.ErrNotFound) {
		return queue.Cancel(fmt.Errorf("run %s no longer exists", j.RunID))
	}
	if err != nil {
		return err
	}
	gen := j.Attempt
	if run.Generation != gen {
		return queue.Cancel(fmt.Errorf("run %s was re-requested: this job is of generation %d, the run of %d", run.ID, gen, run.Generation))
	}
	if run.Status.Terminal() {
		// A duplicate delivery of a finished run, or cancelled while waiting; a Failed run's
		// alert again, in case its host died before enqueuing it (unique: sent once).
		return h.alertAgain(ctx, run)
	}
	export, err := h.db.GetExport(ctx, run.ExportID)
	if errors.Is(err, storage.ErrNotFound) {
		h.finishRun(ctx, run, gen, storage.StatusCancelled, 0, 0, errExportGone.Error())
		return queue.Cancel(errExportGone)
	}
	if err != nil {
		return err
	}
	now := h.cfg.Clock.Now().UTC()
	run, err = h.db.TransitionRunOf(ctx, run.ID, gen,
		[]storage.RunStatus{storage.StatusStarting, storage.StatusFailedRetryable, storage.StatusRunning},
		storage.StatusRunning, func(r *storage.Run) {
			r.Attempt++
			r.StartedAt = &now
			// The module this attempt runs: the export's pin, which execute checks against the
			// plugin row it loads.
			r.PluginVersion, r.PluginSHA256 = export.PluginVersion, export.PluginSHA256
		})
	if errors.Is(err, storage.ErrConflict) {
		return nil // cancelled, finished or re-requested meanwhile
	}
	if err != nil {
		return err
	}
	log := h.log.With("run_id", run.ID, "export_id", export.ID, "plugin", export.DestinationType, "attempt", run.Attempt, "generation", gen)

	ctx, cancel := context.WithCancelCause(ctx)
	h.mu.Lock()
	h.running[run.ID] = func() { cancel(errCancelledByUser) }
	h.mu.Unlock()
	watched := make(chan struct{})
	go func() { defer close(watched); h.watchRun(ctx, run.ID, gen, cancel) }()
	defer func() {
		h.mu.Lock()
		delete(h.running, run.ID)
		h.mu.Unlock()
		cancel(nil)
		<-watched
	}()

	h.runLog(ctx, run, "host", slog.LevelInfo, fmt.Sprintf("attempt %d on host %s: exporting [%s, %s) with plugin %s %s (sha256 %.12s)", run.Attempt, h.cfg.HostID,
		run.IntervalStart.Format(time.RFC3339), run.IntervalEnd.Format(time.RFC3339), export.DestinationType, export.PluginVersion, export.PluginSHA256))
	started := time.Now()
	res, class, runErr := h.execute(ctx, run, export, gen)
	if runErr == nil {
		log.Info("run completed", "records", res.Records, "bytes", res.Bytes, "duration", time.Since(started))
		h.runLog(ctx, run, "host", slog.LevelInfo, fmt.Sprintf("completed: %d records, %d bytes in %s", res.Records, res.Bytes, time.Since(started).Round(time.Millisecond)))
		// The destination has the data: record it even if the job's context ends now.
		if err := h.finishRun(context.WithoutCancel(ctx), run, gen, storage.StatusCompleted, res.Records, res.Bytes, ""); err != nil {
			return err // River retries; the attempt rewrites the same data
		}
		h.metrics.RunFinished(export.DestinationType, storage.StatusCompleted, time.Since(started), res.Records, res.Bytes)
		return nil
	}
	bg := context.WithoutCancel(ctx)
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errCancelledByUser):
		h.runLog(bg, run, "host", slog.LevelWarn, "cancelled")
		if err := h.finishRun(bg, run, gen, storage.StatusCancelled, 0, 0, "cancelled"); err != nil {
			return err
		}
		return queue.Cancel(errCancelledByUser)
	case ctx.Err() != nil:
		// Stopped from outside: the run watcher saw the stored run move, or River's job
		// cancel (sent by the host that cancelled it) came first. A deadline leaves the run
		// Running in this generation and goes on to the plugin's classification.
		cur, err := h.db.GetRun(bg, run.ID)
		if errors.Is(err, storage.ErrNotFound) {
			return queue.Cancel(fmt.Errorf("run %s no longer exists", run.ID))
		}
		if err != nil {
			return fmt.Errorf("attempt stopped from outside; reading the run: %w", err)
		}
		if cur.Generation != gen || cur.Status != storage.StatusRunning {
			h.runLog(bg, run, "host", slog.LevelWarn, fmt.Sprintf("attempt %d stopped: the run is %s in generation %d elsewhere", run.Attempt, cur.Status, cur.Generation))
			return queue.Cancel(fmt.Errorf("%w: %w", errRunMoved, context.Cause(ctx)))
		}
		if h.draining.Load() && errors.Is(ctx.Err(), context.Canceled) {
			return h.handBack(bg, run, gen)
		}
	}
	msg := runErr.Error()
	attemptsLeft := true
	if info, ok := queue.JobInfo(ctx); ok {
		attemptsLeft = info.Attempt < info.MaxAttempts
	}
	switch {
	case class.Outcome == abi.OutcomeFail || !attemptsLeft:
		reason := "not retryable"
		if class.Outcome != abi.OutcomeFail {
			reason = fmt.Sprintf("gave up after %d attempts", h.cfg.MaxAttempts)
		}
		log.Error("run failed", "err", runErr, "reason", reason)
		h.runLog(bg, run, "host", slog.LevelError, fmt.Sprintf("failed (%s): %s", reason, msg))
		if err := h.finishRun(bg, run, gen, storage.StatusFailed, 0, 0, msg); err != nil {
			return err
		}
		h.metrics.RunFinished(export.DestinationType, storage.StatusFailed, time.Since(started), 0, 0)
		h.alertRunFailed(bg, export, run, msg)
		h.maybeAutoPause(bg, export, run, msg)
		return queue.Cancel(runErr)
	default:
		// "ok" is retried too: a run's failure means its finish did not succeed, so nothing
		// is known to be committed, and a run is never Completed over a failure.
		h.setRetryable(bg, run, gen, msg)
		h.metrics.RunRetried(export.DestinationType)
		if class.Outcome == abi.OutcomeRetryAfter && class.RetryAfterMS > 0 {
			d := time.Duration(class.RetryAfterMS) * time.Millisecond
			h.runLog(bg, run, "host", slog.LevelWarn, fmt.Sprintf("retrying in %s: %s", d, msg))
			return queue.Snooze(d)
		}
		h.runLog(bg, run, "host", slog.LevelWarn, "will retry: "+msg)
		return runErr
	}
}

// watchRun reads the run every RunCheckInterval while it executes, and stops it when
// someone else moved it: cancelled through another host, or re-requested (a newer
// generation). This is how a cancel reaches the host executing a run, on any database.
func (h *Host) watchRun(ctx context.Context, runID string, gen int, cancel context.CancelCauseFunc) {
	t := time.NewTicker(h.cfg.RunCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r, err := h.db.GetRun(ctx, runID)
		switch {
		case errors.Is(err, storage.ErrNotFound), err == nil && (r.Generation != gen || r.Status != storage.StatusRunning):
			cancel(errRunMoved) // runJob reads the stored run again and says why
			return
		case err != nil && ctx.Err() == nil:
			h.log.Warn("run watcher cannot read the run", "run_id", runID, "err", err)
		}
	}
}

// execute streams the run's interval from the source into the plugin. On failure it
// also returns the classification, asked of the plugin while its session is still open.
func (h *Host) execute(ctx context.Context, run storage.Run, export storage.BatchExport, generation int) (abi.Result, abi.Classification, error) {
	fail := func(err error) (abi.Result, abi.Classification, error) {
		return abi.Result{}, hostClassify(err), err
	}
	if h.cfg.Memory != nil {
		// The run's memory allowance, before anything is allocated; waiting holds the queue
		// worker (docs/RATIONALE.md, "A memory budget"). A cancel or the deadline ends the wait.
		release, err := h.cfg.Memory.Admit(ctx, func() {
			h.log.Info("run waiting for memory budget", "run_id", run.ID, "export_id", export.ID)
			h.runLog(ctx, run, "host", slog.LevelInfo, "waiting for memory budget: other runs hold it (--memory-limit-mib)")
		})
		if err != nil {
			return fail(err)
		}
		defer release()
	}
	p, manifest, err := h.pluginFor(ctx, export.PluginID, export.PluginSHA256)
	if err != nil {
		return fail(err)
	}
	public, err := decodeConfig(export.Config)
	if err != nil {
		return fail(err)
	}
	bind, release, err := h.bindings(ctx, run, export, manifest, public)
	defer release()
	if err != nil {
		// The destination config cannot be bound (a missing bucket, project or credential,
		// an unreadable key): retrying cannot help until the export is fixed.
		return abi.Result{}, abi.Classification{Outcome: abi.OutcomeFail, Reason: "configuration"}, fmt.Errorf("binding the destination's capabilities: %w", err)
	}
	q, err := queryFor(run, export)
	if err != nil {
		return abi.Result{}, abi.Classification{Outcome: abi.OutcomeFail}, err
	}
	h.countRun(ctx, run, generation, q)
	sess, err := p.Open(ctx, abi.OpenRequest{
		RunID: run.ID, ExportID: export.ID, ExportName: export.Name,
		IntervalStart: run.IntervalStart, IntervalEnd: run.IntervalEnd,
		Attempt: run.Attempt, Generation: generation, Backfill: run.BackfillID != nil,
		Config: public, Columns: abi.EventColumns,
	}, bind)
	if err != nil {
		// The plugin failed to open (its session is already closed): it still classifies
		// its own error, on a fresh call (a refused login is final, a timeout is not).
		if ctx.Err() != nil {
			return abi.Result{}, abi.Classification{Outcome: abi.OutcomeRetry}, err
		}
		return abi.Result{}, p.Classify(context.WithoutCancel(ctx), err, run.Attempt), err
	}
	defer func() {
		if cerr := sess.Close(context.WithoutCancel(ctx)); cerr != nil {
			h.log.Warn("plugin close failed", "run_id", run.ID, "err", cerr)
		}
	}()
	var records int64
	// The source reads ahead while the plugin encodes (a pipeline, not a loop): a few
	// batches, bounded in bytes (source.Prefetch; docs/performance.md, issue 16).
	err = source.Prefetch(h.src, source.DefaultPrefetchBatches).Stream(ctx, q, source.BatchOptions{MaxRecords: h.cfg.BatchRecords, MaxBytes: h.cfg.BatchBytes},
		func(batch []byte, n int, _ source.Position) error {
			if err := sess.WriteBatch(ctx, batch, n); err != nil {
				return err
			}
			records += int64(n)
			return nil
		})
	var res abi.Result
	if err == nil {
		var fin runtime.Result
		fin, err = sess.Finish(ctx)
		res = fin.Result
		switch {
		case err != nil:
		case !fin.RecordsReported:
			res.Records = records // the plugin does not count: what it was given
		case res.Records != records:
			// The plugin's count is what the destination holds (a warehouse load, a filter):
			// it is what the run records, and the log says so.
			h.runLog(ctx, run, "host", slog.LevelInfo, fmt.Sprintf("the destination reports %d records written of %d streamed", res.Records, records))
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return res, abi.Classification{Outcome: abi.OutcomeRetry}, err
		}
		return res, sess.Classify(context.WithoutCancel(ctx), err), err
	}
	return res, abi.Classification{}, nil
}

// countRun records the run's records_total_count: what the source holds for its interval
// as the attempt starts (one count query, under the count cap). A count that fails or
// hits the cap leaves it null and says so in the run log; the run goes on.
func (h *Host) countRun(ctx context.Context, run storage.Run, gen int, q source.Query) {
	n, timedOut, err := h.count(ctx, q)
	switch {
	case errors.Is(err, errNoCounter), ctx.Err() != nil:
		return
	case err != nil:
		h.log.Warn("cannot count the run's records", "run_id", run.ID, "export_id", run.ExportID, "err", err)
		h.runLog(ctx, run, "host", slog.LevelWarn, "cannot count the interval's records (records_total_count stays null): "+err.Error())
		return
	case timedOut:
		h.runLog(ctx, run, "host", slog.LevelWarn, fmt.Sprintf("counting the interval's records took longer than %s; records_total_count stays null", h.cfg.CountTimeout))
		return
	}
	if err := h.db.SetRunRecordsTotal(ctx, run.ID, gen, n); err != nil && !errors.Is(err, storage.ErrConflict) {
		h.log.Warn("cannot record the run's records count", "run_id", run.ID, "err", err)
	}
}

// hostClassify decides on failures that happen outside a plugin session.
func hostClassify(err error) abi.Classification {
	var re *runtime.TrapError
	switch {
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, errNoBucket), errors.Is(err, errPinMismatch):
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: "configuration"}
	case errors.As(err, &re):
		return abi.Classification{Outcome: abi.OutcomeRetry, Reason: "plugin trapped"}
	}
	return abi.Classification{Outcome: abi.OutcomeRetry}
}

// finishRun records the end of the run's attempt by the job of generation gen, and closes
// its backfill when it was the last unfinished run. It returns an error only when the
// status could not be written: the caller returns it to the queue, which tries the job
// again rather than leave the run Running. A run moved by someone else meanwhile
// (cancelled, re-requested) is not an error: the newer state stands.
func (h *Host) finishRun(ctx context.Context, run storage.Run, gen int, to storage.RunStatus, records, bytes int64, msg string) error {
	now := h.cfg.Clock.Now().UTC()
	from := []storage.RunStatus{storage.StatusStarting, storage.StatusRunning, storage.StatusFailedRetryable}
	_, err := h.db.TransitionRunOf(ctx, run.ID, gen, from, to, func(r *storage.Run) {
		r.FinishedAt = &now
		r.LatestError = msg
		if to == storage.StatusCompleted {
			r.RecordsCompleted, r.BytesExported = records, bytes
		}
	})
	switch {
	case errors.Is(err, storage.ErrConflict):
		// Cancelled through another host, or re-requested, while this attempt ran: the
		// newer state stands.
		h.log.Warn("run moved by someone else while it ran; not recording", "run_id", run.ID, "status", to, "err", err)
		return nil
	case err != nil:
		h.log.Error("cannot record run status", "run_id", run.ID, "status", to, "err", err)
		return fmt.Errorf("recording run %s %s: %w", run.ID, to, err)
	}
	if run.BackfillID != nil {
		h.backfillRunFinished(ctx, *run.BackfillID)
	}
	return nil
}

func (h *Host) setRetryable(ctx context.Context, run storage.Run, gen int, msg string) {
	_, err := h.db.TransitionRunOf(ctx, run.ID, gen, []storage.RunStatus{storage.StatusRunning}, storage.StatusFailedRetryable,
		func(r *storage.Run) { r.LatestError = msg })
	if err != nil {
		h.log.Error("cannot record run status", "run_id", run.ID, "status", storage.StatusFailedRetryable, "err", err)
	}
}

// maybeAutoPause follows PostHog's rule: an export with AutoPauseFailures or more Failed
// runs among its last AutoPauseRuns finished runs is paused, its running backfills are
// cancelled, its log says why, and an alert goes out (run is the failure that tipped it).
func (h *Host) maybeAutoPause(ctx context.Context, e storage.BatchExport, run storage.Run, msg string) {
	failed, considered, err := h.db.RecentFailures(ctx, e.ID, h.cfg.AutoPauseRuns)
	if err != nil {
		h.log.Error("auto-pause: cannot count recent failures", "export_id", e.ID, "err", err)
		return
	}
	if failed < h.cfg.AutoPauseFailures {
		return
	}
	paused, err := h.db.SetExportPaused(ctx, e.ID, true)
	if err != nil {
		h.log.Error("cannot auto-pause export", "export_id", e.ID, "err", err)
		return
	}
	h.sched.Remove(e.ID)
	h.exportLog(ctx, e.ID, slog.LevelError, fmt.Sprintf("export paused automatically: %d of its last %d runs failed; fix the destination and unpause it", failed, considered))
	h.alertPaused(ctx, paused, run, msg, failed, considered)
	backfills, err := h.db.ListBackfills(ctx, e.ID)
	if err != nil {
		h.log.Error("auto-pause: cannot list backfills", "export_id", e.ID, "err", err)
		return
	}
	for _, b := range backfills {
		if b.Status.Terminal() {
			continue
		}
		if err := h.CancelBackfill(ctx, b.ID); err != nil && !errors.Is(err, storage.ErrConflict) {
			h.log.Error("auto-pause: cannot cancel backfill", "export_id", e.ID, "backfill_id", b.ID, "err", err)
		}
	}
}

func decodeConfig(s string) (map[string]any, error) {
	m := map[string]any{}
	if s == "" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("stored config: %w", err)
	}
	return m, nil
}

// exportFilters is the JSON shape of BatchExport.Filters.
type exportFilters struct {
	IncludeEvents []string `json:"include_events"`
	ExcludeEvents []string `json:"exclude_events"`
	Properties    []struct {
		Key      string `json:"key"`
		Operator string `json:"operator"`
		Op       string `json:"op"`
		Value    any    `json:"value"`
	} `json:"properties"`
	TeamID *int64 `json:"team_id"`
}

func queryFor(run storage.Run, e storage.BatchExport) (source.Query, error) {
	q := source.Query{Start: run.IntervalStart, End: run.IntervalEnd}
	if e.Filters == "" {
		return q, nil
	}
	var f exportFilters
	if err := json.Unmarshal([]byte(e.Filters), &f); err != nil {
		return q, fmt.Errorf("export filters: %w", err)
	}
	q.IncludeEvents, q.ExcludeEvents, q.TeamID = f.IncludeEvents, f.ExcludeEvents, f.TeamID
	for _, p := range f.Properties {
		op := p.Operator
		if op == "" {
			op = p.Op
		}
		v := ""
		switch x := p.Value.(type) {
		case nil:
		case string:
			v = x
		default:
			b, _ := json.Marshal(x)
			v = string(b)
		}
		q.PropertyFilters = append(q.PropertyFilters, source.PropertyFilter{Key: p.Key, Op: op, Value: v})
	}
	return q, nil
}
