package control_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	bq "google.golang.org/api/bigquery/v2"

	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/warehouse/bigquery/bqfake"
)

// TestEndToEndBigQuery drives the locked bigquery plugin through the API against the
// loopback BigQuery fake that the official client talks to: a backfill lands every event
// of its intervals exactly once in the final table, stage tables are dropped, a failed load
// job (backendError) is retried without loading twice, and an access-denied INSERT fails
// the run at once with BigQuery's message.
func TestEndToEndBigQuery(t *testing.T) {
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:1")
	fake := bqfake.New()
	t.Cleanup(fake.Close)
	e := newEnv(t, "", func(c *control.Config) { c.BigQueryEndpoint = fake.Endpoint() })

	const project, dataset = "sluice-test", "analytics"
	config := func(table string) map[string]any {
		return map[string]any{"project_id": project, "dataset_id": dataset, "table_id": table,
			"private_key":  "-----BEGIN PRIVATE KEY-----\nnot used by the fake\n-----END PRIVATE KEY-----\n",
			"client_email": "sluice@sluice-test.iam.gserviceaccount.com", "use_json_type": true}
	}
	end := t0.Truncate(time.Hour)
	start := end.Add(-3 * time.Hour)
	backfill := func(id string, start, end time.Time) {
		e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
	}
	noStage := func() {
		t.Helper()
		for _, name := range fake.Tables(project, dataset) {
			if strings.HasPrefix(name, "stage_") {
				t.Errorf("stage table left behind: %s", name)
			}
		}
	}

	// One load job fails while running: the run is retried and still lands each row once.
	fake.FailJobs("load", 1, bqfake.Fault{Reason: "backendError", Message: "Backend error. Please try again."})
	id := e.createExportTo("bigquery", "bq", config("events"))
	if b := e.do("GET", "/api/v1/batch_exports/"+id, nil, http.StatusOK); strings.Contains(strings.ToLower(toJSON(b)), "private key") {
		t.Fatalf("the API returned the private key: %v", b)
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
		t.Errorf("%d runs were retried, want 1 (the failed load job)", retried)
	}
	tb, ok := fake.Table(project, dataset, "events")
	if !ok {
		t.Fatal("no events table")
	}
	if tp := tb.Meta.TimePartitioning; tp == nil || tp.Field != "timestamp" || tp.Type != "DAY" {
		t.Errorf("partitioning %+v, want DAY on timestamp", tp)
	}
	uuids := make([]string, 0, len(tb.Rows))
	for _, row := range tb.Rows {
		u, _ := row["uuid"].(string)
		uuids = append(uuids, u)
	}
	e.exactlyOnce(uuids, start, end)
	noStage()

	// The INSERT from the stage is refused: not retryable, the run fails with BigQuery's
	// message and its stage is dropped.
	fake.FailJobs("query", 1, bqfake.Fault{Reason: "accessDenied", Message: "Access Denied: Table sluice-test:analytics.denied"})
	denied := e.createExportTo("bigquery", "bq-denied", config("denied"))
	backfill(denied, end.Add(-time.Hour), end)
	rs = e.waitRuns(denied, "1 run", allFinished(1))
	if rs[0].Status != "Failed" || rs[0].Attempt != 1 || !strings.Contains(rs[0].LatestError, "Access Denied") {
		t.Fatalf("run %+v, want Failed at attempt 1 with BigQuery's message", rs[0])
	}
	noStage()
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// waitAttempt waits until the export's only run finished its attempt-th try.
func (e *env) waitAttempt(exportID string, attempt int) run {
	e.t.Helper()
	rs := e.waitRuns(exportID, fmt.Sprintf("attempt %d finished", attempt), func(rs []run) bool {
		return len(rs) == 1 && rs[0].Attempt >= attempt && allFinished(1)(rs)
	})
	return rs[0]
}

// timesEach fails the test unless uuids hold every source event of [start, end) exactly n
// times, and nothing else.
func (e *env) timesEach(uuids []string, n int, start, end time.Time) {
	e.t.Helper()
	count := map[string]int{}
	for _, u := range uuids {
		count[u]++
	}
	want := int(e.countIn(start, end))
	if want == 0 || len(uuids) != n*want || len(count) != want {
		e.t.Fatalf("the destination holds %d rows of %d events, want %d events %d times each", len(uuids), len(count), want, n)
	}
	for u, c := range count {
		if c != n {
			e.t.Fatalf("event %s arrived %d times, want %d", u, c, n)
		}
	}
}

// TestEndToEndBigQueryReruns (issue 17): a user's retry of a Completed run and a second
// backfill over the same range load the rows again (a deliberate re-run: a new
// generation), an automatic retry after a fault between the stage load and the INSERT
// does not double them, two exports into one table in the same interval both land, and
// records_completed is what BigQuery inserted.
func TestEndToEndBigQueryReruns(t *testing.T) {
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:1")
	fake := bqfake.New()
	t.Cleanup(fake.Close)
	e := newEnv(t, "", func(c *control.Config) { c.BigQueryEndpoint = fake.Endpoint() })

	const project, dataset = "sluice-test", "analytics"
	config := func(table string) map[string]any {
		return map[string]any{"project_id": project, "dataset_id": dataset, "table_id": table,
			"private_key":  "-----BEGIN PRIVATE KEY-----\nnot used by the fake\n-----END PRIVATE KEY-----\n",
			"client_email": "sluice@sluice-test.iam.gserviceaccount.com"}
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
		tb, ok := fake.Table(project, dataset, table)
		if !ok {
			t.Fatalf("no table %s", table)
		}
		out := make([]string, 0, len(tb.Rows))
		for _, row := range tb.Rows {
			u, _ := row["uuid"].(string)
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
	noStage := func() {
		t.Helper()
		for _, name := range fake.Tables(project, dataset) {
			if strings.HasPrefix(name, "stage_") {
				t.Errorf("stage table left behind: %s", name)
			}
		}
	}

	id := e.createExportTo("bigquery", "bq-rerun", config("events"))
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
	noStage()

	// (c) The INSERT job fails after the stage load: the automatic retry (same generation)
	// lands the rows once. backendError: the client's Job.Wait would retry the failed job
	// until the guest call's deadline; the capability returns the job's error at once.
	fake.FailJobs("query", 1, bqfake.Fault{Reason: "backendError", Message: "Backend error. Please try again."})
	retried := e.createExportTo("bigquery", "bq-retried", config("retried"))
	backfill(retried)
	completed(e.waitAttempt(retried, 2), 2)
	e.timesEach(uuids("retried"), 1, start, end)
	noStage()

	// (d) Two exports into one table in the same interval, run at the same time. Both
	// export the same events, so the jobs are interleaved to make a shared stage table
	// visible: each INSERT waits until both stage loads ran, and the second INSERT until
	// the first run dropped its stage (a stage shared by the two would then be gone).
	var mu sync.Mutex
	loads, inserts := 0, 0
	bothLoaded, firstDropped := make(chan struct{}), make(chan struct{})
	var dropOnce sync.Once
	wait := func(c chan struct{}) {
		select {
		case <-c:
		case <-time.After(10 * time.Second):
		}
	}
	fake.OnJob(func(j *bq.Job) {
		if l := j.Configuration.Load; l != nil && strings.HasPrefix(l.DestinationTable.TableId, "stage_shared") {
			mu.Lock()
			if loads++; loads == 2 {
				close(bothLoaded)
			}
			mu.Unlock()
		}
		q := j.Configuration.Query
		switch {
		case q == nil:
		case strings.HasPrefix(q.Query, "DROP TABLE") && strings.Contains(q.Query, "stage_shared"):
			dropOnce.Do(func() { close(firstDropped) })
		case strings.HasPrefix(q.Query, "INSERT INTO `"+project+"."+dataset+".shared`"):
			wait(bothLoaded)
			mu.Lock()
			inserts++
			second := inserts == 2
			mu.Unlock()
			if second {
				wait(firstDropped)
			}
		}
	})
	d1 := e.createExportTo("bigquery", "bq-shared-1", config("shared"))
	d2 := e.createExportTo("bigquery", "bq-shared-2", config("shared"))
	backfill(d1)
	backfill(d2)
	for _, d := range []string{d1, d2} {
		completed(e.waitAttempt(d, 1), 1)
	}
	select {
	case <-bothLoaded:
	default:
		t.Fatal("the two exports' runs did not overlap")
	}
	e.timesEach(uuids("shared"), 2, start, end)
	noStage()
}
