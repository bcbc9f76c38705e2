package control_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/plugins/databricks/dbxfake"
)

// syncBuffer is a log sink shared by the host's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEndToEndDatabricks drives the locked databricks plugin (ABI 1.1, http capability)
// through the API against the loopback Databricks fake, whose statements stay RUNNING for
// two polls each: 3 hourly backfill runs (OAuth machine-to-machine) land every event once
// in the Delta table, one of them retried after a 503 that follows its committed MERGE; a
// personal-access-token export with STRING properties and no schema evolution lands too; a
// transient FAILED statement is retried, a SQL error fails at once with Databricks'
// message; a wrong token and a wrong client secret fail at attempt 1 with the server's
// message; the staged files and stage tables are gone; the secrets are in no API answer and
// no log line, and reached the fake only where the host put them.
func TestEndToEndDatabricks(t *testing.T) {
	const (
		pat          = "dapi-e2e-personal-token-5f1c9a77"
		clientID     = "7c1b-sluice-sp"
		clientSecret = "dose-e2e-client-secret-81b2c4"
	)
	fake := dbxfake.New(dbxfake.Options{Token: pat, ClientID: clientID, ClientSecret: clientSecret, Warehouses: []string{"wh0123abcd"}, Polls: 2})
	t.Cleanup(fake.Close)
	logs := &syncBuffer{}
	e := newEnv(t, "", func(c *control.Config) {
		// The fake is on loopback: the operator's switch for private addresses.
		c.HTTP.AllowPrivate = true
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	config := func(table string, extra map[string]any) map[string]any {
		c := map[string]any{"server_hostname": fake.URL, "http_path": "/sql/1.0/warehouses/wh0123abcd",
			"catalog": "main", "schema": "analytics", "table_name": table}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	oauth := map[string]any{"client_id": clientID, "client_secret": clientSecret}
	end := t0.Truncate(time.Hour)
	start := end.Add(-3 * time.Hour)
	backfill := func(id string, start, end time.Time) {
		e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
	}
	rows := func(table string) dbxfake.Table {
		t.Helper()
		tb, ok := fake.Table("main", "analytics", table)
		if !ok {
			t.Fatalf("no table %s; tables %v; statements: %v", table, fake.Tables(), fake.SQL())
		}
		return tb
	}
	uuids := func(tb dbxfake.Table) []string {
		out := make([]string, 0, len(tb.Rows))
		for _, r := range tb.Rows {
			u, _ := r["uuid"].(string)
			out = append(out, u)
		}
		return out
	}

	// (1) OAuth, 3 hourly runs; the first MERGE commits but its answer is a 503: that run
	// is retried, and the MERGE on uuid keeps one copy.
	fake.Inject(dbxfake.Fault{SQLPrefix: "MERGE", AfterRun: true, Status: dbxfake.Unavailable.Status,
		Code: dbxfake.Unavailable.Code, Message: dbxfake.Unavailable.Message})
	id := e.createExportTo("databricks", "dbx", config("events", oauth))
	backfill(id, start, end)
	rs := e.waitRuns(id, "3 runs", allFinished(3))
	retried := 0
	for _, r := range rs {
		if r.Status != "Completed" {
			t.Fatalf("run %+v; statements %v", r, fake.SQL())
		}
		if r.Attempt > 1 {
			retried++
		}
		if want := e.countIn(r.IntervalStart, r.IntervalEnd); r.RecordsCompleted != want {
			t.Errorf("run %s reports %d records, the source holds %d", r.IntervalStart, r.RecordsCompleted, want)
		}
	}
	if retried != 1 {
		t.Errorf("%d runs were retried, want 1 (the 503 after the MERGE)", retried)
	}
	tb := rows("events")
	e.exactlyOnce(uuids(tb), start, end)
	// The values, not only the uuids: properties as VARIANT, the times as TIMESTAMP.
	byUUID := map[string]map[string]any{}
	for _, r := range tb.Rows {
		byUUID[r["uuid"].(string)] = r
	}
	for _, ev := range e.events {
		r, ok := byUUID[uuid.UUID(ev.UUID).String()]
		if !ok {
			continue
		}
		got, _ := json.Marshal(r["properties"])
		want := []byte(ev.Properties)
		ts, _ := r["timestamp"].(time.Time)
		if r["event"] != ev.Event || r["distinct_id"] != ev.DistinctID || r["team_id"] != ev.TeamID || !ts.Equal(ev.Timestamp) ||
			!jsonEqual(got, want) || r["databricks_ingested_timestamp"] == nil {
			t.Fatalf("row %v differs from the event %+v", r, ev)
		}
	}
	for _, c := range tb.Columns {
		if (c.Name == "properties" || c.Name == "person_properties") && c.Type != "VARIANT" {
			t.Errorf("column %s is %s, want VARIANT (use_variant_type)", c.Name, c.Type)
		}
	}

	// (2) A personal access token, STRING properties, no schema evolution, files of 40
	// rows: one hour; a transient FAILED statement (the warehouse busy) is retried.
	fake.Inject(dbxfake.Fault{SQLPrefix: "COPY INTO", Failed: true, Code: "TEMPORARILY_UNAVAILABLE", Message: "The SQL warehouse is starting."})
	patID := e.createExportTo("databricks", "dbx-pat", config("events_pat",
		map[string]any{"access_token": pat, "use_variant_type": false, "use_automatic_schema_evolution": false, "rows_per_file": 40}))
	hour := end.Add(-time.Hour)
	backfill(patID, hour, end)
	r := e.waitAttempt(patID, 2)
	if r.Status != "Completed" || r.RecordsCompleted != e.countIn(hour, end) {
		t.Fatalf("run %+v, want Completed at attempt 2", r)
	}
	puts := 0
	for _, seen := range fake.Seen() {
		if strings.HasPrefix(seen, "PUT /api/2.0/fs/files/Volumes/main/analytics/sluice_staging/sluice/events_pat/") {
			puts++
		}
	}
	if want := 2 * int((e.countIn(hour, end)+39)/40); puts != want { // both attempts upload every file
		t.Errorf("%d files uploaded for events_pat, want %d (40 rows each, two attempts)", puts, want)
	}
	ptb := rows("events_pat")
	e.exactlyOnce(uuids(ptb), hour, end)
	if p, ok := ptb.Rows[0]["properties"].(string); !ok || !strings.HasPrefix(p, "{") {
		t.Errorf("properties %#v, want JSON text (use_variant_type false)", ptb.Rows[0]["properties"])
	}

	// (3) A SQL error fails the run at once with Databricks' message.
	fake.Inject(dbxfake.Fault{SQLPrefix: "MERGE", Failed: true, Code: dbxfake.TableNotFound.Code, Message: dbxfake.TableNotFound.Message})
	failing := e.createExportTo("databricks", "dbx-sql-error", config("events_failing", map[string]any{"access_token": pat}))
	backfill(failing, hour, end)
	rs = e.waitRuns(failing, "1 run", allFinished(1))
	if rs[0].Status != "Failed" || rs[0].Attempt != 1 || !strings.Contains(rs[0].LatestError, "TABLE_OR_VIEW_NOT_FOUND") {
		t.Fatalf("run %+v, want Failed at attempt 1 with the statement's error", rs[0])
	}

	// (4) Wrong credentials fail at attempt 1 with the server's message.
	for _, c := range []struct {
		name, want string
		auth       map[string]any
	}{
		{"dbx-bad-token", "Invalid access token.", map[string]any{"access_token": "dapi-wrong-token-000"}},
		{"dbx-bad-secret", "Client authentication failed", map[string]any{"client_id": clientID, "client_secret": "dose-wrong-secret-000"}},
	} {
		bad := e.createExportTo("databricks", c.name, config("denied", c.auth))
		backfill(bad, hour, end)
		rs := e.waitRuns(bad, "1 run", allFinished(1))
		if rs[0].Status != "Failed" || rs[0].Attempt != 1 || !strings.Contains(rs[0].LatestError, c.want) {
			t.Errorf("%s: run %+v, want Failed at attempt 1 with %q", c.name, rs[0], c.want)
		}
	}

	// Nothing staged is left: no file, no run directory, no stage table.
	if files := fake.Files(); len(files) != 0 {
		t.Errorf("staged files left: %v", files)
	}
	for _, d := range fake.Dirs() {
		if strings.Count(d, "/") > 6 { // /Volumes/c/s/v/sluice/<table>/<run>
			t.Errorf("run directory left: %s", d)
		}
	}
	for _, name := range fake.Tables() {
		if strings.Contains(name, "_sluice_stage_") {
			t.Errorf("stage table left: %s", name)
		}
	}

	// The secrets: in no API answer and no log line; at the fake, the client secret only in
	// token requests' bodies and the access token only in Authorization headers.
	secrets := []string{pat, clientSecret}
	for _, exp := range []string{id, patID, failing} {
		paths := []string{"/api/v1/batch_exports/" + exp, "/api/v1/batch_exports/" + exp + "/runs"}
		for _, run := range e.runs(exp) {
			paths = append(paths, "/api/v1/batch_exports/"+exp+"/runs/"+run.ID+"/logs?limit=500")
		}
		for _, p := range paths {
			b := toJSON(e.do("GET", p, nil, http.StatusOK))
			for _, s := range secrets {
				if strings.Contains(b, s) {
					t.Errorf("GET %s shows a secret: %s", p, b)
				}
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the host's log holds a secret")
		}
	}
	t.Logf("%d events in %s, %d in %s; %d requests, %d statements", len(tb.Rows), tb.Name, len(ptb.Rows), ptb.Name, fake.Requests(), len(fake.SQL()))
	for _, seen := range fake.Seen() {
		if strings.Contains(seen, clientSecret) && !strings.HasPrefix(seen, "POST /oidc/v1/token") {
			t.Errorf("the client secret reached the fake outside a token request: %.200s", seen)
		}
		if strings.Contains(seen, pat) && !strings.Contains(seen, "Authorization=Bearer "+pat) {
			t.Errorf("the access token reached the fake outside the Authorization header: %.200s", seen)
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
