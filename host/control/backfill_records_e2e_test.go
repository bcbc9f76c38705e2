package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/internal/demo"
)

// Backfill estimates, earliest backfills, records counts and unpause with backfill on the
// real host (storage, queue, runtime, the embedded event store), on SQLite and PostgreSQL.

func TestBackfillRecords(t *testing.T) {
	backfillRecords(t, func(t *testing.T, o ...func(*control.Config)) *env { return newEnv(t, "", o...) })
}

func TestBackfillRecordsPostgres(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	backfillRecords(t, func(t *testing.T, o ...func(*control.Config)) *env { return newEnv(t, freshDatabase(t, url), o...) })
}

// runRecords is a run with its counts.
type runRecords struct {
	ID                string     `json:"id"`
	Status            string     `json:"status"`
	IntervalStart     time.Time  `json:"interval_start"`
	IntervalEnd       time.Time  `json:"interval_end"`
	RecordsCompleted  int64      `json:"records_completed"`
	RecordsTotalCount *int64     `json:"records_total_count"`
	RecordsMissing    *int64     `json:"records_missing"`
	DataCheckedAt     *time.Time `json:"data_checked_at"`
	BackfillID        *string    `json:"backfill_id"`
}

func (e *env) runRecords(exportID string) []runRecords {
	e.t.Helper()
	var out []runRecords
	for _, r := range e.allRuns(exportID) {
		got := e.do("GET", "/api/v1/batch_exports/"+exportID+"/runs/"+r.ID, nil, http.StatusOK)
		b, _ := json.Marshal(got)
		var rr runRecords
		if err := json.Unmarshal(b, &rr); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, rr)
	}
	return out
}

