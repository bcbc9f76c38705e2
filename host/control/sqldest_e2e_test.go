package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/sqlcap"
	"github.com/sluicehq/sluice/host/sqlcap/pgtest"
	"github.com/sluicehq/sluice/internal/faultproxy"
)

// sqldestEnv is the API host with the sql capability allowed on loopback (the test servers).
func sqldestEnv(t *testing.T) *env {
	return newEnv(t, "", func(c *control.Config) { c.SQL = sqlcap.Config{AllowLoopback: true} })
}

// sqldestProxy puts a fault proxy in front of a test server (host:port).
func sqldestProxy(t *testing.T, upstream string) (*faultproxy.TCP, string, int) {
	t.Helper()
	p, err := faultproxy.ListenTCP(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	host, port, _ := net.SplitHostPort(p.Addr())
	n, _ := strconv.Atoi(port)
	return p, host, n
}

// sqldestBackfill backfills the three hours before t0 and waits for the runs.
func (e *env) sqldestBackfill(id string, hours int) []run {
	e.t.Helper()
	end := t0.Truncate(time.Hour)
	e.do("POST", "/api/v1/batch_exports/"+id+"/backfills", map[string]any{
		"start_at": end.Add(-time.Duration(hours) * time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
	return e.waitRuns(id, fmt.Sprintf("%d runs", hours), allFinished(hours))
}

// sqldestNoSecret fails the test if a secret appears in the export's API answers or in a
// run's log.
func (e *env) sqldestNoSecret(id, secret string) {
	e.t.Helper()
	check := func(what string, v any) {
		b, _ := json.Marshal(v)
		if strings.Contains(string(b), secret) {
			e.t.Fatalf("%s shows the secret: %s", what, b)
		}
	}
	check("the export", e.do("GET", "/api/v1/batch_exports/"+id, nil, http.StatusOK))
	check("the runs", e.do("GET", "/api/v1/batch_exports/"+id+"/runs?limit=500", nil, http.StatusOK))
	for _, r := range e.runs(id) {
		check("the run log", e.do("GET", "/api/v1/batch_exports/"+id+"/runs/"+r.ID+"/logs?limit=500", nil, http.StatusOK))
	}
}

// sqldestCompleted checks three Completed runs, exactly one of them retried, each reporting
// the source's count.
func (e *env) sqldestCompleted(rs []run) {
	e.t.Helper()
	retried := 0
	for _, r := range rs {
		if r.Status != "Completed" {
			e.t.Fatalf("run %+v", r)
		}
		if r.Attempt > 1 {
			retried++
		}
		if want := e.countIn(r.IntervalStart, r.IntervalEnd); r.RecordsCompleted != want {
			e.t.Errorf("run %s reports %d records, the source holds %d", r.IntervalStart, r.RecordsCompleted, want)
		}
	}
	if retried != 1 {
		e.t.Errorf("%d runs were retried, want 1 (the cut connection): %+v", retried, rs)
	}
}

// TestEndToEndClickHouseDestination drives the locked clickhouse plugin through the API
// against the real ClickHouse 18.16: a 3-hour backfill lands every source event exactly once
// although one run's move (INSERT ... SELECT) reaches the server and its answer is lost (the
// retry finds its rows and adds none); a wrong password fails the run at attempt 1 with
// ClickHouse's message; the password appears in no API answer or run log.
func TestEndToEndClickHouseDestination(t *testing.T) {
	dsn := os.Getenv("SLUICE_TEST_CLICKHOUSE_DSN")
	if dsn == "" {
		t.Skip("SLUICE_TEST_CLICKHOUSE_DSN is not set (.ci/services.sh starts ClickHouse)")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := ch.Open(&ch.Options{Addr: []string{u.Host}})
	if err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprintf("sqldest_e2e_%d", time.Now().UnixNano())
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		conn.Close()
	})
	proxy, host, port := sqldestProxy(t, u.Host)
	proxy.CutAfter([]byte("NOT IN (SELECT"), 1, 300*time.Millisecond)
	e := sqldestEnv(t)
	config := func(password string) map[string]any {
		c := map[string]any{"host": host, "port": port, "database": db, "table_name": "events", "engine": "MergeTree"}
		if password != "" {
			c["password"] = password
		}
		return c
	}
	id := e.createExportTo("clickhouse", "ch", config(""))
	rs := e.sqldestBackfill(id, 3)
	e.sqldestCompleted(rs)
	rows, err := conn.Query(ctx, "SELECT toString(uuid) FROM "+db+".events")
	if err != nil {
		t.Fatal(err)
	}
	var uuids []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		uuids = append(uuids, s)
	}
	rows.Close()
	end := t0.Truncate(time.Hour)
	e.exactlyOnce(uuids, end.Add(-3*time.Hour), end)
	var stages uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name LIKE 'sluice_stage_%'", db).Scan(&stages); err != nil || stages != 0 {
		t.Errorf("%d stage tables left (%v)", stages, err)
	}

	const password = "ch-secret-pass-42"
	denied := e.createExportTo("clickhouse", "ch-denied", config(password))
	rs = e.sqldestBackfill(denied, 1)
	if rs[0].Status != "Failed" || rs[0].Attempt != 1 || !strings.Contains(rs[0].LatestError, "password") {
		t.Fatalf("run %+v, want Failed at attempt 1 with ClickHouse's message", rs[0])
	}
	e.sqldestNoSecret(denied, password)
}

// TestEndToEndRedshiftInsert drives the locked redshift plugin in INSERT mode through the
// API against the real PostgreSQL 15 (Redshift speaks its protocol): a 3-hour backfill lands
// every source event exactly once although one run's COMMIT reaches the server and its
// answer is lost (the retry finds the committed rows and adds none, or redoes a rolled-back
// run); a wrong password (a private server with password authentication) fails the run at
// attempt 1 with the server's message; the password appears in no API answer or run log.
func TestEndToEndRedshiftInsert(t *testing.T) {
	raw := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if raw == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (.ci/services.sh starts PostgreSQL)")
	}
	conn, u, schema := sqldestPostgres(t, raw)
	ctx := context.Background()
	proxy, host, port := sqldestProxy(t, u.Host)
	proxy.CutAfter([]byte("commit\x00"), 1, 300*time.Millisecond)
	e := sqldestEnv(t)
	id := e.createExportTo("redshift", "rs", map[string]any{"host": host, "port": port, "database": u.Path[1:],
		"schema": schema, "user": u.User.Username(), "table_name": "events", "mode": "INSERT"})
	rs := e.sqldestBackfill(id, 3)
	e.sqldestCompleted(rs)
	rows, err := conn.Query(ctx, "SELECT uuid FROM "+schema+".events")
	if err != nil {
		t.Fatal(err)
	}
	uuids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	end := t0.Truncate(time.Hour)
	e.exactlyOnce(uuids, end.Add(-3*time.Hour), end)
	var stages int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'sluice_stage_%'", schema).Scan(&stages); err != nil || stages != 0 {
		t.Errorf("%d stage tables left (%v)", stages, err)
	}

	srv := pgtest.Start(t)
	const password = "rs-secret-pass-42"
	denied := e.createExportTo("redshift", "rs-denied", map[string]any{"host": srv.Host, "port": srv.Port,
		"database": "postgres", "user": "postgres", "password": password, "table_name": "events"})
	rs = e.sqldestBackfill(denied, 1)
	if rs[0].Status != "Failed" || rs[0].Attempt != 1 || !strings.Contains(rs[0].LatestError, "password authentication failed") {
		t.Fatalf("run %+v, want Failed at attempt 1 with the server's message", rs[0])
	}
	e.sqldestNoSecret(denied, password)
}

// sqldestPostgres makes sure the database sqldest_e2e exists on the shared server and gives
// the test a fresh schema in it.
func sqldestPostgres(t *testing.T, raw string) (*pgx.Conn, *url.URL, string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE sqldest_e2e"); err != nil && !strings.Contains(err.Error(), "42P04") {
		t.Fatal(err)
	}
	admin.Close(ctx)
	u.Path = "/sqldest_e2e"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	schema := fmt.Sprintf("e2e_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	return conn, u, schema
}
