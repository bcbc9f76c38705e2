package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/host/queue"
	"github.com/sluicehq/sluice/storage"
)

// The missing-data check (docs/runs.md): a periodic job compares, for every Completed run
// whose interval ended within MissingDataWindow, the source's count of the interval now
// with the run's records_completed. Rows that arrived after the run (late data, by
// insertion time) show as records_missing on the run, in its log, in the host log and in
// sluice_missing_records_total.

// missingDataArgs is the check's River job: one per slot of MissingDataInterval, unique
// across hosts, so that one host of several runs each check.
type missingDataArgs struct {
	Slot int64 `json:"slot" river:"unique"`
}

func (missingDataArgs) Kind() string { return "missing_data_check" }

// MissingRecordsMetrics is implemented by metrics that count missing records (api.Metrics).
type MissingRecordsMetrics interface {
	MissingRecords(destination string, n int64)
}

var _ MissingRecordsMetrics = (*api.Metrics)(nil)

func (h *Host) missingDataKind() queue.JobKind {
	return queue.NewKind(queue.KindConfig{Queue: "missing_data", MaxAttempts: 2, Timeout: max(h.cfg.MissingDataInterval, time.Minute)},
		func(ctx context.Context, _ missingDataArgs) error {
			_, err := h.CheckMissingData(ctx)
			return err
		})
}

// enqueueMissingDataCheck inserts the check of the current slot (a no-op when another
// host inserted it already).
func (h *Host) enqueueMissingDataCheck(ctx context.Context) error {
	slot := h.cfg.Clock.Now().UTC().Truncate(h.cfg.MissingDataInterval).Unix()
	_, err := h.q.Insert(ctx, missingDataArgs{Slot: slot}, queue.InsertOptions{})
	return err
}

// CheckMissingData runs one missing-data check over every export and returns the number
// of runs found with missing records that were not reported before.
func (h *Host) CheckMissingData(ctx context.Context) (int, error) {
	exports, err := h.db.ListExports(ctx, storage.ExportFilter{})
	if err != nil {
		return 0, fmt.Errorf("missing-data check: %w", err)
	}
	now := h.cfg.Clock.Now().UTC()
	found := 0
	var errs []error
	completed := []storage.RunStatus{storage.StatusCompleted}
	for _, e := range exports {
		// A run is counted twice at most: by the first check after it completed (runs not
		// counted yet), and by the check in whose period its interval end leaves the
		// window (the last word on late data). Counting every run of the window at every
		// check would cost exports x intervals-per-window counts an hour.
		first, err := h.db.ListRuns(ctx, e.ID, storage.RunFilter{Statuses: completed, DataUnchecked: true,
			After: now.Add(-h.cfg.MissingDataWindow), Before: now.Add(-h.cfg.SettleDelay), Limit: 100_000})
		if err != nil {
			errs = append(errs, fmt.Errorf("runs of %s: %w", e.ID, err))
			continue
		}
		last, err := h.db.ListRuns(ctx, e.ID, storage.RunFilter{Statuses: completed,
			After: now.Add(-h.cfg.MissingDataWindow - h.cfg.MissingDataInterval), Before: now.Add(-h.cfg.MissingDataWindow), Limit: 100_000})
		if err != nil {
			errs = append(errs, fmt.Errorf("runs of %s: %w", e.ID, err))
			continue
		}
		for _, r := range append(first, last...) {
			n, err := h.checkRun(ctx, e, r, now)
			if ctx.Err() != nil {
				return found, ctx.Err()
			}
			if err != nil {
				h.log.Warn("missing-data check of a run failed", "run_id", r.ID, "export_id", e.ID, "err", err)
				continue
			}
			if n {
				found++
			}
		}
	}
	return found, errors.Join(errs...)
}

// checkRun counts one run's interval and records the outcome; newly reports whether it
// found missing records not reported before (or more of them).
func (h *Host) checkRun(ctx context.Context, e storage.BatchExport, r storage.Run, now time.Time) (newly bool, err error) {
	q, err := queryFor(r, e)
	if err != nil {
		return false, err
	}
	n, timedOut, err := h.count(ctx, q)
	if errors.Is(err, errNoCounter) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if timedOut {
		return false, fmt.Errorf("the count took longer than %s", h.cfg.CountTimeout)
	}
	missing := max(n-r.RecordsCompleted, 0)
	if err := h.db.SetRunDataCheck(ctx, r.ID, r.Generation, missing, now); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return false, nil // re-run meanwhile: the new generation counts for itself
		}
		return false, err
	}
	prev := int64(0)
	if r.RecordsMissing != nil {
		prev = *r.RecordsMissing
	}
	if missing <= prev {
		return false, nil
	}
	h.log.Warn("missing data: the source holds records the run did not export (late data)", "run_id", r.ID, "export_id", e.ID,
		"interval_start", r.IntervalStart, "interval_end", r.IntervalEnd, "records_completed", r.RecordsCompleted, "source_count", n, "records_missing", missing)
	h.runLog(ctx, r, "host", slog.LevelWarn, fmt.Sprintf("missing data: the source now holds %d records for [%s, %s), %d more than the run exported (late data); retry the run to export them",
		n, r.IntervalStart.Format(time.RFC3339), r.IntervalEnd.Format(time.RFC3339), missing))
	if m, ok := h.metrics.(MissingRecordsMetrics); ok {
		m.MissingRecords(e.DestinationType, missing-prev)
	}
	return true, nil
}
