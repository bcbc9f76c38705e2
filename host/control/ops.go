package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/storage"
)

// ExportChanged (re)schedules an export after the API created, updated, paused, unpaused
// or deleted it.
func (h *Host) ExportChanged(ctx context.Context, exportID string) error {
	e, err := h.db.GetExport(ctx, exportID)
	if errors.Is(err, storage.ErrNotFound) {
		h.sched.Remove(exportID)
		return nil
	}
	if err != nil {
		return err
	}
	return h.schedule(ctx, e, false)
}

// Ready reports whether the host should get traffic: it is not draining (shutting down)
// and storage answers.
func (h *Host) Ready(ctx context.Context) error {
	if h.draining.Load() {
		return api.ErrDraining
	}
	return h.db.SQL().PingContext(ctx)
}

// reconcileBackfills closes the backfills left Running with no unfinished run (a host
// stopped between a backfill's last run and its status), and counts again the records of
// those whose count a stopped host left pending: called at start.
func (h *Host) reconcileBackfills(ctx context.Context, exports []storage.BatchExport) error {
	for _, e := range exports {
		bs, err := h.db.ListBackfills(ctx, e.ID)
		if err != nil {
			return fmt.Errorf("backfills of %s: %w", e.ID, err)
		}
		for _, b := range bs {
			if !b.Status.Terminal() {
				h.backfillRunFinished(ctx, b.ID)
			}
			if b.TotalRecordsStatus == storage.RecordsCountPending {
				// A host stopped while counting it: count again.
				start := b.StartAt
				if b.AdjustedStartAt != nil {
					start = *b.AdjustedStartAt
				}
				iv, _, err := h.backfillIntervals(e, api.BackfillRequest{Start: start, End: b.EndAt})
				if err == nil && len(iv) > 0 {
					h.countBackfillAsync(b.ID, e, iv[0].Start, iv[len(iv)-1].End)
				}
			}
		}
	}
	return nil
}

// backfillRunFinished closes a backfill once none of its runs will change on its own: an
// index lookup per finished run, whatever the backfill's size. Its final status comes
// from the counts of all its runs.
func (h *Host) backfillRunFinished(ctx context.Context, backfillID string) {
	more, err := h.db.BackfillHasUnfinishedRuns(ctx, backfillID)
	if err != nil {
		h.log.Error("backfill progress", "backfill_id", backfillID, "err", err)
		return
	}
	if more {
		return
	}
	p, err := h.db.GetBackfillProgress(ctx, backfillID)
	if err != nil {
		h.log.Error("backfill progress", "backfill_id", backfillID, "err", err)
		return
	}
	to := storage.StatusCompleted
	if p.FailedRuns > 0 {
		to = storage.StatusFailed
	}
	cur, err := h.db.GetBackfill(ctx, backfillID)
	if err != nil {
		h.log.Error("backfill progress", "backfill_id", backfillID, "err", err)
		return
	}
	if cur.Status == to || cur.Status == storage.StatusCancelled {
		return
	}
	// From Running, or between Completed and Failed when a run of a finished backfill was
	// retried since: the status follows its runs.
	b, err := h.db.UpdateBackfillStatus(ctx, backfillID, []storage.RunStatus{storage.StatusRunning, storage.StatusStarting, storage.StatusCompleted, storage.StatusFailed}, to)
	switch {
	case errors.Is(err, storage.ErrConflict):
		// finished already (another host's last run, or cancelled)
	case err != nil:
		h.log.Error("cannot record backfill status", "backfill_id", backfillID, "status", to, "err", err)
	default:
		h.exportLog(ctx, b.ExportID, slog.LevelInfo, fmt.Sprintf("backfill %s finished: %s (%d runs completed, %d failed or cancelled, %d records)",
			backfillID, to, p.CompletedRuns, p.FailedRuns, p.RecordsCompleted))
	}
}

// CancelBackfill cancels a backfill and every run of it that has not finished: the
// waiting ones in one statement, the running ones through the hosts executing them.
func (h *Host) CancelBackfill(ctx context.Context, backfillID string) error {
	b, err := h.db.UpdateBackfillStatus(ctx, backfillID, []storage.RunStatus{storage.StatusStarting, storage.StatusRunning}, storage.StatusCancelled)
	if err != nil {
		return err
	}
	n, err := h.db.CancelWaitingBackfillRuns(ctx, backfillID, "cancelled with its backfill")
	if err != nil {
		return err
	}
	var errs []error
	err = h.db.ForEachRun(ctx, storage.RunSet{BackfillID: backfillID, Statuses: []storage.RunStatus{storage.StatusRunning}}, func(r storage.Run) error {
		if err := h.CancelRun(ctx, r.ID); err != nil && !errors.Is(err, storage.ErrConflict) {
			errs = append(errs, fmt.Errorf("run %s: %w", r.ID, err))
		}
		return nil
	})
	h.exportLog(ctx, b.ExportID, slog.LevelWarn, fmt.Sprintf("backfill %s cancelled: %d waiting runs cancelled", backfillID, n))
	return errors.Join(append(errs, err)...)
}

