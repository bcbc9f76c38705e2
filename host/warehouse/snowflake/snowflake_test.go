package snowflake_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/warehouse/snowflake"
	"github.com/sluicehq/sluice/host/warehouse/snowflake/sffake"
)

const (
	db     = "ANALYTICS"
	schema = "PUBLIC"
)

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
)

func rsaKey(t *testing.T) *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey
}

func env(t *testing.T) {
	t.Helper()
	// Never let the driver probe cloud metadata endpoints; no OCSP against the fake.
	t.Setenv("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
	t.Setenv("SF_OCSP_RESPONSE_CACHE_SERVER_ENABLED", "false")
}

func baseConfig(f *sffake.Server) snowflake.Config {
	return snowflake.Config{Account: "testaccount", User: "sluice", Password: "pw", Database: "analytics",
		Schema: "public", Warehouse: "WH", Role: "LOADER", Endpoint: f.URL, DisableOCSPChecks: true,
		LoginTimeout: 5 * time.Second, MaxRetryCount: 1, QueryTimeout: 20 * time.Second}
}

func setup(t *testing.T, mod func(*snowflake.Config), opts ...func(*sffake.Options)) (*sffake.Server, *snowflake.Capability) {
	t.Helper()
	env(t)
	o := sffake.Options{Account: "testaccount", User: "sluice", Password: "pw", Schemas: []string{db + "." + schema}}
	for _, fn := range opts {
		fn(&o)
	}
	f := sffake.New(o)
	t.Cleanup(f.Close)
	cfg := baseConfig(f)
	cfg.TempDir = t.TempDir()
	if mod != nil {
		mod(&cfg)
	}
	c, err := snowflake.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return f, c
}

func call(t *testing.T, c *snowflake.Capability, req map[string]any) (map[string]any, error) {
	t.Helper()
	b, _ := json.Marshal(req)
	out, err := c.Call(context.Background(), b)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m, nil
}

func status(err error) (abi.Status, string) {
	var e *snowflake.Error
	if errors.As(err, &e) {
		return e.Status, e.Code
	}
	return abi.StatusOK, ""
}

const createSQL = `CREATE TABLE IF NOT EXISTS "ANALYTICS"."PUBLIC"."events" (uuid STRING, event STRING, properties VARIANT, ` +
	`elements VARIANT, people_set VARIANT, people_set_once VARIANT, distinct_id STRING, team_id INTEGER, ip STRING, ` +
	`site_url STRING, timestamp TIMESTAMP) COMMENT = 'PostHog generated events table'`

func copySQL(files ...string) string {
	q := `COPY INTO "ANALYTICS"."PUBLIC"."events" (uuid, event, properties, elements, people_set, people_set_once, distinct_id, team_id, ip, site_url, timestamp) ` +
		`FROM (SELECT $1:uuid, $1:event, $1:properties, $1:elements_chain, $1:properties:"$set", $1:properties:"$set_once", ` +
		`$1:distinct_id, $1:team_id, $1:properties:"$ip", '', $1:timestamp FROM '@%"events"/sluice/run-1/') `
	if len(files) > 0 {
		q += "FILES = ('" + strings.Join(files, "', '") + "') "
	}
	return q + "FILE_FORMAT = (TYPE = 'JSON') PURGE = TRUE"
}

func jsonlGz(t *testing.T, n int) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for i := range n {
		fmt.Fprintf(zw, `{"uuid":"00000000-0000-0000-0000-%012d","event":"$pageview","distinct_id":"d%d","team_id":7,`+
			`"properties":{"$ip":"10.0.0.%d","$set":{"email":"a%d@x"}},"elements_chain":"div","timestamp":"2026-11-28T12:00:%02d.000000Z"}`+"\n",
			i, i, i, i, i%60)
	}
	zw.Close()
	return buf.Bytes()
}

