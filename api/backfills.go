package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/storage"
)

type progressView struct {
	TotalRuns     int     `json:"total_runs"`
	CreatedRuns   int64   `json:"created_runs"`
	FinishedRuns  int64   `json:"finished_runs"`
	CompletedRuns int64   `json:"completed_runs"`
	FailedRuns    int64   `json:"failed_runs"`
	Records       int64   `json:"records"`
	Bytes         int64   `json:"bytes"`
	Fraction      float64 `json:"fraction"`
	// TotalRecords is the backfill's total_records_count (null until counted);
	// RecordsFraction is records / total_records, capped at 1 (null without a count).
	TotalRecords    *int64   `json:"total_records"`
	RecordsFraction *float64 `json:"records_fraction"`
}

type backfillView struct {
	ID       string `json:"id"`
	ExportID string `json:"export_id"`
	// StartAt is null for an "earliest" backfill (start_at omitted); AdjustedStartAt is
	// the start of its first interval.
	StartAt            *time.Time   `json:"start_at"`
	AdjustedStartAt    time.Time    `json:"adjusted_start_at"`
	EndAt              time.Time    `json:"end_at"`
	Status             string       `json:"status"`
	TotalRecordsCount  *int64       `json:"total_records_count"`
	TotalRecordsStatus string       `json:"total_records_status"`
	EstimateTimedOut   bool         `json:"estimate_timed_out"`
	CreatedAt          time.Time    `json:"created_at"`
	UpdatedAt          time.Time    `json:"updated_at"`
	FinishedAt         *time.Time   `json:"finished_at"`
	Progress           progressView `json:"progress"`
}

func (s *Server) backfillView(ctx context.Context, b storage.Backfill) (backfillView, error) {
	p, err := s.db.GetBackfillProgress(ctx, b.ID)
	if err != nil {
		return backfillView{}, err
	}
	v := backfillView{
		ID: b.ID, ExportID: b.ExportID, AdjustedStartAt: b.StartAt, EndAt: b.EndAt, Status: string(b.Status),
		TotalRecordsCount: b.TotalRecordsCount, TotalRecordsStatus: b.TotalRecordsStatus,
		EstimateTimedOut: b.TotalRecordsStatus == storage.RecordsCountTimedOut,
		CreatedAt:        b.CreatedAt, UpdatedAt: b.UpdatedAt, FinishedAt: b.FinishedAt,
		Progress: progressView{TotalRuns: p.TotalRuns, CreatedRuns: p.CreatedRuns, FinishedRuns: p.FinishedRuns,
			CompletedRuns: p.CompletedRuns, FailedRuns: p.FailedRuns, Records: p.RecordsCompleted,
			Bytes: p.BytesExported, Fraction: p.Fraction, TotalRecords: p.TotalRecords, RecordsFraction: p.RecordsFraction},
	}
	if !b.Earliest {
		start := b.StartAt
		v.StartAt = &start
	}
	if b.AdjustedStartAt != nil {
		v.AdjustedStartAt = *b.AdjustedStartAt
	}
	return v, nil
}

// estimateView answers a dry run.
type estimateView struct {
	DryRun            bool       `json:"dry_run"`
	StartAt           *time.Time `json:"start_at"`
	AdjustedStartAt   time.Time  `json:"adjusted_start_at"`
	EndAt             time.Time  `json:"end_at"`
	TotalRuns         int        `json:"total_runs"`
	TotalRecordsCount *int64     `json:"total_records_count"`
	EstimateTimedOut  bool       `json:"estimate_timed_out"`
}

