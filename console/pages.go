package console

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/schedule"
)

const apiBase = "/api/v1/batch_exports"

// ---- API shapes (the subset the console shows) ----

type exportView struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Destination struct {
		Type          string         `json:"type"`
		PluginVersion string         `json:"plugin_version"`
		PluginSHA256  string         `json:"plugin_sha256"`
		Config        map[string]any `json:"config"`
		SecretsSet    []string       `json:"secrets_set"`
	} `json:"destination"`
	Interval       string     `json:"interval"`
	Timezone       string     `json:"timezone"`
	IntervalOffset int64      `json:"interval_offset"`
	StartAt        *time.Time `json:"start_at"`
	EndAt          *time.Time `json:"end_at"`
	Paused         bool       `json:"paused"`
	Filters        struct {
		IncludeEvents []string        `json:"include_events"`
		ExcludeEvents []string        `json:"exclude_events"`
		Properties    json.RawMessage `json:"properties"`
	} `json:"filters"`
	TeamID    *int64    `json:"team_id"`
	CreatedAt time.Time `json:"created_at"`
}

type runView struct {
	ID               string     `json:"id"`
	Status           string     `json:"status"`
	IntervalStart    time.Time  `json:"interval_start"`
	IntervalEnd      time.Time  `json:"interval_end"`
	Attempt          int        `json:"attempt"`
	RecordsCompleted int64      `json:"records_completed"`
	BytesExported    int64      `json:"bytes_exported"`
	LatestError      string     `json:"latest_error"`
	PluginVersion    string     `json:"plugin_version"`
	PluginSHA256     string     `json:"plugin_sha256"`
	BackfillID       *string    `json:"backfill_id"`
	StartedAt        *time.Time `json:"started_at"`
	FinishedAt       *time.Time `json:"finished_at"`
}

// Active reports whether the run may still change.
func (r runView) Active() bool { return r.Status == "Starting" || r.Status == "Running" }

// Retryable: the API retries finished and FailedRetryable runs.
func (r runView) Retryable() bool { return !r.Active() }