func stage(t *testing.T, c *snowflake.Capability, key string, body []byte) runtime.ObjectInfo {
	t.Helper()
	u, err := c.Sink().Create(context.Background(), key, runtime.ObjectOptions{Options: map[string]any{"table": "events"}})
	if err != nil {
		t.Fatal(err)
	}
	for len(body) > 0 {
		n := min(len(body), 1000)
		if _, err := u.Write(body[:n]); err != nil {
			t.Fatal(err)
		}
		body = body[n:]
	}
	info, err := u.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestStageAndCopy drives the PostHog flow through the capability: create the table, PUT a
// file into its stage, COPY it, and check that a second COPY of the same re-staged file
// loads nothing (load metadata).
func TestStageAndCopy(t *testing.T) {
	f, c := setup(t, nil)
	if r, err := call(t, c, map[string]any{"op": "execute", "sql": createSQL}); err != nil || r["kind"] != "CREATE_TABLE" {
		t.Fatalf("%v %v", r, err)
	}
	body := jsonlGz(t, 5)
	info := stage(t, c, "sluice/run-1/part-00000.jsonl.gz", body)
	if info.Bytes != int64(len(body)) || info.Key != "@%events/sluice/run-1/part-00000.jsonl.gz" || len(info.ETag) != 32 {
		t.Fatalf("info %+v", info)
	}
	staged, err := f.StagedFile(db, schema, "events", "sluice/run-1/part-00000.jsonl.gz")
	if err != nil || !bytes.Equal(staged, body) {
		t.Fatalf("staged file differs: %v", err)
	}
	r, err := call(t, c, map[string]any{"op": "execute", "sql": copySQL("part-00000.jsonl.gz")})
	if err != nil {
		t.Fatal(err)
	}
	if r["kind"] != "COPY" || r["rows_loaded"] != float64(5) || len(r["files"].([]any)) != 1 {
		t.Fatalf("copy %v", r)
	}
	tb, _ := f.Table(db, schema, "events")
	if len(tb.Rows) != 5 {
		t.Fatalf("rows %d", len(tb.Rows))
	}
	row := tb.Rows[3]
	if row["UUID"] != "00000000-0000-0000-0000-000000000003" || row["IP"] != "10.0.0.3" || row["TEAM_ID"] != int64(7) ||
		row["SITE_URL"] != "" || fmt.Sprint(row["PEOPLE_SET"]) != "map[email:a3@x]" || row["ELEMENTS"] != "div" ||
		!row["TIMESTAMP"].(time.Time).Equal(time.Date(2026, 11, 28, 12, 0, 3, 0, time.UTC)) {
		t.Fatalf("row %v", row)
	}
	if files := f.StagedFiles(db, schema, "events"); len(files) != 0 {
		t.Fatalf("PURGE left %v", files)
	}
	// A retried attempt stages the same file again and copies: nothing is loaded twice.
	stage(t, c, "sluice/run-1/part-00000.jsonl.gz", body)
	r, err = call(t, c, map[string]any{"op": "execute", "sql": copySQL("part-00000.jsonl.gz")})
	if err != nil || r["rows_loaded"] != nil && r["rows_loaded"] != float64(0) {
		t.Fatalf("%v %v", r, err)
	}
	tb, _ = f.Table(db, schema, "events")
	if len(tb.Rows) != 5 {
		t.Fatalf("double load: %d rows", len(tb.Rows))
	}
	var kinds []string
	for _, s := range f.SQL() {
		kinds = append(kinds, strings.Fields(s)[0])
	}
	if got := strings.Join(kinds, ","); got != "CREATE,PUT,COPY,PUT,COPY" {
		t.Fatalf("statements %s", got)
	}
	put := f.SQL()[1]
	if !strings.Contains(put, `'@"ANALYTICS"."PUBLIC".%"events"/sluice/run-1'`) || !strings.Contains(put, "OVERWRITE=TRUE") ||
		!strings.Contains(put, "AUTO_COMPRESS=FALSE") {
		t.Fatalf("put %s", put)
	}
	if got := f.Logins(); len(got) == 0 || got[0] != "SNOWFLAKE" {
		t.Fatalf("logins %v", got)
	}
}

func TestBindings(t *testing.T) {
	f, c := setup(t, nil)
	if _, err := call(t, c, map[string]any{"op": "execute", "sql": createSQL}); err != nil {
		t.Fatal(err)
	}
	_, err := call(t, c, map[string]any{"op": "execute", "sql": `MERGE INTO "events" t USING (SELECT ? AS uuid, ? AS team_id) s ON t.uuid = s.uuid WHEN NOT MATCHED THEN INSERT (uuid, team_id) VALUES (s.uuid, s.team_id)`,
		"params": []any{"u-1", 7, true, nil}})
	if err != nil {
		t.Fatal(err)
	}
	st := f.Statements()
	last := st[len(st)-1]
	if len(last.Bindings) != 4 || last.Bindings[0].Type != "TEXT" || last.Bindings[0].Value != "u-1" ||
		last.Bindings[1].Type != "FIXED" || last.Bindings[1].Value != "7" || last.Bindings[2].Type != "BOOLEAN" {
		t.Fatalf("bindings %+v", last.Bindings)
	}
	if _, err := call(t, c, map[string]any{"op": "execute", "sql": createSQL, "params": []any{map[string]any{"x": 1}}}); err == nil {
		t.Fatal("object parameter accepted")
	}
}

func TestPolicy(t *testing.T) {
	f, c := setup(t, nil)
	denied := []string{
		"SELECT * FROM events",
		"DELETE FROM events",
		"UPDATE events SET event = 'x'",
		"TRUNCATE TABLE events",
		"ALTER TABLE events ADD COLUMN x STRING",
		"GRANT SELECT ON events TO ROLE public",
		"CALL proc()",
		"PUT 'file:///etc/passwd' @%events",
		"GET @%events file:///tmp/",
		"CREATE TABLE events (x STRING)",
		"CREATE OR REPLACE TABLE events (x STRING)",
		"DROP TABLE events",
		"DROP TABLE IF EXISTS other.PUBLIC.stage_x",
		"CREATE TABLE IF NOT EXISTS other_db.public.events (x STRING)",
		"CREATE TABLE IF NOT EXISTS private.events (x STRING)",
		`CREATE TABLE IF NOT EXISTS "analytics"."secret"."events" (x STRING)`,
		"CREATE TABLE IF NOT EXISTS events2 CLONE other_db.public.t",
		"CREATE TABLE IF NOT EXISTS events2 AS SELECT * FROM secret.t",
		"COPY INTO @%events FROM (SELECT * FROM events)",
		"COPY INTO 's3://bucket/x' FROM events",
		"COPY INTO events FROM 's3://bucket/data/' CREDENTIALS = (AWS_KEY_ID = 'x')",
		"COPY INTO events FROM 's3://bucket/data/'",
		"COPY INTO events FROM @my_external_stage/x",
		"COPY INTO events FROM @~/x",
		"COPY INTO events FROM @other_db.public.%events/x",
		"COPY INTO events FROM (SELECT $1 FROM @secret.%t)",
		"COPY INTO events FROM @%events STORAGE_INTEGRATION = s3int",
		"MERGE INTO events t USING other_db.public.src s ON t.uuid = s.uuid WHEN MATCHED THEN DELETE",
		"MERGE INTO events t USING (SELECT * FROM secret.src) s ON t.uuid = s.uuid WHEN MATCHED THEN DELETE",
		"INSERT INTO events SELECT * FROM TABLE(RESULT_SCAN(LAST_QUERY_ID()))",
		"INSERT INTO events SELECT * FROM IDENTIFIER('other.public.t')",
		"INSERT INTO events SELECT SYSTEM$WHITELIST()",
		"INSERT INTO events SELECT * FROM stage_x, secret.t",
		"INSERT OVERWRITE INTO events SELECT * FROM stage_x",
		"USE DATABASE other",
		"USE SCHEMA analytics.private",
		"USE WAREHOUSE big_wh",
		"USE ROLE accountadmin",
		"USE SECONDARY ROLES ALL",
		"CREATE TABLE IF NOT EXISTS events (x STRING); DROP TABLE events",
		"REMOVE @~/x",
		"SHOW TABLES",
	}
	for _, q := range denied {
		_, err := call(t, c, map[string]any{"op": "execute", "sql": q})
		if st, _ := status(err); st != abi.StatusDenied {
			t.Errorf("not denied: %s: %v", q, err)
		}
	}
	if len(f.Statements()) != 0 {
		t.Fatalf("a denied statement reached Snowflake: %v", f.SQL())
	}
	allowed := []string{
		createSQL,
		"CREATE TABLE IF NOT EXISTS analytics.public.t2 (x STRING) -- FROM other.t",
		"CREATE TRANSIENT TABLE stage_events_1 (x STRING)",
		"CREATE OR REPLACE TABLE public.stage_events_2 (x STRING)",
		`DROP TABLE IF EXISTS "ANALYTICS"."PUBLIC"."stage_events_1"`,
		"USE WAREHOUSE wh",
		"USE ROLE loader",
		"USE SCHEMA analytics.public",
		`USE DATABASE "ANALYTICS"`,
		copySQL(),
		"COPY INTO events (uuid) FROM (SELECT $1:uuid FROM @%events/sluice/x) FILE_FORMAT = (TYPE = PARQUET)",
		"MERGE INTO events t USING (SELECT $1 FROM stage_x) s ON t.uuid = s.uuid WHEN NOT MATCHED THEN INSERT (uuid) VALUES (s.uuid)",
		`REMOVE '@%"events"/sluice/run-1/'`,
		`REMOVE @"ANALYTICS"."PUBLIC".%"events"/sluice`,
	}
	for _, q := range allowed {
		_, err := call(t, c, map[string]any{"op": "execute", "sql": q})
		if st, _ := status(err); st == abi.StatusDenied || st == abi.StatusBadArgument {
			t.Errorf("denied: %s: %v", q, err)
		}
	}
}

func TestKeyPairLogin(t *testing.T) {
	key := rsaKey(t)
	pemKey, err := snowflake.EncryptPKCS8(key, "s3cret", []byte("saltsalt"), bytes.Repeat([]byte{7}, 16))
	if err != nil {
		t.Fatal(err)
	}
	f, c := setup(t, func(cfg *snowflake.Config) {
		cfg.AuthType, cfg.Password = snowflake.AuthKeyPair, ""
		cfg.PrivateKeyPEM, cfg.PrivateKeyPassphrase = pemKey, "s3cret"
	}, func(o *sffake.Options) { o.Password, o.PublicKey = "", &key.PublicKey })
	r, err := call(t, c, map[string]any{"op": "check_access"})
	if err != nil || r["database"] != "ANALYTICS" || r["warehouse"] != "WH" {
		t.Fatalf("%v %v", r, err)
	}
	if got := f.Logins(); len(got) != 1 || got[0] != "SNOWFLAKE_JWT" {
		t.Fatalf("logins %v", got)
	}
	// Another key: the fake rejects the JWT like Snowflake (390144), not retryable.
	other, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(other)
	_, c2 := setup(t, func(cfg *snowflake.Config) {
		cfg.AuthType, cfg.PrivateKeyPEM = snowflake.AuthKeyPair, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}, func(o *sffake.Options) { o.PublicKey = &key.PublicKey })
	_, err = call(t, c2, map[string]any{"op": "check_access"})
	if st, code := status(err); st != abi.StatusFatalIO || code != "390144" {
		t.Fatalf("wrong key: %v %v %v", st, code, err)
	}
	// PKCS#1 and wrong passphrases.
	p1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if k, err := snowflake.ParsePrivateKey(p1, ""); err != nil || !k.Equal(key) {
		t.Fatalf("pkcs1: %v", err)
	}
	if k, err := snowflake.ParsePrivateKey(pemKey, "s3cret"); err != nil || !k.Equal(key) {
		t.Fatalf("pkcs8 encrypted: %v", err)
	}
	escaped := strings.ReplaceAll(string(pemKey), "\n", `\n`)
	if _, err := snowflake.ParsePrivateKey([]byte(escaped), "s3cret"); err != nil {
		t.Fatalf("escaped newlines: %v", err)
	}
	for _, bad := range []struct {
		pem, pass string
	}{{string(pemKey), "wrong"}, {string(pemKey), ""}, {"not a key", ""}, {"", ""}} {
		_, err := snowflake.New(context.Background(), snowflake.Config{Account: "a", User: "u", Database: "d", Schema: "s",
			AuthType: snowflake.AuthKeyPair, PrivateKeyPEM: []byte(bad.pem), PrivateKeyPassphrase: bad.pass})
		if st, code := status(err); st != abi.StatusFatalIO || code != "invalid_private_key" {
			t.Errorf("key %.20q pass %q: %v", bad.pem, bad.pass, err)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		name   string
		inject func(f *sffake.Server)
		op     map[string]any
		status abi.Status
		code   string
	}{
		{"warehouse suspended", func(f *sffake.Server) { f.FailStatement("CREATE TABLE", 1, sffake.WarehouseSuspended) },
			map[string]any{"op": "execute", "sql": createSQL}, abi.StatusRetryableIO, "000608"},
		{"object does not exist", func(f *sffake.Server) { f.FailStatement("COPY", 1, sffake.ObjectNotFound) },
			map[string]any{"op": "execute", "sql": copySQL()}, abi.StatusFatalIO, "002003"},
		{"table missing (evaluated)", func(f *sffake.Server) {},
			map[string]any{"op": "execute", "sql": copySQL()}, abi.StatusFatalIO, "002003"},
		{"invalid identifier", func(f *sffake.Server) { f.FailStatement("CREATE", 1, sffake.InvalidIdentifier) },
			map[string]any{"op": "execute", "sql": createSQL}, abi.StatusFatalIO, "000904"},
		{"authentication", func(f *sffake.Server) { f.FailLogin(1, sffake.AuthFailure) },
			map[string]any{"op": "check_access"}, abi.StatusFatalIO, "390100"},
		{"statement cancelled by Snowflake", func(f *sffake.Server) {
			f.FailStatement("CREATE", 1, sffake.Fault{Code: "000604", SQLState: "57014", Message: "SQL execution canceled"})
		}, map[string]any{"op": "execute", "sql": createSQL}, abi.StatusRetryableIO, "000604"},
		{"internal error by sql state", func(f *sffake.Server) {
			f.FailStatement("CREATE", 1, sffake.Fault{Code: "000603", SQLState: "XX000", Message: "SQL execution internal error"})
		}, map[string]any{"op": "execute", "sql": createSQL}, abi.StatusRetryableIO, "000603"},
		{"HTTP 503", func(f *sffake.Server) { f.FailStatement("CREATE", 5, sffake.Fault{HTTPStatus: 503}) },
			map[string]any{"op": "execute", "sql": createSQL}, abi.StatusRetryableIO, ""},
		{"bad request op", func(f *sffake.Server) {}, map[string]any{"op": "nope"}, abi.StatusUnimplemented, ""},
		{"bad table", func(f *sffake.Server) {}, map[string]any{"op": "table_info", "table": "a.b"}, abi.StatusBadArgument, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, c := setup(t, nil)
			tc.inject(f)
			_, err := call(t, c, tc.op)
			st, code := status(err)
			if st != tc.status || (tc.code != "" && code != tc.code) {
				t.Fatalf("got %v %q (%v), want %v %q", st, code, err, tc.status, tc.code)
			}
			if tc.code != "" && !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("message lost Snowflake's code: %v", err)
			}
		})
	}
}

