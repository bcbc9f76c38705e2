package main

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/sqlcap/pgtest"
	"github.com/sluicehq/sluice/plugins/internal/sqlexport/sqltest"
	"github.com/sluicehq/sluice/sdk/sdktest"
)

// testDB is this plugin's database on the shared server; each test has its own schema.
const testDB = "sqldest_redshift"

type server struct {
	conn   *pgx.Conn
	schema string
	params map[string]string
}

// postgres15 connects to SLUICE_TEST_POSTGRES_URL, makes sure testDB exists and creates a
// fresh schema with the two Redshift names PostgreSQL lacks, as a test shim: a domain SUPER
// over jsonb and JSON_PARSE(text) (the cast). They let properties_data_type super run here;
// they prove the statements' shape, not Redshift's SUPER semantics.
func postgres15(t *testing.T) *server {
	t.Helper()
	conn, u, schema := pgtest.Schema(t, testDB, "t")
	ctx := context.Background()
	for _, sql := range []string{
		"CREATE DOMAIN " + schema + ".super AS jsonb",
		"CREATE FUNCTION " + schema + ".json_parse(text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS 'SELECT $1::jsonb'"} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	return &server{conn: conn, schema: schema, params: map[string]string{"driver": "postgres", "host": u.Hostname(),
		"port": u.Port(), "database": testDB, "schema": schema, "user": u.User.Username(), "tls": "disable",
		"load_method": "insert"}} // the field's default: Redshift has no COPY FROM STDIN
}

