package control_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

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