func TestCheckAccessAndTableInfo(t *testing.T) {
	_, c := setup(t, nil)
	r, err := call(t, c, map[string]any{"op": "check_access"})
	if err != nil || r["database"] != "ANALYTICS" || r["schema"] != "PUBLIC" || r["role"] != "LOADER" {
		t.Fatalf("%v %v", r, err)
	}
	if r, err := call(t, c, map[string]any{"op": "table_info", "table": "events"}); err != nil || r["exists"] != false {
		t.Fatalf("%v %v", r, err)
	}
	if _, err := call(t, c, map[string]any{"op": "execute", "sql": createSQL}); err != nil {
		t.Fatal(err)
	}
	if r, err := call(t, c, map[string]any{"op": "table_info", "table": "events"}); err != nil || r["exists"] != true {
		t.Fatalf("%v %v", r, err)
	}
	// A schema the role cannot see: 002003, fatal.
	_, c2 := setup(t, func(cfg *snowflake.Config) { cfg.Schema = "missing" })
	_, err = call(t, c2, map[string]any{"op": "check_access"})
	if st, code := status(err); st != abi.StatusFatalIO || code != "002003" {
		t.Fatalf("missing schema: %v", err)
	}
}

// TestCancel checks that a cancelled context aborts the running statement (abort-request)
// and that the query timeout is reported as a retryable statement timeout.
func TestCancel(t *testing.T) {
	f, c := setup(t, func(cfg *snowflake.Config) { cfg.QueryTimeout = 20 * time.Second })
	if _, err := call(t, c, map[string]any{"op": "check_access"}); err != nil { // log in first
		t.Fatal(err)
	}
	f.FailStatement("CREATE", 1, sffake.Fault{Delay: 30 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	b, _ := json.Marshal(map[string]any{"op": "execute", "sql": createSQL})
	_, err := c.Call(ctx, b)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 10*time.Second {
		t.Fatalf("cancel: %v after %v", err, time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(f.Aborts()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := f.Statements()
	if ab := f.Aborts(); len(ab) == 0 || ab[0] != st[len(st)-1].RequestID {
		t.Fatalf("aborts %v, statements %+v", ab, st)
	}

	// The capability's query timeout aborts the statement: Snowflake's statement timeout,
	// retryable.
	f3, c3 := setup(t, func(cfg *snowflake.Config) { cfg.QueryTimeout = 400 * time.Millisecond })
	f3.FailStatement("CREATE", 1, sffake.Fault{Delay: 30 * time.Second})
	_, err = call(t, c3, map[string]any{"op": "execute", "sql": createSQL})
	if st, code := status(err); st != abi.StatusRetryableIO || code != "000630" {
		t.Fatalf("timeout: %v", err)
	}
}

func TestSinkValidation(t *testing.T) {
	_, c := setup(t, nil)
	ctx := context.Background()
	for _, key := range []string{"", "/abs", "a/../b", "a//b", "dir/", "a b", "x'y", strings.Repeat("a", 1100)} {
		if _, err := c.Sink().Create(ctx, key, runtime.ObjectOptions{Options: map[string]any{"table": "events"}}); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
	for _, opts := range []map[string]any{{}, {"table": "a.b"}, {"table": "events", "overwrite": "yes"},
		{"table": "events", "source_compression": "LZMA"}} {
		if _, err := c.Sink().Create(ctx, "f.jsonl", runtime.ObjectOptions{Options: opts}); err == nil {
			t.Errorf("options %v accepted", opts)
		}
	}
	// PUT into the stage of a table that does not exist: Snowflake's 002003.
	u, err := c.Sink().Create(ctx, "x/f.jsonl", runtime.ObjectOptions{Options: map[string]any{"table": "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("{}\n"))
	if _, err := u.Commit(ctx); err == nil {
		t.Fatal("PUT into a missing table's stage succeeded")
	} else if st, code := status(err); st != abi.StatusFatalIO || code != "002003" {
		t.Fatalf("%v", err)
	}
	// Abort leaves nothing behind.
	u, _ = c.Sink().Create(ctx, "x/g.jsonl", runtime.ObjectOptions{Options: map[string]any{"table": "events"}})
	u.Write([]byte("{}\n"))
	if err := u.Abort(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFromBindings(t *testing.T) {
	cfg, err := snowflake.FromBindings(map[string]string{"account": "org-acct", "user": "u", "database": "d", "schema": "s",
		"warehouse": "wh", "role": "r", "password": "p"})
	if err != nil || cfg.AuthType != snowflake.AuthPassword || cfg.Password != "p" || cfg.Warehouse != "wh" {
		t.Fatalf("%+v %v", cfg, err)
	}
	cfg, err = snowflake.FromBindings(map[string]string{"account": "a", "user": "u", "database": "d", "schema": "s",
		"authentication_type": "keypair", "private_key": "PEM", "private_key_passphrase": "x", "query_timeout_seconds": "90"})
	if err != nil || cfg.AuthType != snowflake.AuthKeyPair || string(cfg.PrivateKeyPEM) != "PEM" || cfg.QueryTimeout != 90*time.Second {
		t.Fatalf("%+v %v", cfg, err)
	}
	for _, bad := range []map[string]string{
		{"user": "u", "database": "d", "schema": "s", "password": "p"},
		{"account": "a", "user": "u", "database": "d", "schema": "s"},
		{"account": "a", "user": "u", "database": "d", "schema": "s", "authentication_type": "keypair"},
		{"account": "a", "user": "u", "database": "d", "schema": "s", "authentication_type": "oauth", "password": "p"},
	} {
		if _, err := snowflake.FromBindings(bad); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}