type backfillView struct {
	ID         string     `json:"id"`
	StartAt    time.Time  `json:"adjusted_start_at"` // the first interval's start (start_at is null for an earliest backfill)
	EndAt      time.Time  `json:"end_at"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Progress   struct {
		TotalRuns     int     `json:"total_runs"`
		FinishedRuns  int64   `json:"finished_runs"`
		CompletedRuns int64   `json:"completed_runs"`
		FailedRuns    int64   `json:"failed_runs"`
		Records       int64   `json:"records"`
		Bytes         int64   `json:"bytes"`
		Fraction      float64 `json:"fraction"`
	} `json:"progress"`
}

func (b backfillView) Active() bool { return b.FinishedAt == nil }

type pluginView struct {
	Name         string       `json:"name"`
	Version      string       `json:"version"`
	ABIVersion   string       `json:"abi_version"`
	SHA256       string       `json:"sha256"`
	Capabilities []string     `json:"capabilities"`
	Description  string       `json:"description"`
	CreatedAt    time.Time    `json:"created_at"`
	Manifest     abi.Manifest `json:"manifest"`
	Versions     []struct {
		Version string `json:"version"`
		SHA256  string `json:"sha256"`
		Exports int64  `json:"exports"`
	} `json:"versions"`
}

type logLine struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Source  string    `json:"source"`
	Message string    `json:"message"`
}

type list[T any] struct {
	Results    []T     `json:"results"`
	NextCursor *string `json:"next_cursor"`
}

// messages shown after a redirect (?msg=...): fixed texts, never reflected input.
var flashes = map[string]string{
	"created":          "Export created.",
	"updated":          "Export saved.",
	"deleted":          "Export deleted.",
	"paused":           "Export paused.",
	"unpaused":         "Export unpaused: runs resume with the next interval.",
	"backfill":         "Historic export started.",
	"backfill_cancel":  "Historic export cancelled.",
	"retried":          "Run queued again.",
	"cancelled":        "Run cancelled.",
	"plugin_installed": "Plugin installed.",
	"signed_out":       "Signed out.",
}

func flash(r *http.Request) string { return flashes[r.URL.Query().Get("msg")] }

// ---- sign-in ----

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	if c.lookup(r) != nil {
		http.Redirect(w, r, "/exports", http.StatusSeeOther)
		return
	}
	c.renderSignin(w, r, http.StatusOK, nil)
}

func (c *Console) renderSignin(w http.ResponseWriter, r *http.Request, status int, e *apiError) {
	securityHeaders(w)
	pre := randomHex(32)
	setCookie(w, r, preCSRFCookie, pre, 600)
	c.render(w, status, "signin", page{Title: "Sign in", CSRF: pre, Flash: flash(r), Error: e,
		Data: map[string]string{"Next": safeNext(r.FormValue("next"))}}, nil)
}

// safeNext keeps only local paths.
func safeNext(n string) string {
	if !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.HasPrefix(n, "/\\") {
		return "/exports"
	}
	return n
}

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	ck, err := r.Cookie(preCSRFCookie)
	if err != nil || ck.Value == "" || r.PostFormValue(csrfField) != ck.Value || !sameOrigin(r) {
		c.renderSignin(w, r, http.StatusForbidden, &apiError{Status: 403, Message: "The form's CSRF token is missing or wrong: try again."})
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		c.renderSignin(w, r, http.StatusBadRequest, &apiError{Status: 400, Message: "Enter an API token.",
			Fields: fieldList("token", "required")})
		return
	}
	// read: any list; write: an empty create, refused (400) before anything changes
	// when the scope is there, 403 when not; admin: the token list.
	if e := c.call(r, token, http.MethodGet, apiBase, nil, "", nil); e != nil {
		msg := e.Message
		if e.Status == http.StatusUnauthorized {
			msg = "This token is unknown or revoked."
		}
		c.renderSignin(w, r, e.Status, &apiError{Status: e.Status, Message: msg, Fields: fieldList("token", msg)})
		return
	}
	canWrite := c.call(r, token, http.MethodPost, apiBase, strings.NewReader(""), "application/json", nil).Status != http.StatusForbidden
	canAdmin := c.call(r, token, http.MethodGet, "/api/v1/tokens", nil, "", nil) == nil
	s := c.newSession(token, canWrite, canAdmin)
	setCookie(w, r, SessionCookie, s.id, int(c.cfg.SessionTTL/time.Second))
	setCookie(w, r, preCSRFCookie, "", -1)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func fieldList(field, msg string) []struct {
	Field   string `json:"field"`
	Message string `json:"message"`
} {
	return []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	}{{field, msg}}
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, s *session) {
	c.dropSession(s)
	setCookie(w, r, SessionCookie, "", -1)
	http.Redirect(w, r, "/signin?msg=signed_out", http.StatusSeeOther)
}

// ---- exports ----

type exportRow struct {
	exportView
	LastRun *runView
	NextRun time.Time
}

func (c *Console) nextRun(e exportView) time.Time {
	if e.Paused {
		return time.Time{}
	}
	spec, err := schedule.Parse(e.Interval, e.Timezone, time.Duration(e.IntervalOffset)*time.Second, e.StartAt, e.EndAt)
	if err != nil {
		return time.Time{}
	}
	return spec.Next(c.cfg.Now())
}

func (c *Console) exportsPage(w http.ResponseWriter, r *http.Request, s *session) {
	var exports list[exportView]
	path := apiBase + "?limit=50"
	if cur := r.URL.Query().Get("cursor"); cur != "" {
		path += "&cursor=" + url.QueryEscape(cur)
	}
	if e := c.apiCall(r, s, http.MethodGet, path, nil, &exports); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	rows := make([]exportRow, 0, len(exports.Results))
	for _, ex := range exports.Results {
		row := exportRow{exportView: ex, NextRun: c.nextRun(ex)}
		var runs list[runView]
		if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+ex.ID+"/runs?limit=1", nil, &runs); e == nil && len(runs.Results) > 0 {
			row.LastRun = &runs.Results[0]
		}
		rows = append(rows, row)
	}
	next := ""
	if exports.NextCursor != nil {
		next = *exports.NextCursor
	}
	c.render(w, http.StatusOK, "exports", page{Title: "Exports", Nav: "exports", Flash: flash(r), Data: exportsData{Rows: rows, Next: next}}, s)
}

// exportsData is one page of the exports list (50 a page; Next is the API's cursor).
type exportsData struct {
	Rows []exportRow
	Next string
}

type exportPageData struct {
	Export    exportView
	NextRun   time.Time
	Runs      []runView
	Cursor    string // the page shown ("" = newest)
	Next      string // cursor of the older page
	Active    bool   // some run or backfill may still change: the page refreshes
	Chart     any
	Backfills []backfillView
	Backfill  backfillForm
	Test      *testResult
}

type backfillForm struct {
	StartAt, EndAt string
	Errors         map[string]string
}

type testResult struct {
	OK    bool           `json:"ok"`
	Steps []abi.TestStep `json:"steps"`
}

const runsPerPage = 20

func (c *Console) loadExportPage(r *http.Request, s *session, id string) (*exportPageData, *apiError) {
	d := &exportPageData{Cursor: r.URL.Query().Get("cursor")}
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+url.PathEscape(id), nil, &d.Export); e != nil {
		return nil, e
	}
	d.NextRun = c.nextRun(d.Export)
	if e := c.loadRuns(r, s, d); e != nil {
		return nil, e
	}
	var chartRuns list[runView]
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+d.Export.ID+"/runs?limit=30", nil, &chartRuns); e != nil {
		return nil, e
	}
	d.Chart = runsChart(chartRuns.Results)
	var bfs list[backfillView]
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+d.Export.ID+"/backfills", nil, &bfs); e != nil {
		return nil, e
	}
	d.Backfills = bfs.Results
	for _, b := range bfs.Results {
		d.Active = d.Active || b.Active()
	}
	return d, nil
}

func (c *Console) loadRuns(r *http.Request, s *session, d *exportPageData) *apiError {
	q := url.Values{"limit": {strconv.Itoa(runsPerPage)}}
	if d.Cursor != "" {
		q.Set("cursor", d.Cursor)
	}
	var runs list[runView]
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+d.Export.ID+"/runs?"+q.Encode(), nil, &runs); e != nil {
		return e
	}
	d.Runs = runs.Results
	if runs.NextCursor != nil {
		d.Next = *runs.NextCursor
	}
	for _, run := range runs.Results {
		d.Active = d.Active || run.Active()
	}
	return nil
}

func (c *Console) exportPage(w http.ResponseWriter, r *http.Request, s *session) {
	d, e := c.loadExportPage(r, s, r.PathValue("id"))
	if e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	c.render(w, http.StatusOK, "export", page{Title: d.Export.Name, Nav: "exports", Flash: flash(r), Data: d}, s)
}

// runsFragment is the runs table alone, polled by console.js while runs are active.
func (c *Console) runsFragment(w http.ResponseWriter, r *http.Request, s *session) {
	d := &exportPageData{Cursor: r.URL.Query().Get("cursor")}
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+url.PathEscape(r.PathValue("id")), nil, &d.Export); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	if e := c.loadRuns(r, s, d); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	// runs of a backfill appear while it is active: keep refreshing until it finishes
	var bfs list[backfillView]
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+d.Export.ID+"/backfills", nil, &bfs); e == nil {
		for _, b := range bfs.Results {
			d.Active = d.Active || b.Active()
		}
	}
	c.renderBlock(w, http.StatusOK, "export", "runs", page{Data: d}, s)
}

func (c *Console) exportAction(action string) handler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		id := r.PathValue("id")
		if e := c.apiCall(r, s, http.MethodPost, apiBase+"/"+url.PathEscape(id)+"/"+action, nil, nil); e != nil {
			c.apiFail(w, r, s, e)
			return
		}
		msg := "paused"
		if action == "unpause" {
			msg = "unpaused"
		}
		http.Redirect(w, r, "/exports/"+url.PathEscape(id)+"?msg="+msg, http.StatusSeeOther)
	}
}

func (c *Console) testExport(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	var res testResult
	if e := c.apiCall(r, s, http.MethodPost, apiBase+"/"+url.PathEscape(id)+"/test", nil, &res); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	d, e := c.loadExportPage(r, s, id)
	if e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	d.Test = &res
	c.render(w, http.StatusOK, "export", page{Title: d.Export.Name, Nav: "exports", Data: d}, s)
}

func (c *Console) deleteExportPage(w http.ResponseWriter, r *http.Request, s *session) {
	var ex exportView
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+url.PathEscape(r.PathValue("id")), nil, &ex); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	c.render(w, http.StatusOK, "delete", page{Title: "Delete " + ex.Name, Nav: "exports", Data: ex}, s)
}

func (c *Console) deleteExport(w http.ResponseWriter, r *http.Request, s *session) {
	if e := c.apiCall(r, s, http.MethodDelete, apiBase+"/"+url.PathEscape(r.PathValue("id")), nil, nil); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	http.Redirect(w, r, "/exports?msg=deleted", http.StatusSeeOther)
}

// ---- historic exports (backfills) ----

func (c *Console) createBackfill(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	var ex exportView
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+url.PathEscape(id), nil, &ex); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	loc := location(ex.Timezone)
	form := backfillForm{StartAt: r.PostFormValue("start_at"), EndAt: r.PostFormValue("end_at")}
	body := map[string]any{"start_at": localToAPI(form.StartAt, loc), "end_at": localToAPI(form.EndAt, loc)}
	e := c.apiCall(r, s, http.MethodPost, apiBase+"/"+ex.ID+"/backfills", body, nil)
	if e == nil {
		http.Redirect(w, r, "/exports/"+ex.ID+"?msg=backfill", http.StatusSeeOther)
		return
	}
	if e.Status != http.StatusBadRequest && e.Status != http.StatusConflict {
		c.apiFail(w, r, s, e)
		return
	}
	d, e2 := c.loadExportPage(r, s, id)
	if e2 != nil {
		c.apiFail(w, r, s, e2)
		return
	}
	form.Errors = e.fieldMap()
	d.Backfill = form
	c.render(w, e.Status, "export", page{Title: d.Export.Name, Nav: "exports", Error: e, Data: d}, s)
}

func (c *Console) cancelBackfill(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if e := c.apiCall(r, s, http.MethodPost, apiBase+"/"+url.PathEscape(id)+"/backfills/"+url.PathEscape(r.PathValue("bid"))+"/cancel", nil, nil); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	http.Redirect(w, r, "/exports/"+url.PathEscape(id)+"?msg=backfill_cancel", http.StatusSeeOther)
}

// location is the export's zone (UTC if unknown).
func location(tz string) *time.Location {
	if loc, err := time.LoadLocation(tz); err == nil && tz != "" {
		return loc
	}
	return time.UTC
}

// localToAPI turns a datetime-local value ("2026-11-20T09:00") read in loc into RFC 3339.
// Anything else is passed on as typed, for the API to accept (an RFC 3339 time) or
// refuse with its own message; empty is nil.
func localToAPI(v string, loc *time.Location) any {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t.Format(time.RFC3339)
		}
	}
	return v
}

// apiToLocal shows an API time as a datetime-local value in loc.
func apiToLocal(t *time.Time, loc *time.Location) string {
	if t == nil {
		return ""
	}
	return t.In(loc).Format("2006-01-02T15:04")
}

// ---- runs and logs ----

func (c *Console) runAction(action string) handler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		id, rid := r.PathValue("id"), r.PathValue("rid")
		if e := c.apiCall(r, s, http.MethodPost, apiBase+"/"+url.PathEscape(id)+"/runs/"+url.PathEscape(rid)+"/"+action, nil, nil); e != nil {
			c.apiFail(w, r, s, e)
			return
		}
		msg := "retried"
		if action == "cancel" {
			msg = "cancelled"
		}
		to := "/exports/" + url.PathEscape(id)
		if r.PostFormValue("back") == "run" {
			to += "/runs/" + url.PathEscape(rid)
		}
		http.Redirect(w, r, to+"?msg="+msg, http.StatusSeeOther)
	}
}

type runPageData struct {
	Export exportView
	Run    runView
	Logs   []logLine
	Cursor string
	Next   string
	Level  string
}

func (c *Console) runPage(w http.ResponseWriter, r *http.Request, s *session) {
	id, rid := url.PathEscape(r.PathValue("id")), url.PathEscape(r.PathValue("rid"))
	d := runPageData{Cursor: r.URL.Query().Get("cursor"), Level: r.URL.Query().Get("level")}
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+id, nil, &d.Export); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+id+"/runs/"+rid, nil, &d.Run); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	q := url.Values{"limit": {"100"}}
	if d.Cursor != "" {
		q.Set("cursor", d.Cursor)
	}
	if d.Level != "" {
		q.Set("level", d.Level)
	}
	var logs list[logLine]
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+id+"/runs/"+rid+"/logs?"+q.Encode(), nil, &logs); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	d.Logs = logs.Results
	if logs.NextCursor != nil {
		d.Next = *logs.NextCursor
	}
	c.render(w, http.StatusOK, "run", page{Title: "Run " + d.Run.IntervalStart.UTC().Format(time.RFC3339), Nav: "exports", Flash: flash(r), Data: d}, s)
}

// ---- plugins ----

type pluginsPageData struct {
	Plugins      []pluginView
	Capabilities []string
	Errors       map[string]string
}

func (c *Console) loadPlugins(r *http.Request, s *session) ([]pluginView, *apiError) {
	var pl list[pluginView]
	if e := c.apiCall(r, s, http.MethodGet, "/api/v1/plugins", nil, &pl); e != nil {
		return nil, e
	}
	return pl.Results, nil
}

// grantable are the capabilities an admin may grant (log, metrics and encode are
// always granted).
var grantable = []string{abi.CapObject, abi.CapBigQuery, abi.CapSnowflake, abi.CapHTTP}

func (c *Console) pluginsPage(w http.ResponseWriter, r *http.Request, s *session) {
	pl, e := c.loadPlugins(r, s)
	if e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	c.render(w, http.StatusOK, "plugins", page{Title: "Plugins", Nav: "plugins", Flash: flash(r),
		Data: pluginsPageData{Plugins: pl, Capabilities: grantable}}, s)
}

func (c *Console) installPlugin(w http.ResponseWriter, r *http.Request, s *session) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	file, hdr, err := r.FormFile("module")
	if err == nil {
		defer file.Close()
		part, _ := mw.CreateFormFile("module", hdr.Filename)
		if _, err := io.Copy(part, file); err != nil {
			c.fail(w, r, s, http.StatusBadRequest, "could not read the upload")
			return
		}
	}
	var caps []string
	if r.MultipartForm != nil {
		caps = r.MultipartForm.Value["capabilities"]
	}
	for _, cp := range caps {
		_ = mw.WriteField("capabilities", cp)
	}
	_ = mw.Close()
	e := c.call(r, s.token, http.MethodPost, "/api/v1/plugins", &buf, mw.FormDataContentType(), nil)
	if e == nil {
		http.Redirect(w, r, "/plugins?msg=plugin_installed", http.StatusSeeOther)
		return
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		c.apiFail(w, r, s, e)
		return
	}
	pl, e2 := c.loadPlugins(r, s)
	if e2 != nil {
		c.apiFail(w, r, s, e2)
		return
	}
	c.render(w, e.Status, "plugins", page{Title: "Plugins", Nav: "plugins", Error: e,
		Data: pluginsPageData{Plugins: pl, Capabilities: grantable, Errors: e.fieldMap()}}, s)
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
