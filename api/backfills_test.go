package api_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
)

func TestCreateBackfillValidation(t *testing.T) {
	e := newEnv(t) // now = 2026-11-20T10:10Z, MaxBackfillRuns = 100
	e.plugin(s3Manifest)
	id := e.export("bf")
	path := "/api/v1/batch_exports/" + id + "/backfills"
	cases := []struct {
		name   string
		body   string
		status int
		fields []string
		msg    string
	}{
		{"empty body", ``, 400, nil, "empty"},
		{"malformed", `{"start_at": `, 400, nil, "malformed"},
		{"missing both", `{}`, 400, []string{"start_at", "end_at"}, "required"},
		{"missing end", `{"start_at": "2026-11-19T00:00:00Z"}`, 400, []string{"end_at"}, "required"},
		{"null start", `{"start_at": null, "end_at": "2026-11-19T00:00:00Z"}`, 400, []string{"start_at"}, "required"},
		{"naive start", `{"start_at": "2026-11-19T00:00:00", "end_at": "2026-11-19T05:00:00Z"}`, 400, []string{"start_at"}, "time zone"},
		{"date only", `{"start_at": "2026-11-19", "end_at": "2026-11-20"}`, 400, []string{"start_at", "end_at"}, "RFC 3339"},
		{"number", `{"start_at": 0, "end_at": "2026-11-19T05:00:00Z"}`, 400, []string{"start_at"}, "RFC 3339"},
		{"unknown field", `{"start_at": "2026-11-19T00:00:00Z", "end_at": "2026-11-19T05:00:00Z", "parallelism": 4}`, 400, []string{"parallelism"}, "unknown field"},
		{"end before start", `{"start_at": "2026-11-19T05:00:00Z", "end_at": "2026-11-19T00:00:00Z"}`, 400, []string{"end_at"}, "after start_at"},
		{"end equals start", `{"start_at": "2026-11-19T05:00:00Z", "end_at": "2026-11-19T06:00:00+01:00"}`, 400, []string{"end_at"}, "after start_at"},
		{"end in the future", `{"start_at": "2026-11-20T09:00:00Z", "end_at": "2026-11-20T11:00:00Z"}`, 400, []string{"end_at"}, "future"},
		{"all in the future", `{"start_at": "2027-01-01T00:00:00Z", "end_at": "2027-01-02T00:00:00Z"}`, 400, []string{"end_at"}, "future"},
		{"too many intervals", `{"start_at": "2026-11-10T00:00:00Z", "end_at": "2026-11-14T05:00:00Z"}`, 400, []string{"start_at"}, "at most 100"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.ctl.resetCalls()
			r := e.do("POST", path, c.body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			ae := r.err(t)
			if !slices.Equal(ae.fieldNames(), c.fields) {
				t.Errorf("fields %v, want %v: %s", ae.fieldNames(), c.fields, r.Body)
			}
			if !strings.Contains(ae.text(), c.msg) {
				t.Errorf("error lacks %q: %s", c.msg, r.Body)
			}
			if e.ctl.called("RequestBackfill") != 0 {
				t.Error("RequestBackfill called for a rejected request")
			}
		})
	}
	if bs, _ := e.db.ListBackfills(context.Background(), id); len(bs) != 0 {
		t.Errorf("rejected requests stored %d backfills", len(bs))
	}
	// The limits themselves are accepted: exactly 100 hourly intervals, an end at now.
	r := e.must("POST", path, `{"start_at": "2026-11-16T02:10:00Z", "end_at": "2026-11-20T06:10:00Z"}`, http.StatusCreated)
	if p := r.json(t)["progress"].(map[string]any); p["total_runs"] != float64(100) {
		t.Errorf("progress %v", p)
	}
	e.must("POST", path, `{"start_at": "2026-11-20T08:10:00+01:00", "end_at": "`+now.Format(time.RFC3339)+`"}`, http.StatusCreated)
}

func TestBackfillLifecycle(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("bf")
	other := e.export("other")
	path := "/api/v1/batch_exports/" + id + "/backfills"

	// 48 hourly intervals (times with an offset are normalised to UTC).
	r := e.must("POST", path, `{"start_at": "2026-11-17T01:00:00+01:00", "end_at": "2026-11-19T00:00:00Z"}`, http.StatusCreated)
	b := r.json(t)
	bid := b["id"].(string)
	if b["export_id"] != id || b["start_at"] != "2026-11-17T00:00:00Z" || b["end_at"] != "2026-11-19T00:00:00Z" || b["status"] != "Starting" {
		t.Errorf("backfill %v", b)
	}
	p := b["progress"].(map[string]any)
	want := map[string]float64{"total_runs": 48, "created_runs": 48, "finished_runs": 48, "completed_runs": 48, "failed_runs": 0, "records": 480, "fraction": 1}
	for k, w := range want {
		if p[k] != w {
			t.Errorf("progress[%s] = %v, want %v", k, p[k], w)
		}
	}
	if n := len(e.runs("/api/v1/batch_exports/" + id + "/runs?limit=500").Results); n != 48 {
		t.Errorf("%d runs, want 48", n)
	}
	// Listed, newest first; readable one by one; not under another export.
	r2 := e.must("POST", path, `{"start_at": "2026-11-19T00:00:00Z", "end_at": "2026-11-19T02:00:00Z"}`, http.StatusCreated)
	bid2 := r2.json(t)["id"].(string)
	l := e.must("GET", path, nil, http.StatusOK).json(t)["results"].([]any)
	if len(l) != 2 || l[0].(map[string]any)["id"] != bid2 || l[1].(map[string]any)["id"] != bid {
		t.Errorf("backfills %v", l)
	}
	if got := e.must("GET", path+"/"+bid, nil, http.StatusOK).json(t)["id"]; got != bid {
		t.Errorf("get %v", got)
	}
	e.must("GET", "/api/v1/batch_exports/"+other+"/backfills/"+bid, nil, http.StatusNotFound)
	e.must("POST", "/api/v1/batch_exports/"+other+"/backfills/"+bid+"/cancel", nil, http.StatusNotFound)
	if l := e.must("GET", "/api/v1/batch_exports/"+other+"/backfills", nil, http.StatusOK).json(t)["results"].([]any); len(l) != 0 {
		t.Errorf("other export's backfills %v", l)
	}
	// Cancel: 202 with the new status, then 409.
	c := e.must("POST", path+"/"+bid+"/cancel", nil, http.StatusAccepted).json(t)
	if c["status"] != "Cancelled" || c["finished_at"] == nil {
		t.Errorf("cancelled %v", c)
	}
	r = e.must("POST", path+"/"+bid+"/cancel", nil, http.StatusConflict)
	if ae := r.err(t); ae.Code != api.CodeConflict || !strings.Contains(ae.Message, "Cancelled") {
		t.Errorf("second cancel %+v", ae)
	}
	// A deleted export's backfills are gone from the API.
	e.must("DELETE", "/api/v1/batch_exports/"+id, nil, http.StatusNoContent)
	e.must("GET", path+"/"+bid2, nil, http.StatusNotFound)
}
