package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/storage"
)

type runList struct {
	Results []struct {
		ID          string    `json:"id"`
		Status      string    `json:"status"`
		IntervalEnd time.Time `json:"interval_end"`
	} `json:"results"`
	NextCursor *string `json:"next_cursor"`
}

func (e *env) runs(path string) runList {
	e.t.Helper()
	var l runList
	if err := json.Unmarshal(e.must("GET", path, nil, http.StatusOK).Body, &l); err != nil {
		e.t.Fatal(err)
	}
	return l
}

// TestListRuns: newest interval first, status and time filters, limit with cursor or
// offset pages that cover every run exactly once.
func TestListRuns(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("runs")
	other := e.export("other")
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	statuses := []storage.RunStatus{storage.StatusCompleted, storage.StatusFailed, storage.StatusCompleted,
		storage.StatusRunning, storage.StatusFailedRetryable, storage.StatusCompleted, storage.StatusCancelled}
	var ends []time.Time // newest first
	for i, st := range statuses {
		end := base.Add(time.Duration(i+1) * time.Hour)
		e.run(id, end, st)
		ends = append([]time.Time{end}, ends...)
	}
	e.run(other, base.Add(time.Hour), storage.StatusCompleted)
	path := "/api/v1/batch_exports/" + id + "/runs"

	all := e.runs(path)
	if len(all.Results) != 7 || all.NextCursor != nil {
		t.Fatalf("all runs: %d, next %v", len(all.Results), all.NextCursor)
	}
	for i, r := range all.Results {
		if !r.IntervalEnd.Equal(ends[i]) {
			t.Errorf("run %d ends %v, want %v", i, r.IntervalEnd, ends[i])
		}
	}

	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return path + "?" + v.Encode()
	}
	ts := func(h int) string { return base.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }
	cases := []struct {
		name  string
		path  string
		hours []int // interval ends (hours after base), newest first
	}{
		{"status", q("status", "Completed"), []int{6, 3, 1}},
		{"status comma list", q("status", "Failed,Cancelled"), []int{7, 2}},
		{"status repeated", q("status", "Failed", "status", "Running"), []int{4, 2}},
		{"after", q("after", ts(5)), []int{7, 6}},
		{"before (inclusive)", q("before", ts(2)), []int{2, 1}},
		{"after and before", q("after", ts(2), "before", ts(4)), []int{4, 3}},
		{"time with offset", q("after", base.Add(5*time.Hour).In(time.FixedZone("", 2*3600)).Format(time.RFC3339)), []int{7, 6}},
		{"status and time", q("status", "Completed", "after", ts(1)), []int{6, 3}},
		{"limit", q("limit", "2"), []int{7, 6}},
		{"offset", q("limit", "2", "offset", "5"), []int{2, 1}},
		{"offset past the end", q("offset", "50"), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := e.runs(c.path)
			var got []int
			for _, r := range l.Results {
				got = append(got, int(r.IntervalEnd.Sub(base)/time.Hour))
			}
			if !slices.Equal(got, c.hours) {
				t.Errorf("hours %v, want %v", got, c.hours)
			}
		})
	}

	// Cursor pages: 3 + 3 + 1, no run twice, none missed; next_cursor null at the end.
	for _, filter := range []string{"", "&status=Completed,Failed,Running,FailedRetryable,Cancelled"} {
		seen := map[string]bool{}
		p := path + "?limit=3" + filter
		pages := 0
		for {
			l := e.runs(p)
			pages++
			for _, r := range l.Results {
				if seen[r.ID] {
					t.Errorf("run %s on two pages", r.ID)
				}
				seen[r.ID] = true
			}
			if l.NextCursor == nil {
				break
			}
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			p = path + "?limit=3" + filter + "&cursor=" + url.QueryEscape(*l.NextCursor)
		}
		if len(seen) != 7 || pages != 3 {
			t.Errorf("filter %q: %d runs over %d pages", filter, len(seen), pages)
		}
	}
	// A limit that divides the count exactly: the last full page says there is no more.
	if l := e.runs(path + "?limit=7"); l.NextCursor != nil {
		t.Errorf("limit=7 of 7 has next_cursor %q", *l.NextCursor)
	}

	bad := []struct {
		name, query string
		field       string
	}{
		{"unknown status", "status=Done", "status"},
		{"status case", "status=completed", "status"},
		{"limit zero", "limit=0", "limit"},
		{"limit too big", "limit=501", "limit"},
		{"limit not a number", "limit=ten", "limit"},
		{"negative offset", "offset=-1", "offset"},
		{"naive after", "after=2026-11-01T00:00:00", "after"},
		{"date before", "before=2026-11-01", "before"},
		{"after not before before", "after=" + url.QueryEscape(ts(3)) + "&before=" + url.QueryEscape(ts(3)), "before"},
		{"garbage cursor", "cursor=!!!", "cursor"},
		{"cursor not a time", "cursor=aGVsbG8", "cursor"},
		{"cursor and offset", "cursor=" + url.QueryEscape(*e.runs(path + "?limit=1").NextCursor) + "&offset=1", "offset"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("GET", path+"?"+c.query, nil)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if got := r.err(t).fieldNames(); !slices.Equal(got, []string{c.field}) {
				t.Errorf("fields %v, want [%s]", got, c.field)
			}
		})
	}

	// GET one: only under its own export.
	one := all.Results[0]
	m := e.must("GET", path+"/"+one.ID, nil, http.StatusOK).json(t)
	if m["id"] != one.ID || m["export_id"] != id || m["status"] != "Cancelled" || m["latest_error"] != "" {
		t.Errorf("run view %v", m)
	}
	e.must("GET", "/api/v1/batch_exports/"+other+"/runs/"+one.ID, nil, http.StatusNotFound)
}

