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
}

type backfillView struct {
	ID         string       `json:"id"`
	ExportID   string       `json:"export_id"`
	StartAt    time.Time    `json:"start_at"`
	EndAt      time.Time    `json:"end_at"`
	Status     string       `json:"status"`
	CreatedAt  time.Time    `json:"created_at"`
	UpdatedAt  time.Time    `json:"updated_at"`
	FinishedAt *time.Time   `json:"finished_at"`
	Progress   progressView `json:"progress"`
}

func (s *Server) backfillView(ctx context.Context, b storage.Backfill) (backfillView, error) {
	p, err := s.db.GetBackfillProgress(ctx, b.ID)
	if err != nil {
		return backfillView{}, err
	}
	return backfillView{
		ID: b.ID, ExportID: b.ExportID, StartAt: b.StartAt, EndAt: b.EndAt, Status: string(b.Status),
		CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt, FinishedAt: b.FinishedAt,
		Progress: progressView{TotalRuns: p.TotalRuns, CreatedRuns: p.CreatedRuns, FinishedRuns: p.FinishedRuns,
			CompletedRuns: p.CompletedRuns, FailedRuns: p.FailedRuns, Records: p.RecordsCompleted,
			Bytes: p.BytesExported, Fraction: p.Fraction},
	}, nil
}

// createBackfill validates {start_at, end_at}: both required with a zone, start < end,
// end not in the future (rejected, as PostHog does: a future interval has no data yet),
// and at most MaxBackfillRuns intervals. The Controller clips to the export's end_at.
func (s *Server) createBackfill(c echo.Context) error {
	e, err := s.loadExport(c)
	if err != nil {
		return err
	}
	var body struct {
		StartAt json.RawMessage `json:"start_at"`
		EndAt   json.RawMessage `json:"end_at"`
	}
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	var errs []FieldError
	start := timeField("start_at", body.StartAt, &errs)
	end := timeField("end_at", body.EndAt, &errs)
	if body.StartAt == nil || start.null {
		errs = append(errs, fieldErr("start_at", "required"))
	}
	if body.EndAt == nil || end.null {
		errs = append(errs, fieldErr("end_at", "required"))
	}
	now := s.cfg.Now().UTC()
	if err := badFields(errs); err != nil {
		return err
	}
	if !start.t.Before(end.t) {
		errs = append(errs, fieldErr("end_at", "must be after start_at"))
	}
	if end.t.After(now) {
		errs = append(errs, fieldErr("end_at", fmt.Sprintf("must not be in the future (now is %s)", now.Format(time.RFC3339))))
	}
	if period, ok := intervals[e.Interval]; ok && start.t.Before(end.t) {
		if n := (end.t.Sub(start.t) + period - 1) / period; n > time.Duration(s.cfg.MaxBackfillRuns) {
			errs = append(errs, fieldErr("start_at", fmt.Sprintf("the range covers %d intervals of %q; at most %d per backfill", n, e.Interval, s.cfg.MaxBackfillRuns)))
		}
	}
	if err := badFields(errs); err != nil {
		return err
	}
	ctx := c.Request().Context()
	b, err := s.ctl.RequestBackfill(ctx, e.ID, start.t, end.t)
	if err != nil {
		return err
	}
	v, err := s.backfillView(ctx, *b)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, v)
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
