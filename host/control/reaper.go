package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/host/queue"
	"github.com/sluicehq/sluice/storage"
)

// reap finds the unfinished runs (Starting, Running, FailedRetryable) unchanged for
// ReapAfter that no queue job of their generation will ever execute, and settles them:
//
//   - a Starting run whose job was never inserted (the enqueue failed) gets its job now;
//   - any other such run is marked Failed with an error saying why: its job was discarded
//     (River's rescuer gave up after the last attempt of a dead host, or it ran out of
//     attempts without the run being recorded), cancelled, or completed without moving the
//     run. A retry through the API runs it again.
//
// Every host reaps; two hosts reaping one run are safe: the job's insert is unique per
// (run, generation) and the transition to Failed is conditional on the status and the
// generation read. The runs are read before the jobs, so a run that finishes between the
// two reads is no longer unfinished when the transition is tried, and stays as it is.
func (h *Host) reap(ctx context.Context) error {
	var suspects []storage.Run
	err := h.db.ForEachRun(ctx, storage.RunSet{
		Statuses:      []storage.RunStatus{storage.StatusStarting, storage.StatusRunning, storage.StatusFailedRetryable},
		UpdatedBefore: time.Now().Add(-h.cfg.ReapAfter),
	}, func(r storage.Run) error {
		suspects = append(suspects, r)
		return nil
	})
	if err != nil || len(suspects) == 0 {
		return err
	}
	jobs, err := h.q.UnfinishedJobs(ctx)
	if err != nil {
		return err
	}
	type key struct {
		run string
		gen int
	}
	live := make(map[key]bool, len(jobs))
	for _, j := range jobs {
		live[key{j.RunID, j.Attempt}] = true
	}
	for _, r := range suspects {
		if live[key{r.ID, r.Generation}] {
			continue
		}
		if err := h.reapRun(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// reapRun settles one unfinished run that has no unfinished job of its generation.
func (h *Host) reapRun(ctx context.Context, r storage.Run) error {
	log := h.log.With("run_id", r.ID, "export_id", r.ExportID, "generation", r.Generation, "status", r.Status)
	if r.Status == storage.StatusStarting {
		inserted, err := h.q.Enqueue(ctx, jobOf(r), queue.EnqueueOptions{Queue: queueOf(r)})
		if err != nil {
			return fmt.Errorf("reaper: enqueue run %s: %w", r.ID, err)
		}
		if inserted {
			log.Warn("reaper: a run waiting with no queue job got its job")
			h.runLog(ctx, r, "host", slog.LevelWarn, "the run was waiting without a queue job (its enqueue had failed): enqueued again")
			return nil
		}
	}
	msg := fmt.Sprintf("the run was %s but its queue job (generation %d) had ended without recording it: its attempts ran out on hosts that stopped or died (see the queue's logs); retry the run to export the interval again", r.Status, r.Generation)
	now := time.Now().UTC()
	_, err := h.db.TransitionRunOf(ctx, r.ID, r.Generation, []storage.RunStatus{r.Status}, storage.StatusFailed, func(x *storage.Run) {
		x.FinishedAt = &now
		x.LatestError = msg
	})
	if errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound) {
		return nil // it moved meanwhile (finished, re-requested) or another host reaped it
	}
	if err != nil {
		return fmt.Errorf("reaper: fail run %s: %w", r.ID, err)
	}
	log.Error("reaper: run failed: no queue job will finish it", "err", msg)
	h.runLog(ctx, r, "host", slog.LevelError, "failed: "+msg)
	if r.BackfillID != nil {
		h.backfillRunFinished(ctx, *r.BackfillID)
	}
	return nil
}

// handBackDelay is how long a handed-back run's job waits before any host may take it:
// long enough for the draining host's queue client to stop fetching.
const handBackDelay = time.Second

// handBack returns a run whose attempt the host's shutdown stopped: the run goes back to
// Starting (waiting for a worker) with an error saying so, and its job is snoozed, not
// failed, so another host takes it within a second or two and the attempt does not count
// against its retries.
func (h *Host) handBack(ctx context.Context, run storage.Run, gen int) error {
	msg := fmt.Sprintf("handed back: host %s shut down before attempt %d finished; its job is back in the queue for the next host that takes it", h.cfg.HostID, run.Attempt)
	if _, err := h.db.TransitionRunOf(ctx, run.ID, gen, []storage.RunStatus{storage.StatusRunning}, storage.StatusStarting,
		func(r *storage.Run) { r.LatestError = msg }); err != nil && !errors.Is(err, storage.ErrConflict) {
		// The run stays Running in its generation: the job's retry takes it from there.
		return fmt.Errorf("hand back run %s: %w", run.ID, err)
	}
	h.log.Warn("run handed back on shutdown", "run_id", run.ID, "attempt", run.Attempt)
	h.runLog(ctx, run, "host", slog.LevelWarn, msg)
	return queue.Snooze(handBackDelay)
}
