package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/host/schedule"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/storage"
)

// errNoCounter: the source cannot count (every source of this host can; a test stub may not).
var errNoCounter = errors.New("the event source cannot count records")

// backfillIntervals lists the intervals a backfill request covers: those that start at
// or after req.Start (with SincePause: whose scheduled run, at their end plus the settle
// delay, came after req.Start) and end by req.End, clipped to the export's end_at and to
// now less the settle delay (intervals ended within it are the schedule's: their late
// inserts have not landed yet, docs/runs.md).
func (h *Host) backfillIntervals(e storage.BatchExport, req api.BackfillRequest) ([]storage.Interval, time.Time, error) {
	spec, err := specFor(e)
	if err != nil {
		return nil, time.Time{}, err
	}
	start, end := req.Start, req.End
	if settled := h.cfg.Clock.Now().Add(-h.cfg.SettleDelay); end.After(settled) {
		end = settled
	}
	after := start.Add(spec.Period() - time.Nanosecond)
	if req.SincePause {
		after = start.Add(-h.cfg.SettleDelay)
	}
	var intervals []storage.Interval
	for _, t := range spec.EndsBetween(after, end) {
		// An interval belongs to the backfill when it lies within [start, end].
		if s, t := spec.IntervalFor(t); req.SincePause || !s.Before(start) {
			intervals = append(intervals, storage.Interval{Start: s, End: t})
		}
	}
	return intervals, end, nil
}

// RequestBackfill gives a backfill one run per interval of backfillIntervals and
// enqueues them all at once on the backfill queue, whose BackfillParallelism workers per
// host run them oldest first. An interval that already ran is re-run as part of this
// backfill (a new generation: the destination writes it again); one still waiting or
// running for something else is left to finish and said so in the export's log. The
// records count runs in the background (countBackfill): creating a backfill never waits
// for the source.
func (h *Host) RequestBackfill(ctx context.Context, exportID string, req api.BackfillRequest) (*storage.Backfill, error) {
	e, err := h.db.GetExport(ctx, exportID)
	if err != nil {
		return nil, err
	}
	intervals, end, err := h.backfillIntervals(e, req)
	if err != nil {
		return nil, err
	}
	start := req.Start
	adjusted := start.UTC()
	if len(intervals) > 0 {
		adjusted = intervals[0].Start.UTC()
	}
	if !start.Before(end) {
		end = start.Add(time.Nanosecond) // nothing settled yet: an empty backfill, completed below
	}
	status := storage.RecordsCountPending
	var zero *int64
	if len(intervals) == 0 {
		status, zero = storage.RecordsCounted, new(int64)
	}
	b, err := h.db.CreateBackfill(ctx, storage.Backfill{ID: uuid.NewString(), ExportID: exportID, StartAt: start.UTC(), EndAt: end.UTC(),
		Status: storage.StatusRunning, TotalRuns: len(intervals), Earliest: req.Earliest, AdjustedStartAt: &adjusted,
		TotalRecordsCount: zero, TotalRecordsStatus: status})
	if err != nil {
		return nil, err
	}
	got, err := h.db.AddBackfillRuns(ctx, exportID, b.ID, intervals)
	if err != nil {
		if _, uerr := h.db.UpdateBackfillStatus(context.WithoutCancel(ctx), b.ID, nil, storage.StatusFailed); uerr != nil {
			h.log.Error("cannot record backfill status", "backfill_id", b.ID, "err", uerr)
		}
		return nil, fmt.Errorf("backfill runs: %w", err)
	}
	what := ""
	if req.Earliest {
		what = " (from the earliest event)"
	} else if req.SincePause {
		what = " (the intervals missed since the export was paused)"
	}
	h.exportLog(ctx, exportID, slog.LevelInfo, fmt.Sprintf("backfill %s requested%s: %d runs (%d new, %d re-run) from %s to %s",
		b.ID, what, len(got.Runs), got.Created, got.Rerun, adjusted.Format(time.RFC3339), end.Format(time.RFC3339)))
	for i, r := range got.InFlight {
		if i == 10 {
			h.exportLog(ctx, exportID, slog.LevelWarn, fmt.Sprintf("backfill %s: %d more intervals in flight are not re-run", b.ID, len(got.InFlight)-i))
			break
		}
		h.exportLog(ctx, exportID, slog.LevelWarn, fmt.Sprintf("backfill %s: interval [%s, %s) is %s in run %s already; the backfill does not re-run it",
			b.ID, r.IntervalStart.Format(time.RFC3339), r.IntervalEnd.Format(time.RFC3339), r.Status, r.ID))
	}
	if len(got.Runs) == 0 {
		b, err = h.db.UpdateBackfillStatus(ctx, b.ID, []storage.RunStatus{storage.StatusRunning}, storage.StatusCompleted)
		return &b, err
	}
	h.countBackfillAsync(b.ID, e, intervals[0].Start, intervals[len(intervals)-1].End)
	if err := h.enqueueRuns(ctx, got.Runs); err != nil {
		// The runs wait in Starting: the next start of any host enqueues them.
		return nil, err
	}
	b, err = h.db.GetBackfill(ctx, b.ID)
	return &b, err
}

