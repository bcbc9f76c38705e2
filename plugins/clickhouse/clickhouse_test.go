package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	chdriver "github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/plugins/internal/sqlexport/sqltest"
	"github.com/sluicehq/sluice/sdk/sdktest"
)

// server is a ClickHouse server of the tests, with a fresh database sqldest_<n>.
type server struct {
	conn     chdriver.Conn
	database string
	protocol string
	params   map[string]string // the sql binding
}

// servers are the ClickHouse servers of the tests: ClickHouse 18.16 (native protocol,
// SLUICE_TEST_CLICKHOUSE_DSN) and chDB, a current engine behind a front that speaks the HTTP
// interface only (SLUICE_TEST_CHDB_DSN, sql.protocol http).
var servers = []struct{ name, env, protocol string }{
	{"clickhouse-18.16", "SLUICE_TEST_CLICKHOUSE_DSN", "native"},
	{"chdb", "SLUICE_TEST_CHDB_DSN", "http"},
}

// eachServer runs f on each server with a fresh database sqldest_<n>.
func eachServer(t *testing.T, f func(t *testing.T, s *server)) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) { f(t, connect(t, srv.env, srv.protocol)) })
	}
}

func connect(t *testing.T, env, protocol string) *server {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		t.Skip(env + " is not set (.ci/services.sh starts the servers)")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	opts := &ch.Options{Addr: []string{u.Host}}
	if protocol == "http" {
		opts.Protocol = ch.HTTP
	}
	conn, err := ch.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db := fmt.Sprintf("sqldest_%d", time.Now().UnixNano())
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		conn.Close()
	})
	return &server{conn: conn, database: db, protocol: protocol, params: map[string]string{"driver": "clickhouse",
		"host": u.Hostname(), "port": u.Port(), "database": db, "user": "default", "protocol": protocol}}
}