func TestRetryAndCancelRun(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("retry")
	other := e.export("other")
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	path := "/api/v1/batch_exports/" + id + "/runs/"
	cases := []struct {
		status       storage.RunStatus
		retry        int // status of POST retry
		cancel       int // status of POST cancel
		retryCalled  bool
		cancelCalled bool
	}{
		{storage.StatusCompleted, 202, 409, true, false},
		{storage.StatusFailed, 202, 409, true, false},
		{storage.StatusCancelled, 202, 409, true, false},
		{storage.StatusFailedRetryable, 202, 202, true, true},
		{storage.StatusRunning, 409, 202, false, true},
		{storage.StatusStarting, 409, 202, false, true},
	}
	for i, c := range cases {
		t.Run(string(c.status), func(t *testing.T) {
			run := e.run(id, base.Add(time.Duration(i+1)*time.Hour), c.status)
			e.ctl.resetCalls()
			r := e.do("POST", path+run.ID+"/retry", nil)
			if r.Status != c.retry {
				t.Fatalf("retry: %d, want %d: %s", r.Status, c.retry, r.Body)
			}
			if got := e.ctl.called("RetryRun") == 1; got != c.retryCalled {
				t.Errorf("RetryRun called: %v", got)
			}
			if r.Status == 202 {
				m := r.json(t)
				if m["id"] != run.ID || m["status"] != "Starting" || m["attempt"] != float64(run.Attempt+1) {
					t.Errorf("retried run %v", m)
				}
			} else if r.err(t).Code != api.CodeConflict {
				t.Errorf("retry conflict code %s", r.Body)
			}
			// Cancel from the stored state (the fake's retry moved it to Starting).
			if r.Status == 202 {
				if _, err := e.db.TransitionRun(context.Background(), run.ID, nil, c.status, nil); err != nil {
					t.Fatal(err)
				}
			}
			r = e.do("POST", path+run.ID+"/cancel", nil)
			if r.Status != c.cancel {
				t.Fatalf("cancel: %d, want %d: %s", r.Status, c.cancel, r.Body)
			}
			if got := e.ctl.called("CancelRun") == 1; got != c.cancelCalled {
				t.Errorf("CancelRun called: %v", got)
			}
			if r.Status == 202 && r.json(t)["status"] != "Cancelled" {
				t.Errorf("cancelled run %s", r.Body)
			}
			// Another export's path: 404, nothing called.
			e.ctl.resetCalls()
			for _, op := range []string{"retry", "cancel"} {
				if r := e.do("POST", "/api/v1/batch_exports/"+other+"/runs/"+run.ID+"/"+op, nil); r.Status != 404 {
					t.Errorf("%s under another export: %d", op, r.Status)
				}
			}
			if len(e.ctl.calls) != 0 {
				t.Errorf("calls %v", e.ctl.calls)
			}
		})
	}
}

