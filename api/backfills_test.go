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
		{"missing both", `{}`, 400, []string{"end_at"}, "required"},
		{"missing end", `{"start_at": "2026-11-19T00:00:00Z"}`, 400, []string{"end_at"}, "required"},
		{"null start, empty source", `{"start_at": null, "end_at": "2026-11-19T00:00:00Z"}`, 400, []string{"start_at"}, "no event matching"},
		{"omitted start, empty source", `{"end_at": "2026-11-19T00:00:00Z"}`, 400, []string{"start_at"}, "no event matching"},
		{"naive start", `{"start_at": "2026-11-19T00:00:00", "end_at": "2026-11-19T05:00:00Z"}`, 400, []string{"start_at"}, "time zone"},
		{"date only", `{"start_at": "2026-11-19", "end_at": "2026-11-20"}`, 400, []string{"start_at", "end_at"}, "RFC 3339"},
		{"number", `{"start_at": 0, "end_at": "2026-11-19T05:00:00Z"}`, 400, []string{"start_at"}, "RFC 3339"},
		{"unknown field", `{"start_at": "2026-11-19T00:00:00Z", "end_at": "2026-11-19T05:00:00Z", "parallelism": 4}`, 400, []string{"parallelism"}, "unknown field"},
		{"end before start", `{"start_at": "2026-11-19T05:00:00Z", "end_at": "2026-11-19T00:00:00Z"}`, 400, []string{"end_at"}, "after start_at"},
		{"end equals start", `{"start_at": "2026-11-19T05:00:00Z", "end_at": "2026-11-19T06:00:00+01:00"}`, 400, []string{"end_at"}, "after start_at"},
		{"end in the future", `{"start_at": "2026-11-20T09:00:00Z", "end_at": "2026-11-20T11:00:00Z"}`, 400, []string{"end_at"}, "future"},
		{"all in the future", `{"start_at": "2027-01-01T00:00:00Z", "end_at": "2027-01-02T00:00:00Z"}`, 400, []string{"end_at"}, "future"},
		{"too many intervals", `{"start_at": "2026-11-10T00:00:00Z", "end_at": "2026-11-14T05:00:00Z"}`, 400, []string{"start_at"}, "at most 100"},
		{"dry run: end before start", `{"start_at": "2026-11-19T05:00:00Z", "end_at": "2026-11-19T00:00:00Z"}`, 400, []string{"end_at"}, "after start_at"},
		{"dry run: invalid date", `{"start_at": "2026-13-19T05:00:00Z", "end_at": "2026-11-19T00:00:00Z"}`, 400, []string{"start_at"}, "RFC 3339"},
		{"dry run: bad flag", `{"start_at": "2026-11-19T00:00:00Z", "end_at": "2026-11-19T05:00:00Z"}`, 400, []string{"dry_run"}, "true or false"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.ctl.resetCalls()
			p := path
			if strings.HasPrefix(c.name, "dry run") {
				p += "?dry_run=true"
				if c.name == "dry run: bad flag" {
					p = path + "?dry_run=yes"
				}
			}
			r := e.do("POST", p, c.body)
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
			if e.ctl.called("RequestBackfill")+e.ctl.called("EstimateBackfill") != 0 {
				t.Error("RequestBackfill or EstimateBackfill called for a rejected request")
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

func TestBackfillDryRun(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("bf")
	path := "/api/v1/batch_exports/" + id + "/backfills?dry_run=true"
	r := e.must("POST", path, `{"start_at": "2026-11-19T00:00:00Z", "end_at": "2026-11-19T05:00:00Z"}`, http.StatusOK).json(t)
	if r["dry_run"] != true || r["total_runs"] != float64(5) || r["total_records_count"] != float64(50) || r["estimate_timed_out"] != false ||
		r["start_at"] != "2026-11-19T00:00:00Z" || r["adjusted_start_at"] != "2026-11-19T00:00:00Z" || r["end_at"] != "2026-11-19T05:00:00Z" {
		t.Errorf("estimate %v", r)
	}
	// A count that hit the cap: null, and said so; never a wrong number.
	e.ctl.estimate = &api.BackfillEstimate{AdjustedStart: now.Add(-2 * time.Hour), End: now, Runs: 2, TimedOut: true}
	r = e.must("POST", path, `{"start_at": "2026-11-20T08:00:00Z", "end_at": "2026-11-20T10:00:00Z"}`, http.StatusOK).json(t)
	if v, ok := r["total_records_count"]; !ok || v != nil || r["estimate_timed_out"] != true {
		t.Errorf("timed-out estimate %v", r)
	}
	// Nothing was created; dry_run=false creates.
	if bs, _ := e.db.ListBackfills(context.Background(), id); len(bs) != 0 {
		t.Errorf("a dry run stored %d backfills", len(bs))
	}
	if e.ctl.called("RequestBackfill") != 0 {
		t.Error("a dry run requested a backfill")
	}
	e.must("POST", "/api/v1/batch_exports/"+id+"/backfills?dry_run=false", `{"start_at": "2026-11-19T00:00:00Z", "end_at": "2026-11-19T05:00:00Z"}`, http.StatusCreated)
}

func TestBackfillEarliest(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("bf")
	path := "/api/v1/batch_exports/" + id + "/backfills"
	e.ctl.earliest = time.Date(2026, 11, 19, 20, 0, 0, 0, time.UTC)
	// Dry run first: from the earliest event's interval.
	r := e.must("POST", path+"?dry_run=true", `{"end_at": "2026-11-20T00:00:00Z"}`, http.StatusOK).json(t)
	if v, ok := r["start_at"]; !ok || v != nil || r["adjusted_start_at"] != "2026-11-19T20:00:00Z" || r["total_runs"] != float64(4) {
		t.Errorf("earliest estimate %v", r)
	}
	b := e.must("POST", path, `{"start_at": null, "end_at": "2026-11-20T00:00:00Z"}`, http.StatusCreated).json(t)
	if v, ok := b["start_at"]; !ok || v != nil || b["adjusted_start_at"] != "2026-11-19T20:00:00Z" || b["progress"].(map[string]any)["total_runs"] != float64(4) {
		t.Errorf("earliest backfill %v", b)
	}
	if reqs := e.ctl.requests; len(reqs) != 2 || !reqs[1].Earliest || !reqs[1].Start.Equal(e.ctl.earliest) {
		t.Errorf("requests %+v", reqs)
	}
	// The earliest event after end_at; too many intervals from the earliest event.
	r2 := e.must("POST", path, `{"end_at": "2026-11-19T19:00:00Z"}`, http.StatusBadRequest)
	if ae := r2.err(t); !slices.Equal(ae.fieldNames(), []string{"end_at"}) || !strings.Contains(ae.text(), "earliest event") {
		t.Errorf("end before the earliest event: %s", r2.Body)
	}
	e.ctl.earliest = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	r2 = e.must("POST", path, `{"end_at": "2026-11-20T00:00:00Z"}`, http.StatusBadRequest)
	if ae := r2.err(t); !slices.Equal(ae.fieldNames(), []string{"start_at"}) || !strings.Contains(ae.text(), "at most 100") {
		t.Errorf("too many from the earliest: %s", r2.Body)
	}
}

func TestUnpauseWithBackfill(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("bf")
	path := "/api/v1/batch_exports/" + id
	ctx := context.Background()
	// Not paused: backfill asks nothing.
	if r := e.must("POST", path+"/unpause", `{"backfill": true}`, http.StatusOK).json(t); r["backfill"] != nil {
		t.Errorf("unpausing a live export backfilled: %v", r)
	}
	e.must("POST", path+"/pause", nil, http.StatusOK)
	// storage stamps last_paused_at with the real clock; the API's clock is fixed.
	pausedAt := now.Add(-5*time.Hour - 20*time.Minute)
	if _, err := e.db.SQL().ExecContext(ctx, "UPDATE batch_exports SET last_paused_at = $1 WHERE id = $2", pausedAt, id); err != nil {
		t.Fatal(err)
	}
	e.must("POST", path+"/unpause", `{"backfill": "yes"}`, http.StatusBadRequest)
	// Paused before last_paused_at was recorded: say so, stay paused.
	if _, err := e.db.SQL().ExecContext(ctx, "UPDATE batch_exports SET last_paused_at = NULL WHERE id = $1", id); err != nil {
		t.Fatal(err)
	}
	if r := e.must("POST", path+"/unpause", `{"backfill": true}`, http.StatusBadRequest); !strings.Contains(string(r.Body), "last_paused_at") {
		t.Errorf("no last_paused_at: %s", r.Body)
	}
	if _, err := e.db.SQL().ExecContext(ctx, "UPDATE batch_exports SET last_paused_at = $1 WHERE id = $2", pausedAt, id); err != nil {
		t.Fatal(err)
	}
	e.must("POST", path+"/unpause", `{"backfil": true}`, http.StatusBadRequest)
	if x, err := e.db.GetExport(ctx, id); err != nil || !x.Paused {
		t.Fatalf("a rejected unpause unpaused (%v)", err)
	}
	r := e.must("POST", path+"/unpause", `{"backfill": true}`, http.StatusOK).json(t)
	bf, _ := r["backfill"].(map[string]any)
	if r["paused"] != false || bf == nil || bf["export_id"] != id {
		t.Fatalf("unpause with backfill %v", r)
	}
	reqs := e.ctl.requests
	if len(reqs) != 1 || !reqs[0].SincePause || !reqs[0].Start.Equal(pausedAt) || !reqs[0].End.Equal(now) {
		t.Errorf("requests %+v", reqs)
	}
	// Unpausing again (already live) does not backfill twice; a plain unpause has no body.
	e.must("POST", path+"/unpause", `{"backfill": true}`, http.StatusOK)
	e.must("POST", path+"/pause", nil, http.StatusOK)
	if r := e.must("POST", path+"/unpause", nil, http.StatusOK).json(t); r["backfill"] != nil {
		t.Errorf("plain unpause backfilled: %v", r)
	}
	if n := e.ctl.called("RequestBackfill"); n != 1 {
		t.Errorf("%d backfills requested, want 1", n)
	}
	// Paused for longer than MaxBackfillRuns intervals: 400 naming backfill, still paused.
	e.must("POST", path+"/pause", nil, http.StatusOK)
	if _, err := e.db.SQL().ExecContext(ctx, "UPDATE batch_exports SET last_paused_at = $1 WHERE id = $2", now.Add(-200*time.Hour), id); err != nil {
		t.Fatal(err)
	}
	r2 := e.must("POST", path+"/unpause", `{"backfill": true}`, http.StatusBadRequest)
	if ae := r2.err(t); !slices.Equal(ae.fieldNames(), []string{"backfill"}) {
		t.Errorf("too long a pause: %s", r2.Body)
	}
	if x, err := e.db.GetExport(ctx, id); err != nil || !x.Paused {
		t.Fatalf("a rejected unpause unpaused (%v)", err)
	}
}
