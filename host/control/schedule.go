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
	h.scheduled(e)
	if e.Paused || e.DeletedAt != nil {
		h.sched.Remove(e.ID)
		return nil
	}
	spec, err := specFor(e)
	if err != nil {
		return err
	}
	exportID := e.ID
	if err := h.sched.Upsert(exportID, spec, h.due.Fire(exportID)); err != nil {
		return err
	}
	if !catchUp {
		return nil
	}
	last := e.CreatedAt
	runs, err := h.db.ListRuns(ctx, e.ID, storage.RunFilter{Limit: 1})
	if err != nil {
		return fmt.Errorf("catch up: newest run: %w", err)
	}
	if len(runs) > 0 && runs[0].BackfillID == nil {
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
	if errors.Is(err, storage.ErrNotFound) || err == nil && (e.Paused || e.DeletedAt != nil) {
		// Paused or deleted through another host: this host's scheduler learns it here.
		h.sched.Remove(exportID)
		return storage.Run{}, nil
	}
	if err != nil {
		return storage.Run{}, err
	}
	spec, err := specFor(e)
	if err != nil {
		return storage.Run{}, err
	}
	if backfillID == nil && !h.runsScheduledEnd(e, spec, end) {
		return storage.Run{}, nil
	}
	start, end := spec.IntervalFor(end)
	run, created, err := h.db.CreateRunIfAbsent(ctx, storage.Run{
		ID: uuid.NewString(), ExportID: exportID, IntervalStart: start, IntervalEnd: end,
		Status: storage.StatusStarting, BackfillID: backfillID,
	})
	if err != nil {
		return storage.Run{}, err
	}
	if backfillID == nil {
		// Every host's scheduler fires every end: the run is unique per (export, interval
		// end), so the first creates it and the others find it (docs/scheduling.md).
		h.log.Info("interval end fired", "export_id", exportID, "end", end.UTC().Format(time.RFC3339), "run_id", run.ID, "created_here", created)
	}
	if !created && run.Status != storage.StatusStarting {
		return run, nil // already ran or running: a scheduled tick never re-runs an interval
	}
	return run, h.enqueueRun(ctx, run)
}

// scheduled records the version of an export this host's scheduler now follows.
func (h *Host) scheduled(e storage.BatchExport) {
	h.versionsMu.Lock()
	h.versions[e.ID] = e.UpdatedAt.UTC()
	h.versionsMu.Unlock()
}

// syncSchedules takes the schedule changes made through other hosts: it reads every
// live export's updated_at (one narrow query) and reschedules the exports whose version
// differs from the one this host follows, and unschedules those deleted. An export
// changed through this host was rescheduled already (ExportChanged) and reads as
// unchanged. Several hosts scheduling one export still create one run per interval.
func (h *Host) syncSchedules(ctx context.Context) error {
	versions, err := h.db.ExportVersions(ctx)
	if err != nil {
		return err
	}
	h.versionsMu.Lock()
	var changed, gone []string
	for id, v := range versions {
		if known, ok := h.versions[id]; !ok || !known.Equal(v) {
			changed = append(changed, id)
		}
	}
	for id := range h.versions {
		if _, ok := versions[id]; !ok {
			gone = append(gone, id)
			delete(h.versions, id)
		}
	}
	h.versionsMu.Unlock()
	for _, id := range gone {
		h.sched.Remove(id)
		h.log.Info("schedule sync: export deleted elsewhere, unscheduled", "export_id", id)
	}
	for _, id := range changed {
		e, err := h.db.GetExport(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			h.sched.Remove(id)
			continue
		}
		if err != nil {
			return err
		}
		if err := h.schedule(ctx, e, false); err != nil {
			h.log.Error("schedule sync: cannot schedule export", "export_id", id, "err", err)
			continue
		}
		h.log.Info("schedule sync: export changed elsewhere, rescheduled", "export_id", id, "interval", e.Interval,
			"offset_s", e.IntervalOffset, "timezone", e.Timezone, "paused", e.Paused, "next_fire", h.sched.NextFire(id))
	}
	return nil
}

// jobOf is the queue job of a run's current generation. The queue keeps one job per
// (export, interval end, generation): enqueueing it again is a no-op, while a deliberate
// re-run (a higher generation) gets a new job.
func jobOf(run storage.Run) queue.Job {
	return queue.Job{RunID: run.ID, ExportID: run.ExportID, IntervalEnd: run.IntervalEnd, Attempt: run.Generation}
}

// queueOf puts backfill runs on their own queue, so that scheduled runs never wait
// behind them.
func queueOf(run storage.Run) string {
	if run.BackfillID != nil {
		return queue.QueueBackfill
	}
	return ""
}

// enqueueRun inserts the job of the run's current generation.
func (h *Host) enqueueRun(ctx context.Context, run storage.Run) error {
	_, err := h.q.Enqueue(ctx, jobOf(run), queue.EnqueueOptions{Queue: queueOf(run)})
	return err
}

// enqueueRuns inserts the jobs of many runs, a few hundred per statement.
func (h *Host) enqueueRuns(ctx context.Context, runs []storage.Run) error {
	byQueue := map[string][]queue.Job{}
	for _, r := range runs {
		byQueue[queueOf(r)] = append(byQueue[queueOf(r)], jobOf(r))
	}
	for name, jobs := range byQueue {
		if _, err := h.q.EnqueueMany(ctx, jobs, queue.EnqueueOptions{Queue: name}); err != nil {
			return err
		}
	}
	return nil
}

// enqueueWaiting gives every run waiting in Starting its job: a host stopped between
// storing runs and enqueueing them (a backfill request, a retry) leaves such runs, and
// the next start of any host picks them up. Jobs that exist are not duplicated.
func (h *Host) enqueueWaiting(ctx context.Context) error {
	var waiting []storage.Run
	err := h.db.ForEachRun(ctx, storage.RunSet{Statuses: []storage.RunStatus{storage.StatusStarting}}, func(r storage.Run) error {
		waiting = append(waiting, storage.Run{ID: r.ID, ExportID: r.ExportID, IntervalEnd: r.IntervalEnd, Generation: r.Generation, BackfillID: r.BackfillID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("waiting runs: %w", err)
	}
	return h.enqueueRuns(ctx, waiting)
}

// errExportGone ends runs whose export was deleted.
var errExportGone = errors.New("the export was deleted")

// runsScheduledEnd says whether a scheduled fire (or catch-up) of end gets a run; both the
// per-export path (enqueueInterval) and a tick's batch (enqueueDue) ask it.
//   - The end must belong to the stored schedule: this host's scheduler may still have the
//     schedule the export had before it was changed through another host; the next schedule
//     sync (ScheduleSyncInterval) gives it the new one.
//   - The end must come after the export's creation: the scheduler hands over ends from
//     settle delay before registration, and that interval ended before the export existed
//     (docs/scheduling.md, the first run). created_at is the database's time; the check holds
//     when the scheduler's clock agrees (a fake clock in tests may lie before it).
func (h *Host) runsScheduledEnd(e storage.BatchExport, spec schedule.Spec, end time.Time) bool {
	if len(spec.EndsBetween(end.Add(-time.Nanosecond), end)) == 0 {
		h.log.Info("schedule changed elsewhere: skipping an end of the old schedule", "export_id", e.ID, "end", end)
		return false
	}
	return end.After(e.CreatedAt) || e.CreatedAt.After(h.cfg.Clock.Now())
}