func TestLogs(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("logs")
	other := e.export("other")
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	run := e.run(id, base.Add(time.Hour), storage.StatusCompleted)
	ctx := context.Background()
	lines := []storage.LogEntry{
		{ExportID: id, Level: storage.LevelInfo, Source: "host", Message: "export created", Time: base},
		{ExportID: id, RunID: &run.ID, Level: storage.LevelDebug, Source: "host", Message: "querying events", Time: base.Add(time.Minute)},
		{ExportID: id, RunID: &run.ID, Level: storage.LevelInfo, Source: "plugin:s3test", Message: "Uploaded part 1", Time: base.Add(2 * time.Minute), Attrs: `{"part":1}`},
		{ExportID: id, RunID: &run.ID, Level: storage.LevelWarn, Source: "plugin:s3test", Message: "slow upload 100%_done", Time: base.Add(3 * time.Minute)},
		{ExportID: id, RunID: &run.ID, Level: storage.LevelError, Source: "host", Message: "run failed", Time: base.Add(4 * time.Minute)},
		{ExportID: other, Level: storage.LevelError, Source: "host", Message: "other export", Time: base.Add(5 * time.Minute)},
	}
	if err := e.db.AppendLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	exportPath := "/api/v1/batch_exports/" + id + "/logs"
	runPath := "/api/v1/batch_exports/" + id + "/runs/" + run.ID + "/logs"
	type logList struct {
		Results []struct {
			ID      int64           `json:"id"`
			Time    time.Time       `json:"time"`
			Level   string          `json:"level"`
			Source  string          `json:"source"`
			Message string          `json:"message"`
			RunID   *string         `json:"run_id"`
			Attrs   json.RawMessage `json:"attrs"`
		} `json:"results"`
		NextCursor *string `json:"next_cursor"`
	}
	get := func(path string) logList {
		t.Helper()
		var l logList
		if err := json.Unmarshal(e.must("GET", path, nil, http.StatusOK).Body, &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	msgs := func(l logList) []string {
		var out []string
		for _, x := range l.Results {
			out = append(out, x.Message)
		}
		return out
	}
	cases := []struct {
		name, path string
		want       []string
	}{
		{"export, newest first", exportPath, []string{"run failed", "slow upload 100%_done", "Uploaded part 1", "querying events", "export created"}},
		{"run only", runPath, []string{"run failed", "slow upload 100%_done", "Uploaded part 1", "querying events"}},
		{"level warn", exportPath + "?level=warn", []string{"run failed", "slow upload 100%_done"}},
		{"level WARNING", exportPath + "?level=WARNING", []string{"run failed", "slow upload 100%_done"}},
		{"level info on run", runPath + "?level=info", []string{"run failed", "slow upload 100%_done", "Uploaded part 1"}},
		{"search, case-insensitive", exportPath + "?search=UPLOAD", []string{"slow upload 100%_done", "Uploaded part 1"}},
		{"search with LIKE wildcards", exportPath + "?search=" + url.QueryEscape("0%_"), []string{"slow upload 100%_done"}},
		{"search % alone", exportPath + "?search=%25", []string{"slow upload 100%_done"}},
		{"after", exportPath + "?after=" + url.QueryEscape(base.Add(2*time.Minute).Format(time.RFC3339)), []string{"run failed", "slow upload 100%_done"}},
		{"before", exportPath + "?before=" + url.QueryEscape(base.Add(time.Minute).Format(time.RFC3339)), []string{"export created"}},
		{"limit", exportPath + "?limit=2", []string{"run failed", "slow upload 100%_done"}},
		{"nothing", exportPath + "?search=zzz", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := msgs(get(c.path)); !slices.Equal(got, c.want) {
				t.Errorf("messages %q, want %q", got, c.want)
			}
		})
	}
	// The plugin's lines carry its name and attributes.
	l := get(runPath + "?search=part")
	if len(l.Results) != 1 || l.Results[0].Source != "plugin:s3test" || string(l.Results[0].Attrs) != `{"part":1}` ||
		l.Results[0].RunID == nil || *l.Results[0].RunID != run.ID || l.Results[0].Level != "INFO" {
		t.Errorf("plugin line %+v", l.Results)
	}

	bad := []struct{ query, field string }{
		{"level=trace", "level"}, {"limit=0", "limit"}, {"limit=1001", "limit"},
		{"after=yesterday", "after"}, {"before=2026-11-01T00:00", "before"},
		{"cursor=%21", "cursor"}, {"cursor=LTE", "cursor"}, // "-1"
		{"search=" + strings.Repeat("x", 501), "search"},
	}
	for _, c := range bad {
		r := e.do("GET", exportPath+"?"+c.query, nil)
		if r.Status != 400 || !slices.Equal(r.err(t).fieldNames(), []string{c.field}) {
			t.Errorf("%s: %d %s", c.query, r.Status, r.Body)
		}
	}
	// The run's logs under another export: 404.
	e.must("GET", "/api/v1/batch_exports/"+other+"/runs/"+run.ID+"/logs", nil, http.StatusNotFound)
}

// TestLogsPagination pages through lines whose ids do not follow their times (lines
// written late with an earlier time, or many lines at one instant): every line comes
// exactly once, in the order of the first page.
func TestLogsPagination(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("paging")
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	// Written in this order (ids ascending), with these minute offsets.
	minutes := []int{5, 1, 3, 3, 3, 0, 9, 2, 3, 7, 4, 4}
	var lines []storage.LogEntry
	for i, m := range minutes {
		lines = append(lines, storage.LogEntry{ExportID: id, Level: storage.LevelInfo, Source: "host",
			Message: fmt.Sprintf("line %d", i), Time: base.Add(time.Duration(m) * time.Minute)})
	}
	if err := e.db.AppendLogs(context.Background(), lines); err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/batch_exports/" + id + "/logs"
	var want []string
	for _, r := range e.must("GET", path, nil, 200).json(t)["results"].([]any) {
		want = append(want, r.(map[string]any)["message"].(string))
	}
	for _, limit := range []int{1, 2, 3, 5, 12} {
		var got []string
		p := fmt.Sprintf("%s?limit=%d", path, limit)
		for range 20 {
			m := e.must("GET", p, nil, 200).json(t)
			for _, r := range m["results"].([]any) {
				got = append(got, r.(map[string]any)["message"].(string))
			}
			next, _ := m["next_cursor"].(string)
			if next == "" {
				break
			}
			p = fmt.Sprintf("%s?limit=%d&cursor=%s", path, limit, url.QueryEscape(next))
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: pages give %q, want %q", limit, got, want)
		}
	}
	// Filters hold across pages.
	var got []string
	p := path + "?limit=1&after=" + url.QueryEscape(base.Add(2*time.Minute).Format(time.RFC3339)) + "&before=" + url.QueryEscape(base.Add(5*time.Minute).Format(time.RFC3339))
	for range 20 {
		m := e.must("GET", p, nil, 200).json(t)
		for _, r := range m["results"].([]any) {
			got = append(got, r.(map[string]any)["message"].(string))
		}
		next, _ := m["next_cursor"].(string)
		if next == "" {
			break
		}
		p = path + "?limit=1&after=" + url.QueryEscape(base.Add(2*time.Minute).Format(time.RFC3339)) + "&before=" + url.QueryEscape(base.Add(5*time.Minute).Format(time.RFC3339)) + "&cursor=" + url.QueryEscape(next)
	}
	if len(got) != 6 { // minutes 3,3,3,3,4,4
		t.Errorf("filtered pages: %q", got)
	}
}
