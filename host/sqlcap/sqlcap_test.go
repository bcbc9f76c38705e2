package sqlcap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/sqlcap/pgtest"
)

const testDB = "sqlcap_unit"

// pgParams binds the shared test server (SLUICE_TEST_POSTGRES_URL) to a fresh schema of the
// database sqlcap_unit; it returns the params and a superuser connection to that database.
func pgParams(t testing.TB) (map[string]string, *pgx.Conn) {
	t.Helper()
	raw := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if raw == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (.ci/services.sh starts the server)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+testDB); err != nil && !strings.Contains(err.Error(), "42P04") {
		t.Fatal(err)
	}
	admin.Close(ctx)
	u.Path = "/" + testDB
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	schema := fmt.Sprintf("sqlcap_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	return map[string]string{"driver": "postgres", "host": u.Hostname(), "port": u.Port(), "database": testDB,
		"schema": schema, "user": u.User.Username(), "tls": "disable"}, conn
}

func testPools(t *testing.T) *Pools {
	ps := NewPools(Config{AllowLoopback: true})
	t.Cleanup(ps.Close)
	return ps
}

func bind(t *testing.T, ps *Pools, params map[string]string) *Binding {
	t.Helper()
	b, err := Bind(ps, params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// call runs one request and decodes the answer into out (nil: ignored).
func call(t testing.TB, b *Binding, req any, batch []byte, out any) error {
	t.Helper()
	raw, _ := json.Marshal(req)
	doc, err := b.Call(context.Background(), raw, batch)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(doc, out); err != nil {
			t.Fatalf("answer %s: %v", doc, err)
		}
	}
	return nil
}

func mustCall(t *testing.T, b *Binding, req any, batch []byte, out any) {
	t.Helper()
	if err := call(t, b, req, batch, out); err != nil {
		t.Fatalf("%+v: %v", req, err)
	}
}

// capErr asserts err is a CapabilityError with status st whose message contains msg.
func capErr(t *testing.T, err error, st abi.Status, code, msg string) {
	t.Helper()
	var ce *runtime.CapabilityError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a %s capability error", err, st)
	}
	if ce.Status != st || (code != "" && ce.Code != code) || !strings.Contains(ce.Error(), msg) {
		t.Fatalf("got %s code %q: %v; want %s code %q containing %q", ce.Status, ce.Code, ce, st, code, msg)
	}
}

var testUUIDs = [][16]byte{
	{0x01, 0x8f, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1},
	{0x01, 0x8f, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 2},
	{0x01, 0x8f, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 3},
}

// eventBatch builds an event batch of n rows (n <= 3).
func eventBatch(n int) []byte {
	w := abi.NewBatchWriter(abi.EventColumns, nil)
	ts := time.Date(2026, 12, 3, 10, 0, 0, 123456000, time.UTC)
	for i := range n {
		w.AppendUUID(testUUIDs[i])
		w.AppendString(fmt.Sprintf("event_%d", i))
		w.AppendString("d" + fmt.Sprint(i))
		if i == 0 {
			w.AppendNull()
		} else {
			w.AppendUUID(testUUIDs[0])
		}
		w.AppendInt(7)
		w.AppendString(fmt.Sprintf(`{"$ip":"10.0.0.%d","n":%d}`, i, i))
		w.AppendNull()
		w.AppendString("")
		w.AppendTime(ts.Add(time.Duration(i) * time.Hour))
		w.AppendNull()
		w.AppendTime(ts)
		w.EndRow()
	}
	return w.Bytes()
}

var loadCols = []abi.ColumnSelect{{Name: "uuid"}, {Name: "event"}, {Name: "person_id"}, {Name: "team_id"},
	{Name: "properties", As: "props"}, {Name: "timestamp", As: "ts"}, {Name: "distinct_id", As: "did_text"}}

const pgTable = `CREATE TABLE IF NOT EXISTS events (uuid uuid, event varchar(200), person_id uuid, team_id integer,
	props jsonb, ts timestamptz, did_text text)`

