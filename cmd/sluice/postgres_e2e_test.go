package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/host/sqlcap/pgtest"
)

// TestPostgresDestinationEndToEnd exports from a real `sluice serve` through the postgres
// plugin (capability sql) into a private PostgreSQL 15 with password authentication: 3
// hourly backfill runs land every source event exactly once, one of them retried after a
// trigger killed its connection (pg_terminate_backend) in the middle of the move; a
// deliberate re-run of an interval leaves one copy; a wrong password fails at attempt 1
// with the server's message; the password appears in no API answer and no log.
func TestPostgresDestinationEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server and a real sluice serve")
	}
	root, _ := filepath.Abs("../..")
	if _, err := os.Stat(filepath.Join(root, "bin/plugins/postgres.wasm")); err != nil {
		t.Fatalf("run `make plugins` first: %v", err)
	}
	srv := pgtest.Start(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE sqlcap_e2e"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	db, err := pgx.Connect(ctx, srv.URL("sqlcap_e2e"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	// The target exists (PostHog's columns) with a trigger that kills the inserting
	// connection once: the first run's move fails and is retried.
	if _, err := db.Exec(ctx, `CREATE TABLE events ("uuid" VARCHAR(200), "event" VARCHAR(200), "properties" JSONB,
		"elements" JSONB, "set" JSONB, "set_once" JSONB, "distinct_id" VARCHAR(200), "team_id" INTEGER, "ip" VARCHAR(200),
		"site_url" VARCHAR(200), "timestamp" TIMESTAMP WITH TIME ZONE);
		CREATE SEQUENCE fault_seq;
		CREATE FUNCTION kill_once() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF nextval('fault_seq') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NULL; END $$;
		CREATE TRIGGER kill_once BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION kill_once()`); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	const events = 3000
	hour := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	if out, err := exec.Command(bin, "demo", "--data-dir", filepath.Join(dir, "a"), "--events", fmt.Sprint(events), "--span", "3h",
		"--end", hour.Format(time.RFC3339)).CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	a := startServe(t, bin, root, dir, "a", []string{"SLUICE_SQL_ALLOW_LOOPBACK=true"}, "--backfill-parallelism", "1")

	create := func(name, password string) string {
		var exp struct{ ID string }
		code, raw := a.call("POST", "/api/v1/batch_exports", map[string]any{"name": name, "interval": "hour",
			"destination": map[string]any{"type": "postgres", "config": map[string]any{"host": srv.Host, "port": srv.Port,
				"database": "sqlcap_e2e", "schema": "public", "table_name": "events", "user": "postgres", "password": password}}}, &exp)
		if code != 201 {
			t.Fatalf("create export: HTTP %d %s", code, raw)
		}
		if strings.Contains(string(raw), password) {
			t.Errorf("the create answer holds the password: %s", raw)
		}
		return exp.ID
	}
	backfill := func(id string, from time.Time) {
		if code, raw := a.call("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": from.Format(time.RFC3339), "end_at": hour.Format(time.RFC3339)}, nil); code != 201 {
			t.Fatalf("backfill: HTTP %d %s", code, raw)
		}
	}

	id := create("to-postgres", srv.Password)
	backfill(id, hour.Add(-3*time.Hour))
	var rs []e2eRun
	for _, r := range a.waitRuns(id, 3) {
		if !r.IntervalEnd.After(hour) {
			rs = append(rs, r)
		}
	}
	var total int64
	retried := 0
	for _, r := range rs {
		if r.Status != "Completed" {
			t.Fatalf("run %+v did not complete", r)
		}
		total += r.RecordsCompleted
		if r.Attempt > 1 {
			retried++
		}
	}
	if len(rs) != 3 || total != events || retried != 1 {
		t.Fatalf("%d runs exported %d records, %d retried; want 3 runs, %d records, 1 retried after the killed connection: %+v", len(rs), total, retried, events, rs)
	}
	src, _ := storedEvents(t, a.data)
	check := func(when string) {
		rows, err := db.Query(ctx, `SELECT replace("uuid", '-', ''), "event", "distinct_id", "properties"::text FROM events`)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]storedEvent{}
		n := 0
		for rows.Next() {
			var u string
			var e storedEvent
			if err := rows.Scan(&u, &e.event, &e.distinctID, &e.properties); err != nil {
				t.Fatal(err)
			}
			got[u] = e
			n++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if n != events || len(got) != events {
			t.Fatalf("%s: the table holds %d rows (%d distinct uuids), want %d", when, n, len(got), events)
		}
		for u, e := range src {
			g, ok := got[u]
			if !ok || g.event != e.event || g.distinctID != e.distinctID {
				t.Fatalf("%s: event %s: source %+v, table %+v (present %v)", when, u, e, g, ok)
			}
		}
	}
	check("after 3 hourly runs")

	// A deliberate re-run of one interval replaces its rows: still one copy of each event.
	if code, raw := a.call("POST", "/api/v1/batch_exports/"+id+"/runs/"+rs[0].ID+"/retry", nil, nil); code >= 300 {
		t.Fatalf("retry: HTTP %d %s", code, raw)
	}
	time.Sleep(500 * time.Millisecond)
	a.waitRuns(id, 3)
	check("after a re-run")

	// A wrong password fails at attempt 1 with the server's message.
	const wrong = "not-the-password-5c1d"
	bad := create("bad-password", wrong)
	backfill(bad, hour.Add(-time.Hour))
	br := a.waitRuns(bad, 1)
	if br[0].Status != "Failed" || br[0].Attempt != 1 || !strings.Contains(br[0].LatestError, `password authentication failed for user "postgres"`) ||
		!strings.Contains(br[0].LatestError, "28P01") {
		t.Errorf("wrong password: %+v, want Failed at attempt 1 with the server's message", br[0])
	}

	// The passwords are in no API answer and no log line.
	for _, path := range []string{"/api/v1/batch_exports/" + id, "/api/v1/batch_exports/" + bad, "/api/v1/batch_exports/" + id + "/logs",
		"/api/v1/batch_exports/" + bad + "/logs", "/api/v1/batch_exports/" + bad + "/runs", "/api/v1/batch_exports/" + id + "/runs"} {
		_, raw := a.call("GET", path, nil, nil)
		if strings.Contains(string(raw), srv.Password) || strings.Contains(string(raw), wrong) {
			t.Errorf("GET %s shows a password: %s", path, raw)
		}
	}
	if logs, _ := os.ReadFile(a.log); bytes.Contains(logs, []byte(srv.Password)) || bytes.Contains(logs, []byte(wrong)) {
		t.Errorf("the serve log holds a password")
	}
	t.Logf("%d events in PostgreSQL exactly once over 3 runs (one retried after a killed connection) and a re-run", events)
}