func (s *server) count(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	var n uint64
	if err := s.conn.QueryRow(context.Background(), strings.ReplaceAll(sql, "DB.", s.database+"."), args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return int64(n)
}

func (s *server) exec(t *testing.T, sql string) {
	t.Helper()
	if err := s.conn.Exec(context.Background(), strings.ReplaceAll(sql, "DB.", s.database+".")); err != nil {
		t.Fatal(err)
	}
}

// stages counts the database's stage tables.
func (s *server) stages(t *testing.T) int64 {
	return s.count(t, "SELECT count() FROM system.tables WHERE database = ? AND name LIKE 'sluice_stage_%'", s.database)
}

func exportConfig(table, engine string) map[string]any {
	return map[string]any{"driver": "clickhouse", "host": "127.0.0.1", "database": "x", "table_name": table, "engine": engine}
}

// TestConformance runs the conformance suite on ClickHouse 18.16: its runs land their 307
// rows and leave no stage table.
func TestConformance(t *testing.T) { eachServer(t, testConformance) }

func testConformance(t *testing.T, s *server) {
	e := sqltest.New(t, "clickhouse", s.params)
	rep := e.Conformance(exportConfig("conformance", EngineMergeTree))
	if !rep.OK() {
		t.Fatalf("conformance:\n%s\nlogs: %v", rep, rep.Logs)
	}
	if n := s.count(t, "SELECT count() FROM DB.conformance"); n != 307 {
		t.Errorf("the table holds %d rows, want 307 (run-1's 300, run-2's 7)\n%s", n, rep)
	}
	if n := s.stages(t); n != 0 {
		t.Errorf("%d stage tables left", n)
	}
}

// TestRetries: a run that fails after loading part of its stage writes nothing; its retry
// writes every row once; a retry after the move committed (its answer lost) and one after a
// partial move add only what is missing; a deliberate re-run (generation 1) writes again;
// ReplacingMergeTree keeps one row per uuid after OPTIMIZE FINAL.
func TestRetries(t *testing.T) { eachServer(t, testRetries) }

func testRetries(t *testing.T, s *server) {
	e := sqltest.New(t, "clickhouse", s.params)
	batches := [][]byte{sqltest.Events(0, 50), sqltest.Events(50, 50), sqltest.Events(100, 50)}
	for _, engine := range []string{EngineMergeTree, EngineReplacingMergeTree} {
		table := strings.ToLower(engine)
		cfg := exportConfig(table, engine)
		perUUID := func(want int64) {
			t.Helper()
			if n := s.count(t, "SELECT count() FROM DB."+table); n != 150*want {
				t.Errorf("%s: %d rows, want %d", engine, n, 150*want)
			}
			if n := s.count(t, "SELECT uniqExact(uuid) FROM DB."+table); n != 150 {
				t.Errorf("%s: %d distinct uuids, want 150", engine, n)
			}
		}
		if _, err := e.Run("run-a", 0, 1, cfg, batches, 2); !errors.Is(err, sqltest.ErrInjected) {
			t.Fatal(err)
		}
		if n := s.count(t, "SELECT count() FROM DB."+table); n != 0 {
			t.Fatalf("%s: a failed run left %d rows", engine, n)
		}
		if n := s.stages(t); n != 0 {
			t.Errorf("%s: the failed run left %d stage tables", engine, n)
		}
		res, err := e.Run("run-a", 0, 2, cfg, batches, -1)
		if err != nil || res.Records != 150 {
			t.Fatalf("%s: retry: %+v %v", engine, res, err)
		}
		perUUID(1)
		// The move committed but the run failed after it: the retry adds nothing.
		res, err = e.Run("run-a", 0, 3, cfg, batches, -1)
		if err != nil || res.Records != 150 {
			t.Fatalf("%s: retry after the move: %+v %v", engine, res, err)
		}
		perUUID(1)
		// A move cut short: only some of the run's rows are in the table.
		s.exec(t, "ALTER TABLE DB."+table+" DELETE WHERE distinct_id IN ('user-1', 'user-4')")
		waitMutations(t, s, table)
		if n := s.count(t, "SELECT count() FROM DB."+table); n >= 150 {
			t.Fatalf("%s: the delete left %d rows", engine, n)
		}
		res, err = e.Run("run-a", 0, 4, cfg, batches, -1)
		if err != nil || res.Records != 150 {
			t.Fatalf("%s: retry after a partial move: %+v %v", engine, res, err)
		}
		perUUID(1)
		// A deliberate re-run writes the rows again.
		res, err = e.Run("run-a", 1, 1, cfg, batches, -1)
		if err != nil || res.Records != 150 {
			t.Fatalf("%s: re-run: %+v %v", engine, res, err)
		}
		perUUID(2)
		if engine == EngineReplacingMergeTree {
			s.exec(t, "OPTIMIZE TABLE DB."+table+" FINAL")
			perUUID(1)
		}
		if n := s.stages(t); n != 0 {
			t.Errorf("%s: %d stage tables left", engine, n)
		}
	}
}

func waitMutations(t *testing.T, s *server, table string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if s.count(t, "SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0", s.database, table) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the mutation did not finish")
}

// TestValues reads the rows back: types, nulls and the load id.
func TestValues(t *testing.T) { eachServer(t, testValues) }

func testValues(t *testing.T, s *server) {
	e := sqltest.New(t, "clickhouse", s.params)
	if _, err := e.Run("run-v", 0, 1, exportConfig("events", EngineMergeTree), [][]byte{sqltest.Events(0, 2)}, -1); err != nil {
		t.Fatal(err)
	}
	rows, err := s.conn.Query(context.Background(), "SELECT toString(uuid), event, distinct_id, toString(person_id), team_id, "+
		"properties, person_properties, toString(timestamp), toString(created_at), toString(_inserted_at), _sluice_load_id, "+
		"toTypeName(timestamp) FROM "+s.database+".events ORDER BY uuid")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var u, ev, did, props, ts, ins, id, typ string
		var pid, pprops, created *string
		var team int64
		if err := rows.Scan(&u, &ev, &did, &pid, &team, &props, &pprops, &ts, &created, &ins, &id, &typ); err != nil {
			t.Fatal(err)
		}
		str := func(p *string) string {
			if p == nil {
				return "NULL"
			}
			return *p
		}
		got = append(got, strings.Join([]string{u, ev, did, str(pid), fmt.Sprint(team), props, str(pprops), ts, str(created), ins, id, typ}, "|"))
	}
	// 18.16 has no DateTime64: seconds there, microseconds from 20.1 (chDB).
	want := []string{
		`00000000-0000-4000-8000-000000000000|$pageview|user-0|aa000000-0000-4000-8000-000000000000|1|{"$current_url":"https://example.com/0","n":0}|{"email":"u@example.com"}|2026-11-28 12:00:00|2026-11-28 12:00:00|2026-11-28 12:00:00|run-v/0|DateTime('UTC')`,
		`00000000-0000-4000-8000-000000000001|$pageview|user-1|NULL|1|{"$current_url":"https://example.com/1","n":1}|NULL|2026-11-28 12:00:01|NULL|2026-11-28 12:00:01|run-v/0|DateTime('UTC')`,
	}
	if s.protocol == "http" {
		want = []string{
			`00000000-0000-4000-8000-000000000000|$pageview|user-0|aa000000-0000-4000-8000-000000000000|1|{"$current_url":"https://example.com/0","n":0}|{"email":"u@example.com"}|2026-11-28 12:00:00.000000|2026-11-28 12:00:00.001123|2026-11-28 12:00:00.000000|run-v/0|DateTime64(6, 'UTC')`,
			`00000000-0000-4000-8000-000000000001|$pageview|user-1|NULL|1|{"$current_url":"https://example.com/1","n":1}|NULL|2026-11-28 12:00:01.000000|NULL|2026-11-28 12:00:01.000000|run-v/0|DateTime64(6, 'UTC')`,
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAuthentication: a wrong password fails with the server's message, classified fail.
func TestAuthentication(t *testing.T) {
	s := connect(t, "SLUICE_TEST_CLICKHOUSE_DSN", "native")
	params := map[string]string{}
	for k, v := range s.params {
		params[k] = v
	}
	params["password"] = "wrong-password-123"
	e := sqltest.New(t, "clickhouse", params)
	_, err := e.Run("run-x", 0, 1, exportConfig("events", EngineMergeTree), [][]byte{sqltest.Events(0, 1)}, -1)
	var pe *runtime.PluginError
	if !errors.As(err, &pe) || !strings.Contains(pe.Err.Message, "password") || strings.Contains(pe.Err.Message, "wrong-password-123") {
		t.Fatalf("error %v, want the server's authentication message without the password", err)
	}
	if c := e.Plugin.Classify(context.Background(), err, 1); c.Outcome != abi.OutcomeFail {
		t.Errorf("classified %+v, want fail (code %s)", c, pe.Err.Code)
	}
}

func TestValidate(t *testing.T) {
	h := sdktest.New()
	ok := map[string]any{"host": "127.0.0.1", "database": "analytics", "table_name": "events", "engine": "ReplacingMergeTree"}
	if err := h.Validate(ok); err != nil {
		t.Fatal(err)
	}
	for field, over := range map[string]map[string]any{
		"table_name": {"table_name": "a.b"},
		"engine":     {"engine": "Memory"},
	} {
		cfg := map[string]any{}
		for k, v := range ok {
			cfg[k] = v
		}
		for k, v := range over {
			cfg[k] = v
		}
		var ee *sdktest.ExportError
		if err := h.Validate(cfg); !errors.As(err, &ee) || ee.Err.Field != field {
			t.Errorf("%s: %v", field, err)
		}
	}
	cfg := map[string]any{"table_name": "sluice_stage_x"}
	var ee *sdktest.ExportError
	if err := h.Validate(cfg); !errors.As(err, &ee) || ee.Err.Field != "table_name" {
		t.Errorf("a stage table name: %v", err)
	}
}

// TestClassify: the server's code decides, before the host's status: a serialization
// failure retries although its call failed fatal_io; a connection fault retries; bad SQL
// fails although retryable_io.
func TestClassify(t *testing.T) {
	h := sdktest.New()
	for _, c := range []struct {
		e    abi.Error
		want string
	}{
		{abi.Error{Status: "fatal_io", Code: "40001"}, abi.OutcomeRetry},
		{abi.Error{Status: "fatal_io", Code: "connection"}, abi.OutcomeRetry},
		{abi.Error{Status: "retryable_io", Code: "42601"}, abi.OutcomeFail},
		{abi.Error{Status: "retryable_io", Code: "clickhouse_62"}, abi.OutcomeFail},
	} {
		if got, err := h.Classify(c.e, 1); err != nil || got.Outcome != c.want {
			t.Errorf("%+v: %+v %v, want %s", c.e, got, err, c.want)
		}
	}
}
