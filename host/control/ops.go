package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
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

// Ready reports whether the host can serve: storage answers.
func (h *Host) Ready(ctx context.Context) error {
	return h.db.SQL().PingContext(ctx)
}

// RequestBackfill creates one run per interval of the export that ends in (start, end],
// clipped to the export's end_at and to now, and enqueues them BackfillParallelism at a
// time (the next starts when one finishes).
func (h *Host) RequestBackfill(ctx context.Context, exportID string, start, end time.Time) (*storage.Backfill, error) {
	e, err := h.db.GetExport(ctx, exportID)
	if err != nil {
		return nil, err
	}
	spec, err := specFor(e)
	if err != nil {
		return nil, err
	}
	now := h.cfg.Clock.Now()
	if end.After(now) {
		end = now
	}
	ends := spec.EndsBetween(start.Add(spec.Period()-time.Nanosecond), end)
	// An interval belongs to the backfill when it lies within [start, end].
	kept := ends[:0]
	for _, t := range ends {
		if s, _ := spec.IntervalFor(t); !s.Before(start) {
			kept = append(kept, t)
		}
	}
	ends = kept
	b, err := h.db.CreateBackfill(ctx, storage.Backfill{ID: uuid.NewString(), ExportID: exportID, StartAt: start.UTC(), EndAt: end.UTC(),
		Status: storage.StatusRunning, TotalRuns: len(ends)})
	if err != nil {
		return nil, err
	}
	bid := b.ID
	var runs []storage.Run
	for _, t := range ends {
		s, t := spec.IntervalFor(t)
		run, created, err := h.db.CreateRunIfAbsent(ctx, storage.Run{ID: uuid.NewString(), ExportID: exportID,
			IntervalStart: s, IntervalEnd: t, Status: storage.StatusStarting, BackfillID: &bid})
		if err != nil {
			return nil, err
		}
		if !created {
			// The interval already has a run (scheduled or an earlier backfill): re-run it
			// as part of this backfill.
			run, err = h.db.TransitionRun(ctx, run.ID, []storage.RunStatus{storage.StatusCompleted, storage.StatusFailed, storage.StatusCancelled},
				storage.StatusStarting, func(r *storage.Run) { r.BackfillID = &bid; r.FinishedAt = nil; r.LatestError = "" })
			if err != nil {
				continue // in flight already: it will finish on its own
			}
		}
		runs = append(runs, run)
	}
	if err := h.db.SetBackfillTotalRuns(ctx, bid, len(runs)); err != nil {
		return nil, err
	}
	h.exportLog(ctx, exportID, slog.LevelInfo, fmt.Sprintf("backfill %s requested: %d runs from %s to %s", bid, len(runs), start.Format(time.RFC3339), end.Format(time.RFC3339)))
	if len(runs) == 0 {
		b, err = h.db.UpdateBackfillStatus(ctx, bid, []storage.RunStatus{storage.StatusRunning}, storage.StatusCompleted)
		return &b, err
	}
	// Oldest first, BackfillParallelism at a time; advanceBackfill starts the rest.
	for i := 0; i < len(runs) && i < h.cfg.BackfillParallelism; i++ {
		if err := h.enqueueRun(ctx, runs[i], runs[i].Attempt); err != nil {
			return nil, err
		}
	}
	b, err = h.db.GetBackfill(ctx, bid)
	return &b, err
}

