package control

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/host/schedule"
	"github.com/sluicehq/sluice/storage"
)

// enqueueDue is enqueueInterval for the interval ends the scheduler hands over together
// (schedule.Batch): every `every 5 minutes` export of a host comes due in the same second,
// and one statement per few hundred runs and jobs replaces a transaction per export. Same
// rules: a paused, deleted or vanished export is unscheduled and gets no run; a run that
// already exists is enqueued only while it is Starting (uniqueness in the queue makes that
// harmless when it has its job).
func (h *Host) enqueueDue(ctx context.Context, due []schedule.Due) error {
	ids := make([]string, 0, len(due))
	for _, d := range due {
		ids = append(ids, d.ExportID)
	}
	exports, err := h.db.ExportsByID(ctx, ids)
	if err != nil {
		return err
	}
	runs := make([]storage.Run, 0, len(due))
	for _, d := range due {
		e, ok := exports[d.ExportID]
		if !ok || e.Paused || e.DeletedAt != nil {
			// Paused or deleted through another host: this host's scheduler learns it here.
			h.sched.Remove(d.ExportID)
			continue
		}
		spec, err := specFor(e)
		if err != nil {
			// The API only stores valid schedules: this export cannot have been scheduled.
			h.log.Error("scheduled export has an invalid schedule; no run", "export_id", e.ID, "err", err)
			continue
		}
		if !h.runsScheduledEnd(e, spec, d.End) {
			continue
		}
		start, end := spec.IntervalFor(d.End)
		runs = append(runs, storage.Run{ID: uuid.NewString(), ExportID: e.ID, IntervalStart: start, IntervalEnd: end, Status: storage.StatusStarting})
	}
	asked := make(map[string]bool, len(runs))
	for _, r := range runs {
		asked[r.ID] = true
	}
	stored, err := h.db.CreateRunsIfAbsent(ctx, runs)
	if err != nil {
		return err
	}
	waiting := stored[:0]
	for _, r := range stored {
		// Every host's scheduler fires every end: the run is unique per (export, interval
		// end), so the first creates it and the others find it (docs/scheduling.md).
		h.log.Info("interval end fired", "export_id", r.ExportID, "end", r.IntervalEnd.UTC().Format(time.RFC3339), "run_id", r.ID, "created_here", asked[r.ID])
		if r.Status == storage.StatusStarting { // already ran or running: a tick never re-runs an interval
			waiting = append(waiting, r)
		}
	}
	if err := h.enqueueRuns(ctx, waiting); err != nil {
		return fmt.Errorf("enqueue %d scheduled runs: %w", len(waiting), err)
	}
	return nil
}