func TestPostgresStatementsLoadAndTransactions(t *testing.T) {
	params, _ := pgParams(t)
	b := bind(t, testPools(t), params)
	var ex abi.SQLExecResult
	mustCall(t, b, abi.SQLRequest{Op: "exec", SQL: pgTable}, nil, &ex)

	var ld abi.SQLLoadResult
	mustCall(t, b, abi.SQLRequest{Op: "load", Batch: 1, Table: "events", Columns: loadCols}, eventBatch(3), &ld)
	if ld.Rows != 3 {
		t.Fatalf("load: %d rows", ld.Rows)
	}
	var q abi.SQLQueryResult
	mustCall(t, b, abi.SQLRequest{Op: "query", SQL: `SELECT uuid, event, person_id, team_id, props, ts, props->>'$ip' AS ip
		FROM events WHERE ts >= $1 ORDER BY ts`, Args: []any{"2026-12-03T10:30:00Z"}}, nil, &q)
	want := `{"columns":["uuid","event","person_id","team_id","props","ts","ip"],"rows":[` +
		`["018f0000-0000-7000-8000-000000000002","event_1","018f0000-0000-7000-8000-000000000001",7,{"$ip":"10.0.0.1","n":1},"2026-12-03T11:00:00.123456Z","10.0.0.1"],` +
		`["018f0000-0000-7000-8000-000000000003","event_2","018f0000-0000-7000-8000-000000000001",7,{"$ip":"10.0.0.2","n":2},"2026-12-03T12:00:00.123456Z","10.0.0.2"]],"truncated":false}`
	if got, _ := json.Marshal(q); string(got) != want {
		t.Fatalf("query:\n got %s\nwant %s", got, want)
	}
	mustCall(t, b, abi.SQLRequest{Op: "query", SQL: `SELECT person_id FROM events WHERE event = $1`, Args: []any{"event_0"}}, nil, &q)
	if len(q.Rows) != 1 || q.Rows[0][0] != nil {
		t.Fatalf("null person_id: %+v", q.Rows)
	}

	// A range; then a transaction rolled back, one committed, one left open at Close.
	mustCall(t, b, abi.SQLRequest{Op: "exec", SQL: "DELETE FROM events"}, nil, &ex)
	if ex.RowsAffected != 3 {
		t.Fatalf("delete: %d rows affected", ex.RowsAffected)
	}
	mustCall(t, b, abi.SQLRequest{Op: "load", Batch: 1, Table: "events", Columns: loadCols, Start: 1, Count: 1}, eventBatch(3), &ld)
	mustCall(t, b, abi.SQLRequest{Op: "begin"}, nil, nil)
	if err := call(t, b, abi.SQLRequest{Op: "begin"}, nil, nil); err == nil {
		t.Fatal("a second begin was accepted")
	}
	mustCall(t, b, abi.SQLRequest{Op: "load", Batch: 1, Table: "events", Columns: loadCols}, eventBatch(3), &ld)
	mustCall(t, b, abi.SQLRequest{Op: "rollback"}, nil, nil)
	count := func() int64 {
		var q abi.SQLQueryResult
		mustCall(t, b, abi.SQLRequest{Op: "query", SQL: "SELECT count(*) FROM events"}, nil, &q)
		return int64(q.Rows[0][0].(float64))
	}
	if n := count(); n != 1 {
		t.Fatalf("after the range and a rollback: %d rows, want 1", n)
	}
	mustCall(t, b, abi.SQLRequest{Op: "begin"}, nil, nil)
	mustCall(t, b, abi.SQLRequest{Op: "exec", SQL: "CREATE UNLOGGED TABLE sluice_stage_t (LIKE events)"}, nil, nil)
	mustCall(t, b, abi.SQLRequest{Op: "load", Batch: 1, Table: "sluice_stage_t", Columns: loadCols, Count: 2}, eventBatch(3), &ld)
	mustCall(t, b, abi.SQLRequest{Op: "exec", SQL: "INSERT INTO events SELECT * FROM sluice_stage_t"}, nil, &ex)
	mustCall(t, b, abi.SQLRequest{Op: "exec", SQL: "DROP TABLE sluice_stage_t"}, nil, nil)
	mustCall(t, b, abi.SQLRequest{Op: "commit"}, nil, nil)
	if n := count(); n != 3 {
		t.Fatalf("after a commit: %d rows, want 3", n)
	}
	mustCall(t, b, abi.SQLRequest{Op: "begin"}, nil, nil)
	mustCall(t, b, abi.SQLRequest{Op: "exec", SQL: "DELETE FROM events"}, nil, nil)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := bind(t, b.pools, params)
	mustCall(t, b2, abi.SQLRequest{Op: "query", SQL: "SELECT count(*) FROM events"}, nil, &q)
	if q.Rows[0][0].(float64) != 3 {
		t.Fatalf("a transaction left open at Close was not rolled back: %v rows", q.Rows[0][0])
	}
	// max_rows truncates.
	mustCall(t, b2, abi.SQLRequest{Op: "query", SQL: "SELECT uuid FROM events", MaxRows: 2}, nil, &q)
	if len(q.Rows) != 2 || !q.Truncated {
		t.Fatalf("max_rows 2: %d rows truncated=%v", len(q.Rows), q.Truncated)
	}
}

