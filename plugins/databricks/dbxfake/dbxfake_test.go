package dbxfake

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
)

type client struct {
	t    *testing.T
	f    *Fake
	auth string
}

func (c client) call(method, path, body string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.f.URL+path, strings.NewReader(body))
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if strings.HasPrefix(path, "/oidc/") {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (c client) sql(stmt string) map[string]any {
	c.t.Helper()
	b, _ := json.Marshal(map[string]string{"warehouse_id": "wh", "statement": stmt})
	code, out := c.call("POST", "/api/2.0/sql/statements", string(b))
	if code != 200 {
		c.t.Fatalf("%s: HTTP %d %v", stmt, code, out)
	}
	return out
}

func state(out map[string]any) (string, string) {
	st, _ := out["status"].(map[string]any)
	s, _ := st["state"].(string)
	e, _ := st["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return s, msg
}

func TestAuth(t *testing.T) {
	f := New(Options{Token: "pat-1", ClientID: "sp", ClientSecret: "sec"})
	defer f.Close()
	c := client{t: t, f: f}
	if code, out := c.call("POST", "/api/2.0/sql/statements", "{}"); code != 401 || out["error_code"] != "UNAUTHENTICATED" || out["message"] != "Invalid access token." {
		t.Fatalf("no token: %d %v", code, out)
	}
	if code, out := c.call("POST", "/oidc/v1/token", "grant_type=client_credentials&client_id=sp&client_secret=nope"); code != 401 || out["error"] != "invalid_client" {
		t.Fatalf("bad secret: %d %v", code, out)
	}
	for _, basic := range []bool{false, true} {
		body, auth := "grant_type=client_credentials&scope=all-apis&client_id=sp&client_secret=sec", ""
		if basic {
			body, auth = "grant_type=client_credentials&scope=all-apis", basicAuth("sp", "sec")
		}
		code, out := client{t: t, f: f, auth: auth}.call("POST", "/oidc/v1/token", body)
		tok, _ := out["access_token"].(string)
		if code != 200 || tok == "" {
			t.Fatalf("basic %v: %d %v", basic, code, out)
		}
		if s, msg := state(client{t: t, f: f, auth: "Bearer " + tok}.sql("SELECT 1")); s != "SUCCEEDED" {
			t.Fatalf("with the OAuth token: %s %s", s, msg)
		}
	}
}

func TestStatementsAndFiles(t *testing.T) {
	f := New(Options{Token: "pat-1", Polls: 2})
	defer f.Close()
	c := client{t: t, f: f, auth: "Bearer pat-1"}
	// A volume must exist before files go in.
	if code, out := c.call("PUT", "/api/2.0/fs/files/Volumes/main/s/v/a.parquet", "x"); code != 404 || out["error_code"] != "NOT_FOUND" {
		t.Fatalf("PUT without a volume: %d %v", code, out)
	}
	// Statements stay RUNNING for two polls, then run; a cancelled one never runs.
	out := c.sql("CREATE VOLUME IF NOT EXISTS main.s.v")
	if s, _ := state(out); s != "RUNNING" {
		t.Fatalf("state %s, want RUNNING", s)
	}
	id := out["statement_id"].(string)
	for i, want := range []string{"RUNNING", "SUCCEEDED"} {
		_, out = c.call("GET", "/api/2.0/sql/statements/"+id, "")
		if s, _ := state(out); s != want {
			t.Fatalf("poll %d: %s, want %s", i+1, s, want)
		}
	}
	id = c.sql("CREATE TABLE main.s.never (a STRING)")["statement_id"].(string)
	c.call("POST", "/api/2.0/sql/statements/"+id+"/cancel", "")
	if _, out = c.call("GET", "/api/2.0/sql/statements/"+id, ""); func() bool { s, _ := state(out); return s != "CANCELED" }() {
		t.Fatalf("cancelled statement: %v", out)
	}
	if _, ok := f.Table("main", "s", "never"); ok {
		t.Fatal("a cancelled CREATE TABLE ran")
	}
	// Files and directories.
	if code, _ := c.call("PUT", "/api/2.0/fs/files/Volumes/main/s/v/d/e/a.parquet", "x"); code != 204 {
		t.Fatalf("PUT: %d", code)
	}
	if code, out := c.call("PUT", "/api/2.0/fs/files/Volumes/main/s/v/d/e/a.parquet", "y"); code != 409 || out["error_code"] != "ALREADY_EXISTS" {
		t.Fatalf("PUT without overwrite: %d %v", code, out)
	}
	if code, out := c.call("DELETE", "/api/2.0/fs/directories/Volumes/main/s/v/d/e", ""); code != 400 || out["error_code"] != "DIRECTORY_NOT_EMPTY" {
		t.Fatalf("DELETE a full directory: %d %v", code, out)
	}
	if code, out := c.call("GET", "/api/2.0/fs/directories/Volumes/main/s/v/d/e", ""); code != 200 || len(out["contents"].([]any)) != 1 {
		t.Fatalf("list: %d %v", code, out)
	}
	for _, p := range []string{"/api/2.0/fs/files/Volumes/main/s/v/d/e/a.parquet", "/api/2.0/fs/directories/Volumes/main/s/v/d/e", "/api/2.0/fs/directories/Volumes/main/s/v/d"} {
		if code, out := c.call("DELETE", p, ""); code != 204 {
			t.Fatalf("DELETE %s: %d %v", p, code, out)
		}
	}
	if code, _ := c.call("DELETE", "/api/2.0/fs/files/Volumes/main/s/v/d/e/a.parquet", ""); code != 404 {
		t.Fatalf("DELETE twice: %d", code)
	}
}

func TestSQLRefusedAndFaults(t *testing.T) {
	f := New(Options{Token: "pat-1"})
	defer f.Close()
	c := client{t: t, f: f, auth: "Bearer pat-1"}
	for _, q := range []string{"SELECT * FROM main.s.t", "INSERT INTO main.s.t VALUES (1)", "CREATE TABLE t (a STRING)",
		"CREATE TABLE main.s.t (a VARCHAR(10))", "COPY INTO main.s.t FROM 's3://bucket/x' FILEFORMAT = CSV"} {
		if s, msg := state(c.sql(q)); s != "FAILED" || !strings.HasPrefix(msg, "[") {
			t.Errorf("%s: %s %q, want FAILED with an error class", q, s, msg)
		}
	}
	c.sql("CREATE TABLE main.s.t (`uuid` STRING)")
	if s, msg := state(c.sql("COPY INTO main.s.t FROM '/Volumes/main/s/v/none/' FILEFORMAT = PARQUET")); s != "FAILED" || !strings.Contains(msg, "PATH_NOT_FOUND") {
		t.Errorf("COPY from nothing: %s %s", s, msg)
	}
	// The second statement answers 503; then one ends FAILED; then all is well.
	f.Inject(Fault{PathPrefix: "/api/2.0/sql/statements", Skip: 1, Status: Unavailable.Status, Code: Unavailable.Code, Message: Unavailable.Message})
	f.Inject(Fault{SQLPrefix: "select count", Failed: true, Code: "TEMPORARILY_UNAVAILABLE", Message: "busy"})
	c.sql("SELECT 1")
	b, _ := json.Marshal(map[string]string{"warehouse_id": "wh", "statement": "SELECT 1"})
	if code, out := c.call("POST", "/api/2.0/sql/statements", string(b)); code != 503 || out["error_code"] != "TEMPORARILY_UNAVAILABLE" {
		t.Fatalf("injected 503: %d %v", code, out)
	}
	if s, msg := state(c.sql("SELECT COUNT(*) FROM main.s.t")); s != "FAILED" || msg != "busy" {
		t.Fatalf("injected FAILED: %s %s", s, msg)
	}
	out := c.sql("SELECT COUNT(*) FROM main.s.t")
	if s, _ := state(out); s != "SUCCEEDED" || !strings.Contains(toJSON(out["result"]), `[["0"]]`) {
		t.Fatalf("count: %v", out)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

// COPY INTO loads Parquet files written by the host's encoder: uuids cast to text load into
// STRING columns; the UUID logical type is refused as Databricks refuses it.
func TestCopyIntoParquet(t *testing.T) {
	f := New(Options{Token: "pat-1"})
	defer f.Close()
	c := client{t: t, f: f, auth: "Bearer pat-1"}
	c.sql("CREATE VOLUME main.s.v")
	c.sql("CREATE TABLE main.s.t (`uuid` STRING, `event` STRING, `timestamp` TIMESTAMP)")
	u := [16]byte{0x01, 0x92, 0xf3, 0xa4, 0xb5, 0xc6, 0x7d, 0xe8, 0x9f, 0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60}
	bw := abi.NewBatchWriter(abi.EventColumns, nil)
	bw.AppendEvent(&abi.Event{UUID: u, Event: "pageview", DistinctID: "d", Properties: "{}", Timestamp: time.Unix(1700000000, 0)})
	bw.EndRow()
	file := func(cast string) string {
		var buf bytes.Buffer
		enc, err := encode.New(&buf, abi.EncoderSpec{Format: "parquet", Columns: []abi.ColumnSelect{{Name: "uuid", Cast: cast},
			{Name: "event"}, {Name: "timestamp"}}}, abi.EventColumns)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enc.WriteBatch(bw.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	c.call("PUT", "/api/2.0/fs/files/Volumes/main/s/v/uuid/a.parquet", file(""))
	if s, msg := state(c.sql("COPY INTO main.s.t FROM '/Volumes/main/s/v/uuid/' FILEFORMAT = PARQUET")); s != "FAILED" || !strings.Contains(msg, "PARQUET_TYPE_ILLEGAL") {
		t.Fatalf("a UUID column: %s %s", s, msg)
	}
	c.call("PUT", "/api/2.0/fs/files/Volumes/main/s/v/text/a.parquet", file("string"))
	for range 2 { // the second COPY skips the loaded file
		if s, msg := state(c.sql("COPY INTO main.s.t FROM '/Volumes/main/s/v/text' FILEFORMAT = PARQUET")); s != "SUCCEEDED" {
			t.Fatalf("uuid as text: %s %s", s, msg)
		}
	}
	tb, _ := f.Table("MAIN", "s", "T")
	if len(tb.Rows) != 1 || tb.Rows[0]["uuid"] != "0192f3a4-b5c6-7de8-9f0a-1b2c3d4e5f60" || tb.Rows[0]["event"] != "pageview" ||
		!tb.Rows[0]["timestamp"].(time.Time).Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("rows %v", tb.Rows)
	}
}
