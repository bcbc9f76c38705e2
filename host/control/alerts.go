package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/storage"
)

// The hooks of host/alert (docs/alerts.md). A run's alert is enqueued right after its
// Failed status is stored, before its job ends: a host dying in between leaves the job
// running, River's rescuer hands it to another host, and runJob finds the run Failed and
// enqueues the alert again (alertAgain), unique per run generation.

func (h *Host) alertRunFailed(ctx context.Context, e storage.BatchExport, run storage.Run, msg string) {
	if err := h.alerts.RunFailed(ctx, e, run, msg); err != nil {
		h.log.Error("cannot enqueue the run's failure alert", "run_id", run.ID, "export_id", e.ID, "err", err)
	}
}

func (h *Host) alertPaused(ctx context.Context, e storage.BatchExport, run storage.Run, msg string, failed, considered int) {
	if err := h.alerts.ExportPaused(ctx, e, run, msg, failed, considered); err != nil {
		h.log.Error("cannot enqueue the auto-pause alert", "export_id", e.ID, "err", err)
	}
}

// alertAgain enqueues the alert of a Failed run again (nothing when it exists); an error
// makes the queue try the job again.
func (h *Host) alertAgain(ctx context.Context, run storage.Run) error {
	if run.Status != storage.StatusFailed {
		return nil
	}
	e, err := h.db.GetExportIncludingDeleted(ctx, run.ExportID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil // nobody to tell
	}
	if err != nil {
		return fmt.Errorf("alert of failed run %s: %w", run.ID, err)
	}
	return h.alerts.RunFailed(ctx, e, run, run.LatestError)
}