// createBackfill validates {start_at, end_at}: end_at required with a zone, start_at
// with a zone or omitted (an "earliest" backfill: from the interval of the first event
// matching the export's filters), start < end, end not in the future (rejected, as
// PostHog does: a future interval has no data yet), and at most MaxBackfillRuns
// intervals. The Controller clips to the export's end_at. With ?dry_run=true it creates
// nothing and answers the estimate: runs and records in range (200).
func (s *Server) createBackfill(c echo.Context) error {
	e, err := s.loadExport(c)
	if err != nil {
		return err
	}
	var errs []FieldError
	dryRun := false
	switch v := c.QueryParam("dry_run"); v {
	case "", "false":
	case "true":
		dryRun = true
	default:
		errs = append(errs, fieldErr("dry_run", "must be true or false"))
	}
	var body struct {
		StartAt json.RawMessage `json:"start_at"`
		EndAt   json.RawMessage `json:"end_at"`
	}
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	start := timeField("start_at", body.StartAt, &errs)
	end := timeField("end_at", body.EndAt, &errs)
	earliest := body.StartAt == nil || start.null
	if body.EndAt == nil || end.null {
		errs = append(errs, fieldErr("end_at", "required"))
	}
	if err := badFields(errs); err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	if end.t.After(now) {
		return badFields([]FieldError{fieldErr("end_at", fmt.Sprintf("must not be in the future (now is %s)", now.Format(time.RFC3339)))})
	}
	ctx := c.Request().Context()
	if earliest {
		t, ok, err := s.ctl.EarliestStart(ctx, e.ID)
		if err != nil {
			return err
		}
		if !ok {
			return badFields([]FieldError{fieldErr("start_at", "omitted (from the earliest event), but the source holds no event matching the export's filters; give start_at")})
		}
		if !t.Before(end.t) {
			return badFields([]FieldError{fieldErr("end_at", fmt.Sprintf("must be after the earliest event's interval, which starts at %s", t.Format(time.RFC3339)))})
		}
		start.t = t
	}
	req := BackfillRequest{Start: start.t, End: end.t, Earliest: earliest}
	if err := s.checkBackfillRange(e, req, "start_at"); err != nil {
		return err
	}
	if dryRun {
		est, err := s.ctl.EstimateBackfill(ctx, e.ID, req)
		if err != nil {
			return err
		}
		v := estimateView{DryRun: true, AdjustedStartAt: est.AdjustedStart, EndAt: est.End, TotalRuns: est.Runs,
			TotalRecordsCount: est.Records, EstimateTimedOut: est.TimedOut}
		if !earliest {
			v.StartAt = &req.Start
		}
		return c.JSON(http.StatusOK, v)
	}
	b, err := s.ctl.RequestBackfill(ctx, e.ID, req)
	if err != nil {
		return err
	}
	v, err := s.backfillView(ctx, *b)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, v)
}

// checkBackfillRange: start before end, at most MaxBackfillRuns intervals (field names
// the field to blame for too many).
func (s *Server) checkBackfillRange(e storage.BatchExport, req BackfillRequest, field string) error {
	var errs []FieldError
	if !req.Start.Before(req.End) {
		errs = append(errs, fieldErr("end_at", "must be after start_at"))
	}
	if period, ok := intervals[e.Interval]; ok && req.Start.Before(req.End) {
		if n := (req.End.Sub(req.Start) + period - 1) / period; n > time.Duration(s.cfg.MaxBackfillRuns) {
			errs = append(errs, fieldErr(field, fmt.Sprintf("the range covers %d intervals of %q; at most %d per backfill", n, e.Interval, s.cfg.MaxBackfillRuns)))
		}
	}
	return badFields(errs)
}

// listBackfills: newest first; limit (1-500, default 100) and cursor (next_cursor of
// the previous page: the (created_at, id) of its last backfill).
func (s *Server) listBackfills(c echo.Context) error {
	e, err := s.loadExport(c)
	if err != nil {
		return err
	}
	var errs []FieldError
	page, limit := pageQuery(c, &errs)
	if err := badFields(errs); err != nil {
		return err
	}
	ctx := c.Request().Context()
	bs, err := s.db.ListBackfillsPage(ctx, e.ID, page)
	if err != nil {
		return err
	}
	bs, next := nextPage(bs, limit, func(b storage.Backfill) storage.Cursor {
		return storage.Cursor{CreatedAt: b.CreatedAt, ID: b.ID}
	})
	out := make([]backfillView, 0, len(bs))
	for _, b := range bs {
		v, err := s.backfillView(ctx, b)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	return c.JSON(http.StatusOK, list(out, next))
}

// loadBackfill reads the :backfill_id of the export in the path (404 if it belongs to
// another export).
func (s *Server) loadBackfill(c echo.Context) (storage.Backfill, error) {
	e, err := s.loadExport(c)
	if err != nil {
		return storage.Backfill{}, err
	}
	id, err := pathID(c, "backfill_id", "backfill")
	if err != nil {
		return storage.Backfill{}, err
	}
	b, err := s.db.GetBackfill(c.Request().Context(), id)
	if err != nil {
		return storage.Backfill{}, notFoundAs(err, "backfill")
	}
	if b.ExportID != e.ID {
		return storage.Backfill{}, notFound("backfill")
	}
	return b, nil
}

func (s *Server) getBackfill(c echo.Context) error {
	b, err := s.loadBackfill(c)
	if err != nil {
		return err
	}
	v, err := s.backfillView(c.Request().Context(), b)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) cancelBackfill(c echo.Context) error {
	b, err := s.loadBackfill(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if b.Status.Terminal() {
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "backfill is already " + string(b.Status)}
	}
	if err := s.ctl.CancelBackfill(ctx, b.ID); err != nil {
		return err
	}
	b, err = s.db.GetBackfill(ctx, b.ID)
	if err != nil {
		return err
	}
	v, err := s.backfillView(ctx, b)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, v)
}