func (s *server) count(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.conn.QueryRow(context.Background(), strings.ReplaceAll(sql, "S.", s.schema+"."), args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (s *server) stages(t *testing.T) int64 {
	return s.count(t, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'sluice_stage_%'", s.schema)
}

func insertConfig(table, props string) map[string]any {
	return map[string]any{"host": "127.0.0.1", "database": testDB, "user": "postgres", "table_name": table,
		"properties_data_type": props, "mode": ModeInsert}
}

// TestConformanceInsert runs the conformance suite in INSERT mode on PostgreSQL 15.
func TestConformanceInsert(t *testing.T) {
	s := postgres15(t)
	e := sqltest.New(t, "redshift", s.params)
	rep := e.Conformance(insertConfig("conformance", TypeVarchar))
	if !rep.OK() {
		t.Fatalf("conformance:\n%s\nlogs: %v", rep, rep.Logs)
	}
	if n := s.count(t, "SELECT count(*) FROM S.conformance"); n != 307 {
		t.Errorf("the table holds %d rows, want 307 (run-1's 300, run-2's 7)\n%s", n, rep)
	}
	if n := s.stages(t); n != 0 {
		t.Errorf("%d stage tables left", n)
	}
}

// TestRetriesInsert: a run that fails midway leaves nothing (its transaction is rolled
// back, stage and all); its retry writes every row once; a retry after the commit (its
// answer lost) writes nothing and still reports the rows; a deliberate re-run (generation 1)
// writes them again. For both property types.
func TestRetriesInsert(t *testing.T) {
	s := postgres15(t)
	e := sqltest.New(t, "redshift", s.params)
	batches := [][]byte{sqltest.Events(0, 50), sqltest.Events(50, 50), sqltest.Events(100, 50)}
	for _, props := range []string{TypeVarchar, TypeSuper} {
		table := "events_" + props
		cfg := insertConfig(table, props)
		perUUID := func(want int64) {
			t.Helper()
			if n := s.count(t, "SELECT count(*) FROM S."+table); n != 150*want {
				t.Errorf("%s: %d rows, want %d", props, n, 150*want)
			}
			if n := s.count(t, "SELECT count(DISTINCT uuid) FROM S."+table); n != 150 {
				t.Errorf("%s: %d distinct uuids, want 150", props, n)
			}
		}
		if _, err := e.Run("run-a", 0, 1, cfg, batches, 2); !errors.Is(err, sqltest.ErrInjected) {
			t.Fatal(err)
		}
		if n := s.count(t, "SELECT count(*) FROM S."+table); n != 0 {
			t.Fatalf("%s: a failed run left %d rows", props, n)
		}
		if n := s.stages(t); n != 0 {
			t.Errorf("%s: the failed run left %d stage tables", props, n)
		}
		for attempt := 2; attempt <= 3; attempt++ {
			res, err := e.Run("run-a", 0, attempt, cfg, batches, -1)
			if err != nil || res.Records != 150 {
				t.Fatalf("%s: attempt %d: %+v %v", props, attempt, res, err)
			}
			perUUID(1)
		}
		res, err := e.Run("run-a", 1, 1, cfg, batches, -1)
		if err != nil || res.Records != 150 {
			t.Fatalf("%s: re-run: %+v %v", props, res, err)
		}
		perUUID(2)
		if n := s.stages(t); n != 0 {
			t.Errorf("%s: %d stage tables left", props, n)
		}
	}
	// SUPER (the shim's jsonb) holds parsed objects, varchar the text.
	var typ, n string
	if err := s.conn.QueryRow(context.Background(), "SELECT jsonb_typeof(properties), properties->>'n' FROM "+s.schema+
		".events_super WHERE uuid = '00000000-0000-4000-8000-000000000007' LIMIT 1").Scan(&typ, &n); err != nil || typ != "object" || n != "7" {
		t.Errorf("super properties: %s %s %v", typ, n, err)
	}
}

// TestValuesInsert reads a row back: PostHog's columns and Redshift-compatible types.
func TestValuesInsert(t *testing.T) {
	s := postgres15(t)
	e := sqltest.New(t, "redshift", s.params)
	if _, err := e.Run("run-v", 0, 1, insertConfig("events", TypeVarchar), [][]byte{sqltest.Events(0, 2)}, -1); err != nil {
		t.Fatal(err)
	}
	rows, err := s.conn.Query(context.Background(), "SELECT uuid, event, distinct_id, coalesce(person_id, 'NULL'), team_id, properties, "+
		"coalesce(person_properties, 'NULL'), timestamp, created_at, _inserted_at, _sluice_load_id FROM "+s.schema+".events ORDER BY uuid")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var u, ev, did, pid, props, pprops, id string
		var team int64
		var ts, ins time.Time
		var created *time.Time
		if err := rows.Scan(&u, &ev, &did, &pid, &team, &props, &pprops, &ts, &created, &ins, &id); err != nil {
			t.Fatal(err)
		}
		c := "NULL"
		if created != nil {
			c = created.UTC().Format(time.RFC3339Nano)
		}
		got = append(got, strings.Join([]string{u, ev, did, pid, strconv.FormatInt(team, 10), props, pprops,
			ts.UTC().Format(time.RFC3339Nano), c, ins.UTC().Format(time.RFC3339Nano), id}, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`00000000-0000-4000-8000-000000000000|$pageview|user-0|aa000000-0000-4000-8000-000000000000|1|{"$current_url":"https://example.com/0","n":0}|{"email":"u@example.com"}|2026-11-28T12:00:00Z|2026-11-28T12:00:00.001123Z|2026-11-28T12:00:00Z|run-v/0`,
		`00000000-0000-4000-8000-000000000001|$pageview|user-1|NULL|1|{"$current_url":"https://example.com/1","n":1}|NULL|2026-11-28T12:00:01Z|NULL|2026-11-28T12:00:01Z|run-v/0`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAuthentication: a private server with password authentication refuses a wrong
// password; the run fails with the server's message, classified fail.
func TestAuthentication(t *testing.T) {
	srv := pgtest.Start(t)
	params := map[string]string{"driver": "postgres", "host": srv.Host, "port": strconv.Itoa(srv.Port), "database": "postgres",
		"user": "postgres", "password": "wrong-password-123", "tls": "disable"}
	e := sqltest.New(t, "redshift", params)
	_, err := e.Run("run-x", 0, 1, insertConfig("events", TypeVarchar), [][]byte{sqltest.Events(0, 1)}, -1)
	var pe *runtime.PluginError
	if !errors.As(err, &pe) || !strings.Contains(pe.Err.Message, "password authentication failed") ||
		strings.Contains(pe.Err.Message, "wrong-password-123") {
		t.Fatalf("error %v, want the server's authentication message without the password", err)
	}
	if c := e.Plugin.Classify(context.Background(), err, 1); c.Outcome != abi.OutcomeFail {
		t.Errorf("classified %+v, want fail (code %s)", c, pe.Err.Code)
	}
}

func TestValidate(t *testing.T) {
	h := sdktest.New()
	base := func() map[string]any {
		return map[string]any{"host": "example-cluster.local", "database": "dev", "user": "loader", "table_name": "events"}
	}
	if err := h.Validate(base()); err != nil {
		t.Fatal(err)
	}
	copyCfg := base()
	copyCfg["mode"] = ModeCopy
	copyCfg["copy_bucket_name"] = "my-bucket"
	copyCfg["copy_iam_role"] = "arn:aws:iam::123456789012:role/redshift-load"
	if err := h.Validate(copyCfg, "bucket_aws_access_key_id", "bucket_aws_secret_access_key"); err != nil {
		t.Fatal(err)
	}
	keys := base()
	keys["mode"] = ModeCopy
	keys["copy_bucket_name"] = "my-bucket"
	if err := h.Validate(keys, "bucket_aws_access_key_id", "bucket_aws_secret_access_key",
		"copy_aws_access_key_id", "copy_aws_secret_access_key"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field   string
		over    map[string]any
		secrets []string
	}{
		{"table_name", map[string]any{"table_name": "x;y"}, nil},
		{"properties_data_type", map[string]any{"properties_data_type": "json"}, nil},
		{"mode", map[string]any{"mode": "MERGE"}, nil},
		{"copy_bucket_name", map[string]any{"mode": ModeCopy}, nil},
		{"copy_iam_role", map[string]any{"mode": ModeCopy, "copy_bucket_name": "my-bucket"},
			[]string{"bucket_aws_access_key_id", "bucket_aws_secret_access_key"}},
		{"copy_iam_role", map[string]any{"mode": ModeCopy, "copy_bucket_name": "my-bucket", "copy_iam_role": "role"}, nil},
		{"copy_aws_secret_access_key", map[string]any{"mode": ModeCopy, "copy_bucket_name": "my-bucket"},
			[]string{"copy_aws_access_key_id", "bucket_aws_access_key_id", "bucket_aws_secret_access_key"}},
		{"bucket_aws_access_key_id", map[string]any{"mode": ModeCopy, "copy_bucket_name": "my-bucket",
			"copy_iam_role": "arn:aws:iam::123456789012:role/r"}, nil},
		{"copy_prefix", map[string]any{"mode": ModeCopy, "copy_bucket_name": "my-bucket", "copy_prefix": "a/../b"}, nil},
	}
	for _, c := range cases {
		cfg := base()
		for k, v := range c.over {
			cfg[k] = v
		}
		var ee *sdktest.ExportError
		if err := h.Validate(cfg, c.secrets...); !errors.As(err, &ee) || ee.Err.Field != c.field {
			t.Errorf("%s %v: %v", c.field, c.over, err)
		}
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