// waitBackfillDone waits until the backfill is Completed and its records are counted.
func (e *env) waitBackfillDone(exportID, id string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b := e.do("GET", fmt.Sprintf("/api/v1/batch_exports/%s/backfills/%s", exportID, id), nil, http.StatusOK)
		if b["status"] == "Completed" && b["total_records_status"] != "pending" {
			return b
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("backfill not done: %v", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func backfillRecords(t *testing.T, mk func(*testing.T, ...func(*control.Config)) *env) {
	t.Run("dry run, earliest backfill, records counted and reported per run", func(t *testing.T) {
		e := mk(t)
		id := e.createExport("records", localConfig("records"))
		path := "/api/v1/batch_exports/" + id + "/backfills"
		end := t0.Truncate(time.Hour)
		start := end.Add(-10 * time.Hour)
		est := e.do("POST", path+"?dry_run=true", map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusOK)
		if want := e.countIn(start, end); est["total_runs"] != float64(10) || est["total_records_count"] != float64(want) || want == 0 || est["estimate_timed_out"] != false {
			t.Fatalf("estimate %v, want 10 runs and %d records", est, want)
		}
		if rs := e.allRuns(id); len(rs) != 0 {
			t.Fatalf("a dry run created %d runs", len(rs))
		}
		// Earliest: from the interval of the first event in the store.
		first := e.events[0].InsertedAt
		for _, ev := range e.events {
			if ev.InsertedAt.Before(first) {
				first = ev.InsertedAt
			}
		}
		adjusted := first.Truncate(time.Hour)
		est = e.do("POST", path+"?dry_run=true", map[string]any{"end_at": end.Format(time.RFC3339)}, http.StatusOK)
		runs := int(end.Sub(adjusted) / time.Hour)
		if est["start_at"] != nil || est["adjusted_start_at"] != adjusted.Format(time.RFC3339) || est["total_runs"] != float64(runs) ||
			est["total_records_count"] != float64(e.countIn(adjusted, end)) {
			t.Fatalf("earliest estimate %v, want %d runs from %s", est, runs, adjusted)
		}
		bf := e.do("POST", path, map[string]any{"start_at": nil, "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
		if bf["start_at"] != nil || bf["adjusted_start_at"] != adjusted.Format(time.RFC3339) {
			t.Fatalf("earliest backfill %v", bf)
		}
		b := e.waitBackfillDone(id, bf["id"].(string))
		want := e.countIn(adjusted, end)
		p := b["progress"].(map[string]any)
		if b["total_records_count"] != float64(want) || b["total_records_status"] != "counted" || b["estimate_timed_out"] != false ||
			p["records"] != float64(want) || p["total_records"] != float64(want) || p["records_fraction"] != float64(1) || p["total_runs"] != float64(runs) {
			t.Fatalf("finished backfill %v, want %d records in %d runs", b, want, runs)
		}
		rs := e.runRecords(id)
		if len(rs) != runs {
			t.Fatalf("%d runs, want %d", len(rs), runs)
		}
		for _, r := range rs {
			if r.RecordsTotalCount == nil || *r.RecordsTotalCount != r.RecordsCompleted || r.RecordsCompleted != e.countIn(r.IntervalStart, r.IntervalEnd) {
				t.Errorf("run [%s, %s): records_total_count %v, records_completed %d, source %d", r.IntervalStart, r.IntervalEnd,
					r.RecordsTotalCount, r.RecordsCompleted, e.countIn(r.IntervalStart, r.IntervalEnd))
			}
		}
	})

	t.Run("an estimate over the count cap says so and is null", func(t *testing.T) {
		e := mk(t, func(c *control.Config) { c.CountTimeout = time.Nanosecond })
		id := e.createExport("capped", localConfig("capped"))
		end := t0.Truncate(time.Hour)
		est := e.do("POST", "/api/v1/batch_exports/"+id+"/backfills?dry_run=true",
			map[string]any{"start_at": end.Add(-5 * time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusOK)
		if v, ok := est["total_records_count"]; !ok || v != nil || est["estimate_timed_out"] != true || est["total_runs"] != float64(5) {
			t.Fatalf("capped estimate %v", est)
		}
		bf := e.backfill(id, end.Add(-2*time.Hour), end)
		b := e.waitBackfillDone(id, bf["id"].(string))
		if b["total_records_count"] != nil || b["total_records_status"] != "timed_out" || b["estimate_timed_out"] != true ||
			b["progress"].(map[string]any)["records_fraction"] != nil {
			t.Fatalf("capped backfill %v", b)
		}
		for _, r := range e.runRecords(id) {
			if r.RecordsTotalCount != nil || r.Status != "Completed" {
				t.Errorf("run with a capped count: %+v", r)
			}
		}
	})

	t.Run("unpause with backfill runs the intervals missed while paused", func(t *testing.T) {
		e := mk(t)
		id := e.createExport("paused", localConfig("paused"))
		e.do("POST", "/api/v1/batch_exports/"+id+"/pause", nil, http.StatusOK)
		// storage stamps last_paused_at with the real clock; the host runs on a fake one.
		pausedAt := t0.Add(-3*time.Hour - 20*time.Minute) // 06:50: the 06:00-07:00 run never ran
		if _, err := e.host.DB().SQL().ExecContext(context.Background(), "UPDATE batch_exports SET last_paused_at = $1 WHERE id = $2", pausedAt, id); err != nil {
			t.Fatal(err)
		}
		out := e.do("POST", "/api/v1/batch_exports/"+id+"/unpause", map[string]any{"backfill": true}, http.StatusOK)
		bf, _ := out["backfill"].(map[string]any)
		if out["paused"] != false || bf == nil || bf["adjusted_start_at"] != "2026-11-20T06:00:00Z" || bf["progress"].(map[string]any)["total_runs"] != float64(4) {
			t.Fatalf("unpause with backfill: %v", out)
		}
		e.waitBackfillDone(id, bf["id"].(string))
		rs := e.runRecords(id)
		if len(rs) != 4 || !rs[len(rs)-1].IntervalStart.Equal(pausedAt.Truncate(time.Hour)) || !rs[0].IntervalEnd.Equal(t0.Truncate(time.Hour)) {
			t.Fatalf("runs %+v, want the 4 intervals 06:00-10:00", rs)
		}
		for _, r := range rs {
			if r.RecordsTotalCount == nil || *r.RecordsTotalCount != r.RecordsCompleted || r.BackfillID == nil || *r.BackfillID != bf["id"] {
				t.Errorf("run %+v", r)
			}
		}
	})
}

// TestMissingDataCheck: an event inserted late into an interval whose run completed is
// found by the periodic check (a River job per slot), reported on the run (API field, run
// log), and gone once the run is retried.
func TestMissingDataCheck(t *testing.T) { missingDataCheck(t, "") }

func TestMissingDataCheckPostgres(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	missingDataCheck(t, freshDatabase(t, url))
}

func missingDataCheck(t *testing.T, databaseURL string) {
	e := newEnv(t, databaseURL, func(c *control.Config) { c.MissingDataInterval = 200 * time.Millisecond })
	ctx := context.Background()
	id := e.createExport("late", localConfig("late"))
	end := t0.Truncate(time.Hour)
	bf := e.backfill(id, end.Add(-2*time.Hour), end)
	e.waitBackfillDone(id, bf["id"].(string))
	late := demo.Events(1, end.Add(-90*time.Minute), end.Add(-90*time.Minute+time.Second), 7)
	if err := e.host.Events().Insert(ctx, late); err != nil {
		t.Fatal(err)
	}
	e.events = append(e.events, late...)
	find := func() (lateRun, other runRecords) {
		for _, r := range e.runRecords(id) {
			if r.IntervalStart.Equal(end.Add(-2 * time.Hour)) {
				lateRun = r
			} else {
				other = r
			}
		}
		return
	}
	deadline := time.Now().Add(60 * time.Second)
	var lr, or runRecords
	for {
		e.clock.Advance(200 * time.Millisecond) // the next slot: the next check job
		lr, or = find()
		if lr.RecordsMissing != nil && *lr.RecordsMissing == 1 && or.RecordsMissing != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the check did not report the late event: %+v / %+v", lr, or)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if *or.RecordsMissing != 0 || or.DataCheckedAt == nil {
		t.Errorf("complete run reported %+v", or)
	}
	logs := e.do("GET", "/api/v1/batch_exports/"+id+"/runs/"+lr.ID+"/logs?limit=500", nil, http.StatusOK)
	if b, _ := json.Marshal(logs); !strings.Contains(string(b), "1 more than the run exported (late data)") {
		t.Errorf("the run log does not say: %s", b)
	}
	// Reported once: a check again finds nothing new.
	if n, err := e.host.CheckMissingData(ctx); err != nil || n != 0 {
		t.Errorf("second check: %d newly missing, err %v", n, err)
	}
	// A retry exports the late event and clears the report; the next check finds none.
	e.do("POST", "/api/v1/batch_exports/"+id+"/runs/"+lr.ID+"/retry", nil, http.StatusAccepted)
	e.waitAll(id, "the retried run", time.Minute, func(rs []run) bool { return statuses(rs)["Completed"] == 2 })
	lr, _ = find()
	if lr.RecordsMissing != nil || lr.RecordsCompleted != e.countIn(lr.IntervalStart, lr.IntervalEnd) {
		t.Fatalf("retried run %+v, want no report and %d records", lr, e.countIn(lr.IntervalStart, lr.IntervalEnd))
	}
	if n, err := e.host.CheckMissingData(ctx); err != nil || n != 0 {
		t.Errorf("check after the retry: %d, err %v", n, err)
	}
	if lr, _ = find(); lr.RecordsMissing == nil || *lr.RecordsMissing != 0 {
		t.Errorf("retried run after a check: %+v", lr)
	}
}