// advanceBackfill enqueues the next waiting run of a backfill, or closes the backfill when
// every run has finished.
func (h *Host) advanceBackfill(ctx context.Context, backfillID string) {
	b, err := h.db.GetBackfill(ctx, backfillID)
	if err != nil || b.Status.Terminal() {
		return
	}
	runs, err := h.db.ListRuns(ctx, b.ExportID, storage.RunFilter{BackfillID: backfillID})
	if err != nil {
		h.log.Error("backfill progress", "backfill_id", backfillID, "err", err)
		return
	}
	inFlight, failed := 0, 0
	var waiting []storage.Run
	for _, r := range runs {
		switch r.Status {
		case storage.StatusRunning, storage.StatusFailedRetryable:
			inFlight++
		case storage.StatusStarting:
			waiting = append(waiting, r)
		case storage.StatusFailed, storage.StatusCancelled:
			failed++
		}
	}
	// ListRuns is newest first: start the oldest waiting runs.
	for i := len(waiting) - 1; i >= 0 && inFlight < h.cfg.BackfillParallelism; i-- {
		if err := h.enqueueRun(ctx, waiting[i], waiting[i].Attempt); err != nil {
			h.log.Error("backfill enqueue", "backfill_id", backfillID, "err", err)
			return
		}
		inFlight++
	}
	if inFlight == 0 && len(waiting) == 0 {
		to := storage.StatusCompleted
		if failed > 0 {
			to = storage.StatusFailed
		}
		if _, err := h.db.UpdateBackfillStatus(ctx, backfillID, []storage.RunStatus{storage.StatusRunning, storage.StatusStarting}, to); err == nil {
			h.exportLog(ctx, b.ExportID, slog.LevelInfo, fmt.Sprintf("backfill %s finished: %s", backfillID, to))
		}
	}
}

// CancelBackfill cancels a backfill and its runs that have not finished.
func (h *Host) CancelBackfill(ctx context.Context, backfillID string) error {
	b, err := h.db.UpdateBackfillStatus(ctx, backfillID, []storage.RunStatus{storage.StatusStarting, storage.StatusRunning}, storage.StatusCancelled)
	if err != nil {
		return err
	}
	runs, err := h.db.ListRuns(ctx, b.ExportID, storage.RunFilter{BackfillID: backfillID})
	if err != nil {
		return err
	}
	for _, r := range runs {
		if !r.Status.Terminal() {
			if err := h.CancelRun(ctx, r.ID); err != nil && !errors.Is(err, storage.ErrConflict) {
				return err
			}
		}
	}
	return nil
}

// RetryRun re-runs a run's interval: the run goes back to Starting with a new queue job.
func (h *Host) RetryRun(ctx context.Context, runID string) (*storage.Run, error) {
	run, err := h.db.TransitionRun(ctx, runID,
		[]storage.RunStatus{storage.StatusCompleted, storage.StatusFailed, storage.StatusCancelled, storage.StatusFailedRetryable},
		storage.StatusStarting, func(r *storage.Run) { r.FinishedAt = nil; r.LatestError = "" })
	if err != nil {
		return nil, err
	}
	h.runLog(ctx, run, "host", slog.LevelInfo, "retry requested")
	// The generation is the attempt count so far: unique for every deliberate re-run.
	if err := h.enqueueRun(ctx, run, run.Attempt); err != nil {
		return nil, err
	}
	return &run, nil
}

// CancelRun cancels a run: a waiting run never starts; a running one on this host is
// interrupted (a run on another host stops at its next status check).
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
	_, err = h.db.TransitionRun(ctx, runID, []storage.RunStatus{storage.StatusStarting, storage.StatusFailedRetryable, storage.StatusRunning},
		storage.StatusCancelled, func(r *storage.Run) { r.FinishedAt = &now; r.LatestError = "cancelled" })
	if err == nil {
		h.runLog(ctx, run, "host", slog.LevelWarn, "cancelled")
		if run.BackfillID != nil {
			h.advanceBackfill(ctx, *run.BackfillID)
		}
	}
	return err
}

// TestDestination runs the plugin's destination test with the export's capabilities.
func (h *Host) TestDestination(ctx context.Context, exportID string) (abi.TestReport, error) {
	e, err := h.db.GetExport(ctx, exportID)
	if err != nil {
		return abi.TestReport{}, err
	}
	p, manifest, err := h.pluginFor(ctx, e.PluginID)
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
