package control_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/warehouse/snowflake/sffake"
)

// TestEndToEndSnowflake drives the locked snowflake plugin through the API against the
// loopback Snowflake fake that gosnowflake talks to: a backfill lands every event of its
// intervals exactly once in the table (PUT to the table stage, COPY INTO), a suspended
// warehouse (000608) is retried, and a refused login (390100) fails the run at once with
// Snowflake's message. The password is never returned by the API.
func TestEndToEndSnowflake(t *testing.T) {
	t.Setenv("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
	const password = "sf-secret-pass-42"
	fake := sffake.New(sffake.Options{Password: password, Schemas: []string{"ANALYTICS.PUBLIC"}})
	t.Cleanup(fake.Close)
	e := newEnv(t, "", func(c *control.Config) { c.SnowflakeEndpoint = fake.URL })

	config := func(table, pass string) map[string]any {
		return map[string]any{"account": "testaccount", "user": "sluice", "password": pass,
			"database": "analytics", "schema": "public", "table_name": table, "warehouse": "WH"}
	}
	end := t0.Truncate(time.Hour)
	start := end.Add(-3 * time.Hour)
	backfill := func(id string, start, end time.Time) {
		e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
	}

	// The first COPY meets a suspended warehouse: that run is retried and completes.
	fake.FailStatement("COPY INTO", 1, sffake.WarehouseSuspended)
	id := e.createExportTo("snowflake", "sf", config("events", password))
	if b := toJSON(e.do("GET", "/api/v1/batch_exports/"+id, nil, http.StatusOK)); strings.Contains(b, password) {
		t.Fatalf("the API returned the password: %s", b)
	}
	backfill(id, start, end)
	rs := e.waitRuns(id, "3 runs", allFinished(3))
	retried := 0
	for _, r := range rs {
		if r.Status != "Completed" {
			t.Fatalf("run %+v", r)
		}
		if r.Attempt > 1 {
			retried++
		}
		if want := e.countIn(r.IntervalStart, r.IntervalEnd); r.RecordsCompleted != want {
			t.Errorf("run %s reports %d records, the source holds %d", r.IntervalStart, r.RecordsCompleted, want)
		}
	}
	if retried != 1 {
		t.Errorf("%d runs were retried, want 1 (the suspended warehouse)", retried)
	}
	tb, ok := fake.Table("ANALYTICS", "PUBLIC", "events")
	if !ok {
		t.Fatalf("no events table; statements: %v", fake.SQL())
	}
	uuids := make([]string, 0, len(tb.Rows))
	for _, row := range tb.Rows {
		u, _ := row["UUID"].(string)
		uuids = append(uuids, u)
	}
	e.exactlyOnce(uuids, start, end)
	if staged := fake.StagedFiles("ANALYTICS", "PUBLIC", "events"); len(staged) != 0 {
		t.Errorf("files left in the table stage after PURGE: %v", staged)
	}

	// A wrong password: Snowflake refuses the login, the run fails at once.
	denied := e.createExportTo("snowflake", "sf-denied", config("denied", "wrong"))
	backfill(denied, end.Add(-time.Hour), end)
	rs = e.waitRuns(denied, "1 run", allFinished(1))
	if rs[0].Status != "Failed" || rs[0].Attempt != 1 || !strings.Contains(rs[0].LatestError, "Incorrect username or password") {
		t.Fatalf("run %+v, want Failed at attempt 1 with Snowflake's message", rs[0])
	}
}

// TestEndToEndSnowflakeReruns (issue 17): a user's retry of a Completed run and a second
// backfill over the same range load the rows again (a new generation stages new paths,
// which COPY's load metadata has not seen), an automatic retry after a fault that follows
// the COPY does not double them (the same files are skipped), two exports into one table
// in the same interval both land, and records_completed is what Snowflake loaded.
func TestEndToEndSnowflakeReruns(t *testing.T) {
	t.Setenv("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
	const password = "sf-secret-pass-42"
	fake := sffake.New(sffake.Options{Password: password, Schemas: []string{"ANALYTICS.PUBLIC"}})
	t.Cleanup(fake.Close)
	e := newEnv(t, "", func(c *control.Config) { c.SnowflakeEndpoint = fake.URL })

	config := func(table string) map[string]any {
		return map[string]any{"account": "testaccount", "user": "sluice", "password": password,
			"database": "analytics", "schema": "public", "table_name": table, "warehouse": "WH"}
	}
	end := t0.Truncate(time.Hour)
	start := end.Add(-time.Hour)
	want := e.countIn(start, end)
	backfill := func(id string) {
		e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
	}
	uuids := func(table string) []string {
		t.Helper()
		tb, ok := fake.Table("ANALYTICS", "PUBLIC", table)
		if !ok {
			t.Fatalf("no table %s; statements: %v", table, fake.SQL())
		}
		out := make([]string, 0, len(tb.Rows))
		for _, row := range tb.Rows {
			u, _ := row["UUID"].(string)
			out = append(out, u)
		}
		return out
	}
	completed := func(r run, attempt int) {
		t.Helper()
		if r.Status != "Completed" || r.Attempt != attempt || r.RecordsCompleted != want {
			t.Fatalf("run %+v, want Completed at attempt %d with %d records", r, attempt, want)
		}
	}

	id := e.createExportTo("snowflake", "sf-rerun", config("events"))
	backfill(id)
	r := e.waitAttempt(id, 1)
	completed(r, 1)
	e.timesEach(uuids("events"), 1, start, end)

	// (a) The user retries the Completed run: it loads the rows again.
	e.do("POST", fmt.Sprintf("/api/v1/batch_exports/%s/runs/%s/retry", id, r.ID), nil, http.StatusAccepted)
	completed(e.waitAttempt(id, 2), 2)
	e.timesEach(uuids("events"), 2, start, end)

	// (b) A second backfill over the same range loads them once more.
	backfill(id)
	completed(e.waitAttempt(id, 3), 3)
	e.timesEach(uuids("events"), 3, start, end)

	// (c) The COPY commits but its answer is lost (a retryable fault after it ran): the
	// automatic retry re-stages the same files, which the load metadata skips; the run
	// still reports the rows the first attempt loaded.
	fault := sffake.WarehouseSuspended
	fault.AfterRun = true
	fake.FailStatement(`COPY INTO "ANALYTICS"."PUBLIC"."retried"`, 1, fault)
	retried := e.createExportTo("snowflake", "sf-retried", config("retried"))
	backfill(retried)
	completed(e.waitAttempt(retried, 2), 2)
	e.timesEach(uuids("retried"), 1, start, end)

	// (d) Two exports into one table in the same interval both land.
	d1 := e.createExportTo("snowflake", "sf-shared-1", config("shared"))
	d2 := e.createExportTo("snowflake", "sf-shared-2", config("shared"))
	backfill(d1)
	backfill(d2)
	for _, d := range []string{d1, d2} {
		completed(e.waitAttempt(d, 1), 1)
	}
	e.timesEach(uuids("shared"), 2, start, end)
	for _, table := range []string{"events", "retried", "shared"} {
		if staged := fake.StagedFiles("ANALYTICS", "PUBLIC", table); len(staged) != 0 {
			t.Errorf("files left in the %s stage: %v", table, staged)
		}
	}
}