// RetryRun re-runs a run's interval as a deliberate re-run: the run goes back to Starting
// with the next generation, the jobs of earlier generations (a pending automatic retry)
// are cancelled, and a job of the new generation is enqueued. Only that job may execute
// the run from now on.
func (h *Host) RetryRun(ctx context.Context, runID string) (*storage.Run, error) {
	run, err := h.db.TransitionRun(ctx, runID,
		[]storage.RunStatus{storage.StatusCompleted, storage.StatusFailed, storage.StatusCancelled, storage.StatusFailedRetryable},
		storage.StatusStarting, func(r *storage.Run) {
			r.Generation++
			r.StartedAt, r.FinishedAt, r.LatestError, r.RecordsCompleted, r.BytesExported = nil, nil, "", 0, 0
			r.RecordsTotalCount, r.RecordsMissing, r.DataCheckedAt = nil, nil, nil
		})
	if err != nil {
		return nil, err
	}
	h.runLog(ctx, run, "host", slog.LevelInfo, fmt.Sprintf("retry requested (generation %d)", run.Generation))
	if n, err := h.q.CancelJobsForRun(ctx, run.ID); err != nil {
		// Harmless for correctness (an old generation's job cannot take the run), but say so.
		h.log.Warn("cannot cancel the earlier jobs of a retried run", "run_id", run.ID, "err", err)
	} else if n > 0 {
		h.log.Info("cancelled the earlier jobs of a retried run", "run_id", run.ID, "jobs", n)
	}
	if err := h.enqueueRun(ctx, run); err != nil {
		return nil, err
	}
	return &run, nil
}

// CancelRun cancels a run. A waiting run never starts. A run executing on this host is
// interrupted at once; one executing on another host is marked Cancelled here and stops
// within RunCheckInterval, when that host's run watcher reads the status (on PostgreSQL
// River's job cancel usually reaches it sooner).
func (h *Host) CancelRun(ctx context.Context, runID string) error {
	run, err := h.db.GetRun(ctx, runID)
	if err != nil {
		return err
	}
	h.mu.Lock()
	cancel := h.running[runID]
	h.mu.Unlock()
	if cancel != nil {
		cancel() // the worker records Cancelled
		return nil
	}
	now := h.cfg.Clock.Now().UTC()
	run, err = h.db.TransitionRun(ctx, runID, []storage.RunStatus{storage.StatusStarting, storage.StatusFailedRetryable, storage.StatusRunning},
		storage.StatusCancelled, func(r *storage.Run) { r.FinishedAt = &now; r.LatestError = "cancelled" })
	if err != nil {
		return err
	}
	h.runLog(ctx, run, "host", slog.LevelWarn, "cancelled")
	if _, err := h.q.CancelJobsForRun(ctx, runID); err != nil {
		h.log.Warn("cannot cancel the jobs of a cancelled run", "run_id", runID, "err", err)
	}
	if run.BackfillID != nil {
		h.backfillRunFinished(ctx, *run.BackfillID)
	}
	return nil
}

// TestDestination runs the plugin's destination test with the export's capabilities.
func (h *Host) TestDestination(ctx context.Context, exportID string) (abi.TestReport, error) {
	e, err := h.db.GetExport(ctx, exportID)
	if err != nil {
		return abi.TestReport{}, err
	}
	p, manifest, err := h.pluginFor(ctx, e.PluginID, e.PluginSHA256)
	if err != nil {
		return abi.TestReport{}, err
	}
	public, err := decodeConfig(e.Config)
	if err != nil {
		return abi.TestReport{}, err
	}
	now := h.cfg.Clock.Now().UTC().Truncate(time.Hour)
	run := storage.Run{ID: "test-" + uuid.NewString(), ExportID: e.ID, IntervalStart: now.Add(-time.Hour), IntervalEnd: now}
	bind, release, err := h.bindings(ctx, run, e, manifest, public)
	defer release()
	if err != nil {
		return abi.TestReport{Steps: []abi.TestStep{{Name: "bind capabilities", OK: false, Message: err.Error()}}}, nil
	}
	return p.Test(ctx, abi.OpenRequest{RunID: run.ID, ExportID: e.ID, ExportName: e.Name, IntervalStart: run.IntervalStart,
		IntervalEnd: run.IntervalEnd, Attempt: 1, Config: public, Columns: abi.EventColumns}, bind)
}