// EstimateBackfill implements api.Controller.
func (h *Host) EstimateBackfill(ctx context.Context, exportID string, req api.BackfillRequest) (api.BackfillEstimate, error) {
	e, err := h.db.GetExport(ctx, exportID)
	if err != nil {
		return api.BackfillEstimate{}, err
	}
	intervals, end, err := h.backfillIntervals(e, req)
	if err != nil {
		return api.BackfillEstimate{}, err
	}
	est := api.BackfillEstimate{AdjustedStart: req.Start.UTC(), End: end.UTC(), Runs: len(intervals)}
	if len(intervals) == 0 {
		est.Records = new(int64)
		return est, nil
	}
	est.AdjustedStart, est.End = intervals[0].Start.UTC(), intervals[len(intervals)-1].End.UTC()
	n, timedOut, err := h.countRecords(ctx, e, est.AdjustedStart, est.End)
	switch {
	case err != nil:
		return est, fmt.Errorf("counting the records in range: %w", err)
	case timedOut:
		est.TimedOut = true
	default:
		est.Records = &n
	}
	return est, nil
}

// EarliestStart implements api.Controller.
func (h *Host) EarliestStart(ctx context.Context, exportID string) (time.Time, bool, error) {
	e, err := h.db.GetExport(ctx, exportID)
	if err != nil {
		return time.Time{}, false, err
	}
	c, ok := h.src.(source.Counter)
	if !ok {
		return time.Time{}, false, errNoCounter
	}
	q, err := queryFor(storage.Run{}, e)
	if err != nil {
		return time.Time{}, false, err
	}
	cctx, cancel := context.WithTimeout(ctx, h.cfg.CountTimeout)
	defer cancel()
	t, ok, err := c.Earliest(cctx, q)
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			return time.Time{}, false, fmt.Errorf("finding the earliest event took longer than the count cap (%s): give start_at", h.cfg.CountTimeout)
		}
		return time.Time{}, false, fmt.Errorf("finding the earliest event: %w", err)
	}
	if !ok {
		return time.Time{}, false, nil
	}
	if e.StartAt != nil && t.Before(*e.StartAt) {
		t = *e.StartAt
	}
	spec, err := specFor(e)
	if err != nil {
		return time.Time{}, false, err
	}
	return alignDown(spec, t), true, nil
}

// alignDown is the start of the interval holding t (t itself when no interval holds it:
// past the export's end_at).
func alignDown(spec schedule.Spec, t time.Time) time.Time {
	// The interval holding t ends in (t, t + period]; two periods cover DST days.
	if ends := spec.EndsBetween(t, t.Add(2*spec.Period())); len(ends) > 0 {
		s, _ := spec.IntervalFor(ends[0])
		return s.UTC()
	}
	return t.UTC()
}

// countRecords counts the export's records in [start, end) under the count cap;
// timedOut when the cap cut it short.
func (h *Host) countRecords(ctx context.Context, e storage.BatchExport, start, end time.Time) (n int64, timedOut bool, err error) {
	q, err := queryFor(storage.Run{IntervalStart: start, IntervalEnd: end}, e)
	if err != nil {
		return 0, false, err
	}
	return h.count(ctx, q)
}

// count runs one count query under the cap.
func (h *Host) count(ctx context.Context, q source.Query) (n int64, timedOut bool, err error) {
	c, ok := h.src.(source.Counter)
	if !ok {
		return 0, false, errNoCounter
	}
	cctx, cancel := context.WithTimeout(ctx, h.cfg.CountTimeout)
	defer cancel()
	n, err = c.Count(cctx, q)
	if err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return 0, true, nil
	}
	return n, false, err
}

// countBackfillAsync counts a backfill's records in [start, end) in the background and
// stores the outcome. Stop cancels a count still running (the backfill stays pending;
// the next start counts it again, reconcileBackfills).
func (h *Host) countBackfillAsync(backfillID string, e storage.BatchExport, start, end time.Time) {
	h.counts.Add(1)
	go func() {
		defer h.counts.Done()
		ctx := h.countCtx
		n, timedOut, err := h.countRecords(ctx, e, start, end)
		if ctx.Err() != nil {
			return
		}
		var total *int64
		status := storage.RecordsCounted
		switch {
		case err != nil:
			status = storage.RecordsCountFailed
			h.log.Warn("cannot count a backfill's records", "backfill_id", backfillID, "export_id", e.ID, "err", err)
			h.exportLog(ctx, e.ID, slog.LevelWarn, fmt.Sprintf("backfill %s: cannot count its records: %v", backfillID, err))
		case timedOut:
			status = storage.RecordsCountTimedOut
			h.exportLog(ctx, e.ID, slog.LevelWarn, fmt.Sprintf("backfill %s: counting its records took longer than %s; total_records_count stays null", backfillID, h.cfg.CountTimeout))
		default:
			total = &n
		}
		if err := h.db.SetBackfillRecordsTotal(ctx, backfillID, total, status); err != nil {
			h.log.Error("cannot record a backfill's records count", "backfill_id", backfillID, "err", err)
		}
	}()
}
