package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/storage"
)

type runView struct {
	ID               string    `json:"id"`
	ExportID         string    `json:"export_id"`
	Status           string    `json:"status"`
	IntervalStart    time.Time `json:"interval_start"`
	IntervalEnd      time.Time `json:"interval_end"`
	Attempt          int       `json:"attempt"`
	Generation       int       `json:"generation"`
	RecordsCompleted int64     `json:"records_completed"`
	// RecordsTotalCount is what the source held for the interval when the current
	// attempt started; null when not counted (the count hit the cap, or failed).
	RecordsTotalCount *int64 `json:"records_total_count"`
	// RecordsMissing is what the missing-data check found in the source beyond
	// records_completed as of DataCheckedAt (late data); null when not checked.
	RecordsMissing *int64     `json:"records_missing"`
	DataCheckedAt  *time.Time `json:"data_checked_at"`
	BytesExported  int64      `json:"bytes_exported"`
	LatestError    string     `json:"latest_error"`
	// PluginVersion and PluginSHA256 are the module the latest attempt ran with ("" before
	// the first attempt, and for runs older than storage migration 7).
	PluginVersion string     `json:"plugin_version"`
	PluginSHA256  string     `json:"plugin_sha256"`
	BackfillID    *string    `json:"backfill_id"`
	CreatedAt     time.Time  `json:"created_at"`
	StartedAt     *time.Time `json:"started_at"`
	FinishedAt    *time.Time `json:"finished_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

func newRunView(r storage.Run) runView {
	return runView{ID: r.ID, ExportID: r.ExportID, Status: string(r.Status), IntervalStart: r.IntervalStart,
		IntervalEnd: r.IntervalEnd, Attempt: r.Attempt, Generation: r.Generation, RecordsCompleted: r.RecordsCompleted,
		RecordsTotalCount: r.RecordsTotalCount, RecordsMissing: r.RecordsMissing, DataCheckedAt: r.DataCheckedAt, BytesExported: r.BytesExported, LatestError: r.LatestError,
		PluginVersion: r.PluginVersion, PluginSHA256: r.PluginSHA256, BackfillID: r.BackfillID,
		CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, UpdatedAt: r.UpdatedAt}
}

// listRuns: newest interval first; filters status (repeated or comma list), after and
// before (on interval_end: after < end <= before); limit (1-500, default 50) with
// either a cursor (next_cursor of the previous page) or an offset.
func (s *Server) listRuns(c echo.Context) error {
	e, err := s.loadExport(c)
	if err != nil {
		return err
	}
	var errs []FieldError
	f := storage.RunFilter{}
	for _, st := range queryList(c, "status") {
		rs := storage.RunStatus(st)
		if !rs.Valid() {
			var names []string
			for _, v := range storage.AllStatuses {
				names = append(names, string(v))
			}
			errs = append(errs, fieldErr("status", "unknown status "+quote(st)+": want one of "+strings.Join(names, ", ")))
			continue
		}
		f.Statuses = append(f.Statuses, rs)
	}
	f.After = queryTime(c, "after", &errs)
	f.Before = queryTime(c, "before", &errs)
	if !f.After.IsZero() && !f.Before.IsZero() && !f.After.Before(f.Before) {
		errs = append(errs, fieldErr("before", "must be after after"))
	}
	limit := queryInt(c, "limit", 50, 1, 500, &errs)
	offset := queryInt(c, "offset", 0, 0, 1<<30, &errs)
	if cur := c.QueryParam("cursor"); cur != "" {
		if c.QueryParam("offset") != "" {
			errs = append(errs, fieldErr("offset", "use either cursor or offset, not both"))
		}
		txt, ok := decodeCursor(cur)
		t, perr := time.Parse(time.RFC3339Nano, txt)
		if !ok || perr != nil {
			errs = append(errs, fieldErr("cursor", "invalid cursor: pass next_cursor from the previous page as is"))
		} else {
			// Runs are unique per interval end: the next page ends strictly before.
			t = t.Add(-time.Microsecond)
			if f.Before.IsZero() || t.Before(f.Before) {
				f.Before = t
			}
		}
	}
	if err := badFields(errs); err != nil {
		return err
	}
	f.Limit, f.Offset = limit+1, offset
	runs, err := s.db.ListRuns(c.Request().Context(), e.ID, f)
	if err != nil {
		return err
	}
	next := ""
	if len(runs) > limit {
		runs = runs[:limit]
		next = encodeCursor(runs[limit-1].IntervalEnd.UTC().Format(time.RFC3339Nano))
	}
	out := make([]runView, len(runs))
	for i, r := range runs {
		out[i] = newRunView(r)
	}
	return c.JSON(http.StatusOK, list(out, next))
}

// loadRun reads the :run_id of the export in the path (404 if it is another export's).
func (s *Server) loadRun(c echo.Context) (storage.Run, error) {
	e, err := s.loadExport(c)
	if err != nil {
		return storage.Run{}, err
	}
	id, err := pathID(c, "run_id", "run")
	if err != nil {
		return storage.Run{}, err
	}
	r, err := s.db.GetRun(c.Request().Context(), id)
	if err != nil {
		return storage.Run{}, notFoundAs(err, "run")
	}
	if r.ExportID != e.ID {
		return storage.Run{}, notFound("run")
	}
	return r, nil
}

func (s *Server) getRun(c echo.Context) error {
	r, err := s.loadRun(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newRunView(r))
}

func (s *Server) retryRun(c echo.Context) error {
	r, err := s.loadRun(c)
	if err != nil {
		return err
	}
	if r.Status == storage.StatusStarting || r.Status == storage.StatusRunning {
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "run is " + string(r.Status) + "; retry it once it has finished"}
	}
	nr, err := s.ctl.RetryRun(c.Request().Context(), r.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, newRunView(*nr))
}

func (s *Server) cancelRun(c echo.Context) error {
	r, err := s.loadRun(c)
	if err != nil {
		return err
	}
	if r.Status.Terminal() {
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "run is already " + string(r.Status)}
	}
	ctx := c.Request().Context()
	if err := s.ctl.CancelRun(ctx, r.ID); err != nil {
		return err
	}
	r, err = s.db.GetRun(ctx, r.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, newRunView(r))
}

type logView struct {
	ID      int64           `json:"id"`
	Time    time.Time       `json:"time"`
	Level   string          `json:"level"`
	Source  string          `json:"source"`
	Message string          `json:"message"`
	RunID   *string         `json:"run_id"`
	Attrs   json.RawMessage `json:"attrs"`
}

var levelNames = map[string]storage.LogLevel{
	"debug": storage.LevelDebug, "info": storage.LevelInfo, "warn": storage.LevelWarn,
	"warning": storage.LevelWarn, "error": storage.LevelError,
}

func (s *Server) exportLogs(c echo.Context) error {
	e, err := s.loadExport(c)
	if err != nil {
		return err
	}
	return s.logs(c, storage.LogFilter{ExportID: e.ID})
}

func (s *Server) runLogs(c echo.Context) error {
	r, err := s.loadRun(c)
	if err != nil {
		return err
	}
	return s.logs(c, storage.LogFilter{ExportID: r.ExportID, RunID: r.ID})
}

// logs: newest first; level (minimum: debug, info, warn, error), search (substring,
// case-insensitive), after/before (on the line's time), limit (1-1000, default 100),
// cursor (next_cursor of the previous page).
// The cursor is the (time, id) of the last line (storage.LogCursor): a line's id need not
// follow its time.
func (s *Server) logs(c echo.Context, f storage.LogFilter) error {
	var errs []FieldError
	if lv := c.QueryParam("level"); lv != "" {
		l, ok := levelNames[strings.ToLower(lv)]
		if !ok {
			errs = append(errs, fieldErr("level", "unknown level "+quote(lv)+": want debug, info, warn or error"))
		}
		f.MinLevel = l
	}
	f.Search = c.QueryParam("search")
	if len(f.Search) > 500 {
		errs = append(errs, fieldErr("search", "must be at most 500 characters"))
	}
	f.After = queryTime(c, "after", &errs)
	f.Before = queryTime(c, "before", &errs)
	limit := queryInt(c, "limit", 100, 1, 1000, &errs)
	if cur := c.QueryParam("cursor"); cur != "" {
		var ok bool
		if f.Cursor, ok = decodeLogCursor(cur); !ok {
			errs = append(errs, fieldErr("cursor", "invalid cursor: pass next_cursor from the previous page as is"))
		}
	}
	if err := badFields(errs); err != nil {
		return err
	}
	f.Limit = limit + 1
	lines, err := s.db.QueryLogs(c.Request().Context(), f)
	if err != nil {
		return err
	}
	next := ""
	if len(lines) > limit {
		lines = lines[:limit]
		last := lines[limit-1]
		next = encodeCursor(last.Time.UTC().Format(time.RFC3339Nano) + "|" + strconv.FormatInt(last.ID, 10))
	}
	out := make([]logView, len(lines))
	for i, l := range lines {
		attrs := json.RawMessage(l.Attrs)
		if len(attrs) == 0 || !json.Valid(attrs) {
			attrs = json.RawMessage("{}")
		}
		out[i] = logView{ID: l.ID, Time: l.Time, Level: string(l.Level), Source: l.Source, Message: l.Message, RunID: l.RunID, Attrs: attrs}
	}
	return c.JSON(http.StatusOK, list(out, next))
}

// decodeLogCursor reads a logs next_cursor: "<RFC 3339 time>|<id>".
func decodeLogCursor(cur string) (*storage.LogCursor, bool) {
	txt, ok := decodeCursor(cur)
	if !ok {
		return nil, false
	}
	ts, idText, ok := strings.Cut(txt, "|")
	if !ok {
		return nil, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	id, ierr := strconv.ParseInt(idText, 10, 64)
	if err != nil || ierr != nil || id <= 0 {
		return nil, false
	}
	return &storage.LogCursor{Time: t.UTC(), ID: id}, true
}
