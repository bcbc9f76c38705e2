package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/host/queue"
	"github.com/sluicehq/sluice/host/schedule"
	"github.com/sluicehq/sluice/storage"
)

func specFor(e storage.BatchExport) (schedule.Spec, error) {
	return schedule.Parse(e.Interval, e.Timezone, time.Duration(e.IntervalOffset)*time.Second, e.StartAt, e.EndAt)
}

// schedule (re)registers an export with the scheduler, or removes it when paused or
// deleted. With catchUp it also enqueues the intervals that ended while nothing was
// scheduling them, within the catch-up window.
func (h *Host) schedule(ctx context.Context, e storage.BatchExport, catchUp bool) error {
	if e.Paused || e.DeletedAt != nil {
		h.sched.Remove(e.ID)
		return nil
	}
	spec, err := specFor(e)
	if err != nil {
		return err
	}
	exportID := e.ID
	if err := h.sched.Upsert(exportID, spec, func(ctx context.Context, end time.Time) {
		if _, err := h.enqueueInterval(ctx, exportID, end, nil); err != nil {
			h.log.Error("cannot enqueue scheduled run", "export_id", exportID, "interval_end", end, "err", err)
		}
	}); err != nil {
		return err
	}
	if !catchUp {
		return nil
	}
	last := e.CreatedAt
	if runs, err := h.db.ListRuns(ctx, e.ID, storage.RunFilter{Limit: 1}); err == nil && len(runs) > 0 && runs[0].BackfillID == nil {
		last = runs[0].IntervalEnd
	}
	now := h.cfg.Clock.Now()
	for _, end := range schedule.CatchUp(spec, last, now.Add(-h.cfg.SettleDelay), h.cfg.CatchUpWindow) {
		if _, err := h.enqueueInterval(ctx, e.ID, end, nil); err != nil {
			return fmt.Errorf("catch up %s: %w", end.Format(time.RFC3339), err)
		}
	}
	return nil
}

// enqueueInterval makes sure the run of (export, interval end) exists and has a job. Two
// schedulers (or a scheduler and a catch-up) racing on one interval create one run and one
// job: the run is unique per (export, interval end) in storage, the job per (run,
// generation) in the queue.
func (h *Host) enqueueInterval(ctx context.Context, exportID string, end time.Time, backfillID *string) (storage.Run, error) {
	e, err := h.db.GetExport(ctx, exportID)
	if err != nil {
		return storage.Run{}, err
	}
	spec, err := specFor(e)
	if err != nil {
		return storage.Run{}, err
	}
	start, end := spec.IntervalFor(end)
	run, created, err := h.db.CreateRunIfAbsent(ctx, storage.Run{
		ID: uuid.NewString(), ExportID: exportID, IntervalStart: start, IntervalEnd: end,
		Status: storage.StatusStarting, BackfillID: backfillID,
	})
	if err != nil {
		return storage.Run{}, err
	}
	if !created && run.Status != storage.StatusStarting {
		return run, nil // already ran or running: a scheduled tick never re-runs an interval
	}
	return run, h.enqueueRun(ctx, run, 0)
}

// enqueueRun inserts the queue job of a run. generation distinguishes deliberate re-runs
// (retries requested through the API) from duplicate enqueues of the same request.
func (h *Host) enqueueRun(ctx context.Context, run storage.Run, generation int) error {
	_, err := h.q.Enqueue(ctx, queue.Job{RunID: run.ID, ExportID: run.ExportID, IntervalEnd: run.IntervalEnd, Attempt: generation}, queue.EnqueueOptions{})
	return err
}

// errExportGone ends runs whose export was deleted.
var errExportGone = errors.New("the export was deleted")