func TestPostgresRefusalsAndErrors(t *testing.T) {
	params, admin := pgParams(t)
	ps := testPools(t)
	b := bind(t, ps, params)
	mustCall(t, b, abi.SQLRequest{Op: "exec", SQL: pgTable}, nil, nil)
	cases := []struct {
		req       abi.SQLRequest
		batch     []byte
		st        abi.Status
		code, msg string
	}{
		{abi.SQLRequest{Op: "exec", SQL: "SELECT pg_read_file('/etc/passwd')"}, nil, abi.StatusDenied, "policy", "function pg_read_file(...) is not allowed"},
		{abi.SQLRequest{Op: "exec", SQL: "DROP TABLE events"}, nil, abi.StatusDenied, "policy", "only allowed on the plugin's stage tables"},
		{abi.SQLRequest{Op: "query", SQL: "SELECT * FROM public.x"}, nil, abi.StatusDenied, "policy", `schema "public" is outside the bound schema`},
		{abi.SQLRequest{Op: "exec", SQL: "SELECT * FROM missing"}, nil, abi.StatusFatalIO, "42P01", `relation "missing" does not exist`},
		{abi.SQLRequest{Op: "exec", SQL: "INSERT INTO events (team_id) VALUES ($1)", Args: []any{"x"}}, nil, abi.StatusFatalIO, "", "x"},
		{abi.SQLRequest{Op: "frobnicate"}, nil, abi.StatusUnimplemented, "", `unknown operation "frobnicate"`},
		{abi.SQLRequest{Op: "commit"}, nil, abi.StatusBadArgument, "", "commit without an open transaction"},
		{abi.SQLRequest{Op: "load", Batch: 1, Table: "events", Columns: []abi.ColumnSelect{{Name: "team_id", As: "uuid"}}}, eventBatch(1), abi.StatusBadArgument, "", `int64 cannot be loaded into a uuid column`},
		{abi.SQLRequest{Op: "load", Batch: 1, Table: "events", Columns: []abi.ColumnSelect{{Name: "nope"}}}, eventBatch(1), abi.StatusBadArgument, "", `the run has no column "nope"`},
		{abi.SQLRequest{Op: "load", Batch: 1, Table: "events", Columns: loadCols, Start: 1, Count: 5}, eventBatch(2), abi.StatusBadArgument, "", "rows [1, 6) outside the batch's 2 rows"},
		{abi.SQLRequest{Op: "load", Batch: 1, Table: "other.events", Columns: loadCols}, eventBatch(1), abi.StatusBadArgument, "", "invalid table name"},
		{abi.SQLRequest{Op: "load", Batch: 1, Table: "pg_class", Columns: loadCols}, eventBatch(1), abi.StatusDenied, "", "pg_* tables are not allowed"},
		{abi.SQLRequest{Op: "load", Table: "events", Columns: loadCols}, nil, abi.StatusBadArgument, "", "needs the current batch"},
		// A batch with bytes after its last row is malformed (SPEC 8): nothing is loaded.
		{abi.SQLRequest{Op: "load", Batch: 1, Table: "events", Columns: loadCols}, append(eventBatch(2), 0), abi.StatusBadArgument, "", "trailing bytes"},
	}
	for _, c := range cases {
		err := call(t, b, c.req, c.batch, nil)
		capErr(t, err, c.st, c.code, c.msg)
	}

	// A connection killed inside a transaction: retryable, with the server's code.
	mustCall(t, b, abi.SQLRequest{Op: "begin"}, nil, nil)
	mustCall(t, b, abi.SQLRequest{Op: "exec", SQL: "DELETE FROM events"}, nil, nil)
	if _, err := admin.Exec(context.Background(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = $1 AND state LIKE 'idle in transaction%'", testDB); err != nil {
		t.Fatal(err)
	}
	err := call(t, b, abi.SQLRequest{Op: "exec", SQL: "DELETE FROM events"}, nil, nil)
	var ce *runtime.CapabilityError
	if !errors.As(err, &ce) || ce.Status != abi.StatusRetryableIO {
		t.Fatalf("after pg_terminate_backend: %v, want retryable_io", err)
	}
	if retry, known := abi.SQLCodeRetryable(ce.Code); !retry || !known {
		t.Fatalf("after pg_terminate_backend: code %q is not a known retryable code (%v)", ce.Code, err)
	}

	// A loopback database refused by default.
	strict := NewPools(Config{})
	t.Cleanup(strict.Close)
	bs := bind(t, strict, params)
	capErr(t, call(t, bs, abi.SQLRequest{Op: "query", SQL: "SELECT 1"}, nil, nil), abi.StatusDenied, "", "SLUICE_SQL_ALLOW_LOOPBACK=true")
}

func TestPostgresWrongPassword(t *testing.T) {
	srv := pgtest.Start(t)
	ps := testPools(t)
	params := map[string]string{"driver": "postgres", "host": srv.Host, "port": fmt.Sprint(srv.Port), "database": "postgres",
		"user": "postgres", "password": "wrong-" + srv.Password, "tls": "disable"}
	b := bind(t, ps, params)
	err := call(t, b, abi.SQLRequest{Op: "query", SQL: "SELECT 1"}, nil, nil)
	capErr(t, err, abi.StatusFatalIO, "28P01", `password authentication failed for user "postgres"`)
	if strings.Contains(err.Error(), srv.Password) {
		t.Fatalf("the error names the password: %v", err)
	}
	params["password"] = srv.Password
	ok := bind(t, ps, params)
	var q abi.SQLQueryResult
	mustCall(t, ok, abi.SQLRequest{Op: "query", SQL: "SELECT 1 AS one"}, nil, &q)
	if len(q.Rows) != 1 || q.Rows[0][0].(float64) != 1 {
		t.Fatalf("right password: %+v", q)
	}
}

func TestBindings(t *testing.T) {
	ps := testPools(t)
	base := func() map[string]string {
		return map[string]string{"driver": "postgres", "host": "127.0.0.1", "database": "d", "user": "u"}
	}
	cases := []struct {
		set  map[string]string
		want string
	}{
		{map[string]string{"dsn": "x"}, `unknown sql binding "sql.dsn"`},
		{map[string]string{"driver": "mysql"}, `sql.driver "mysql" is not supported`},
		{map[string]string{"driver": ""}, "binds no database driver"},
		{map[string]string{"host": ""}, "binds no database host (sql.host)"},
		{map[string]string{"database": ""}, "binds no database (sql.database)"},
		{map[string]string{"user": ""}, "binds no database user (sql.user)"},
		{map[string]string{"port": "70000"}, `sql.port "70000" is not a port number`},
		{map[string]string{"tls": "maybe"}, `sql.tls "maybe" is not supported`},
		{map[string]string{"schema": "pg_catalog"}, `sql.schema "pg_catalog" is a system schema`},
		{map[string]string{"has_self_signed_cert": "perhaps"}, "is not a boolean"},
		{map[string]string{"driver": "clickhouse", "schema": "x"}, "sql.schema is not used by the clickhouse driver"},
		{map[string]string{"driver": "clickhouse", "database": "system"}, `sql.database "system" is a system database`},
	}
	for _, c := range cases {
		p := base()
		for k, v := range c.set {
			p[k] = v
		}
		if _, err := Bind(ps, p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.set, err, c.want)
		}
	}
	p := base()
	p["has_self_signed_cert"] = "true"
	b, err := Bind(ps, p)
	if err != nil || b.s.tls != "require" || b.s.port != 5432 || b.s.schema != "public" {
		t.Fatalf("defaults: %+v %v", b, err)
	}
}
