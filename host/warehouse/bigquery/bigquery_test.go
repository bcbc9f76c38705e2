package bigquery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/warehouse/bigquery"
	"github.com/sluicehq/sluice/host/warehouse/bigquery/bqfake"
)

func TestMain(m *testing.M) {
	// Never let the client probe metadata servers or the network.
	os.Setenv("GCE_METADATA_HOST", "127.0.0.1:1")
	os.Setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1")
	os.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent")
	os.Exit(m.Run())
}

const (
	proj = "test-project"
	ds   = "analytics"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T, chunk int) (*bqfake.Server, *bigquery.Capability) {
	t.Helper()
	f := bqfake.New()
	t.Cleanup(f.Close)
	c, err := bigquery.New(context.Background(), bigquery.Config{ProjectID: proj, DatasetID: ds,
		Endpoint: f.Endpoint(), ChunkSize: chunk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return f, c
}

func call(t *testing.T, c *bigquery.Capability, req map[string]any) (map[string]any, error) {
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
	var e *bigquery.Error
	if errors.As(err, &e) {
		return e.Status, e.Code
	}
	return abi.StatusOK, ""
}

var finalSchema = []map[string]string{{"name": "uuid", "type": "STRING"}, {"name": "event", "type": "STRING"},
	{"name": "properties", "type": "STRING"}, {"name": "timestamp", "type": "TIMESTAMP"}}

func TestEnsureTable(t *testing.T) {
	f, c := setup(t, 0)
	r, err := call(t, c, map[string]any{"op": "ensure_table", "table": "events", "schema": finalSchema, "partition_field": "timestamp"})
	if err != nil || r["created"] != true {
		t.Fatalf("%v %v", r, err)
	}
	tb, ok := f.Table(proj, ds, "events")
	if !ok || len(tb.Meta.Schema.Fields) != 4 || tb.Meta.TimePartitioning.Type != "DAY" || tb.Meta.TimePartitioning.Field != "timestamp" {
		t.Fatalf("table %+v", tb)
	}
	more := append(finalSchema, map[string]string{"name": "ip", "type": "STRING", "mode": "REQUIRED"})
	r, err = call(t, c, map[string]any{"op": "ensure_table", "table": "events", "schema": more})
	if err != nil || r["created"] != false || fmt.Sprint(r["missing_columns"]) != "[ip]" {
		t.Fatalf("%v %v", r, err)
	}
	r, err = call(t, c, map[string]any{"op": "ensure_table", "table": "events", "schema": more, "add_missing_columns": true})
	if err != nil || fmt.Sprint(r["added_columns"]) != "[ip]" {
		t.Fatalf("%v %v", r, err)
	}
	tb, _ = f.Table(proj, ds, "events")
	if n := len(tb.Meta.Schema.Fields); n != 5 || tb.Meta.Schema.Fields[4].Mode == "REQUIRED" {
		t.Fatalf("schema after add: %+v", tb.Meta.Schema.Fields[4])
	}
	for _, bad := range []string{"other.events", "`x`", "a-b", ""} {
		_, err := call(t, c, map[string]any{"op": "ensure_table", "table": bad, "schema": finalSchema})
		if st, _ := status(err); st != abi.StatusBadArgument {
			t.Errorf("table %q: %v", bad, err)
		}
	}
}

func TestQueryPolicy(t *testing.T) {
	_, c := setup(t, 0)
	denied := []string{
		"DELETE FROM analytics.events WHERE true",
		"SELECT * FROM analytics.events",
		"INSERT INTO other.events SELECT * FROM analytics.stage_x",
		"INSERT INTO analytics.events SELECT * FROM other.stage_x",
		"INSERT INTO `other-project.analytics.events` SELECT * FROM analytics.stage_x",
		"INSERT INTO analytics.events SELECT * FROM analytics.stage_x; DROP TABLE analytics.events",
		"INSERT INTO analytics.events SELECT (SELECT MAX(x) FROM secret.t) FROM analytics.stage_x",
		"DROP TABLE analytics.events",
		"DROP SCHEMA analytics",
		"CREATE OR REPLACE TABLE analytics.events AS SELECT 1 AS x",
		"CREATE TABLE analytics.copy AS SELECT * FROM `p.other.t`",
		"CREATE TABLE analytics.c CLONE other.t",
		"EXPORT DATA OPTIONS(uri='gs://x/*') AS SELECT * FROM analytics.events",
		"INSERT INTO analytics.events SELECT * FROM EXTERNAL_QUERY('c', 'select 1')",
		"MERGE analytics.events T USING other.src S ON T.uuid = S.uuid WHEN NOT MATCHED THEN INSERT ROW",
		"CALL analytics.proc()",
		"INSERT INTO analytics.events SELECT * FROM analytics.stage_x, other.t",
		"INSERT INTO analytics.events SELECT * FROM analytics.stage_x AS s, `p.other.t` AS o",
		"INSERT INTO analytics.events SELECT * FROM analytics.stage_x s JOIN other.t o ON s.a = o.a",
	}
	for _, q := range denied {
		_, err := call(t, c, map[string]any{"op": "query", "sql": q})
		if st, _ := status(err); st != abi.StatusDenied {
			t.Errorf("not denied: %s: %v", q, err)
		}
	}
	// Allowed statements reach BigQuery (here: the fake, which has no such tables).
	allowed := []string{
		"INSERT INTO analytics.events (uuid) SELECT uuid FROM analytics.stage_x",
		"INSERT INTO `test-project.analytics.events` SELECT * FROM `test-project`.`analytics`.`stage_x` AS s",
		"MERGE INTO `analytics.events` T USING analytics.stage_x S ON T.uuid = S.uuid WHEN NOT MATCHED THEN INSERT ROW",
		"DROP TABLE IF EXISTS analytics.stage_events_1",
		"CREATE TABLE IF NOT EXISTS analytics.events2 (x STRING) -- FROM other.t",
		"INSERT INTO events SELECT * FROM stage_x WHERE event = 'FROM other.t'",
	}
	for _, q := range allowed {
		_, err := call(t, c, map[string]any{"op": "query", "sql": q})
		if st, _ := status(err); st == abi.StatusDenied || st == abi.StatusBadArgument {
			t.Errorf("denied: %s: %v", q, err)
		}
	}
}

// load runs one load through the sink.
func load(t *testing.T, c *bigquery.Capability, table string, opts map[string]any, body []byte) (runtime.ObjectInfo, error) {
	t.Helper()
	ctx := context.Background()
	u, err := c.Sink().Create(ctx, table, runtime.ObjectOptions{Options: opts})
	if err != nil {
		return runtime.ObjectInfo{}, err
	}
	for len(body) > 0 {
		n := min(len(body), 1000)
		if _, err := u.Write(body[:n]); err != nil {
			u.Abort(ctx)
			return runtime.ObjectInfo{}, err
		}
		body = body[n:]
	}
	return u.Commit(ctx)
}

var stageSchema = []any{map[string]any{"name": "uuid", "type": "STRING"}, map[string]any{"name": "event", "type": "STRING"},
	map[string]any{"name": "properties", "type": "JSON"}, map[string]any{"name": "timestamp", "type": "TIMESTAMP"}}

func ndjson(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"uuid":"u%d","event":"e","properties":{"$set":{"a":%d},"$ip":"1.2.3.4"},"timestamp":"2026-11-28T12:00:%02d.000000Z"}`+"\n", i, i, i%60)
	}
	return b.Bytes()
}

func TestLoadNDJSONMultipartAndNoDoubleLoad(t *testing.T) {
	f, c := setup(t, 0)
	f.AddDataset(proj, ds)
	opts := map[string]any{"format": "NEWLINE_DELIMITED_JSON", "job_id_prefix": "sluice_run1_a1", "write_disposition": "WRITE_TRUNCATE", "schema": stageSchema}
	info, err := load(t, c, "stage_events_1", opts, ndjson(3))
	if err != nil {
		t.Fatal(err)
	}
	if info.ETag != "sluice_run1_a1" || info.Key != "stage_events_1" {
		t.Fatalf("info %+v", info)
	}
	tb, _ := f.Table(proj, ds, "stage_events_1")
	if len(tb.Rows) != 3 || tb.Rows[1]["uuid"] != "u1" || tb.Rows[1]["properties"] != `{"$ip":"1.2.3.4","$set":{"a":1}}` ||
		!tb.Rows[2]["timestamp"].(time.Time).Equal(t0.Add(2*time.Second)) {
		t.Fatalf("rows %v", tb.Rows)
	}
	jobs := f.Jobs()
	if len(jobs) != 1 {
		t.Fatalf("jobs %d", len(jobs))
	}
	lc := jobs[0].Configuration.Load
	if lc.SourceFormat != "NEWLINE_DELIMITED_JSON" || lc.WriteDisposition != "WRITE_TRUNCATE" || jobs[0].JobReference.JobId != "sluice_run1_a1" ||
		lc.DestinationTable.TableId != "stage_events_1" || lc.DestinationTable.DatasetId != ds {
		t.Fatalf("load config %+v", lc)
	}
	if !strings.Contains(strings.Join(f.Requests(), "\n"), "uploadType=multipart") {
		t.Fatalf("requests %v", f.Requests())
	}
	// A retry with the same prefix finds the job and does not load again.
	info, err = load(t, c, "stage_events_1", opts, ndjson(3))
	if err != nil || info.ETag != "sluice_run1_a1" {
		t.Fatalf("%+v %v", info, err)
	}
	if n := len(f.Jobs()); n != 1 {
		t.Fatalf("retry loaded again: %d jobs", n)
	}
	// Append into a non-stage table: truncation is refused.
	opts["write_disposition"] = "WRITE_TRUNCATE"
	if _, err := load(t, c, "events", opts, ndjson(1)); err == nil {
		t.Fatal("WRITE_TRUNCATE on a final table was accepted")
	} else if st, _ := status(err); st != abi.StatusDenied {
		t.Fatalf("status %v", err)
	}
}

func TestFailedJobThenRetryUsesNextID(t *testing.T) {
	f, c := setup(t, 0)
	f.AddDataset(proj, ds)
	f.FailJobs("load", 1, bqfake.Fault{Reason: "backendError", Message: "Error encountered during execution. Retrying may solve the problem."})
	opts := map[string]any{"format": "NEWLINE_DELIMITED_JSON", "job_id_prefix": "p", "schema": stageSchema}
	_, err := load(t, c, "events", opts, ndjson(2))
	if st, code := status(err); st != abi.StatusRetryableIO || code != "backendError" || !strings.Contains(err.Error(), "Retrying may solve") {
		t.Fatalf("got %v (%v %v)", err, st, code)
	}
	info, err := load(t, c, "events", opts, ndjson(2))
	if err != nil || info.ETag != "p_2" {
		t.Fatalf("%+v %v", info, err)
	}
	tb, _ := f.Table(proj, ds, "events")
	if len(tb.Rows) != 2 {
		t.Fatalf("rows %d", len(tb.Rows))
	}
	r, err := call(t, c, map[string]any{"op": "job_status", "job_id": "p_2"})
	if err != nil || r["state"] != "DONE" || r["output_rows"] != float64(2) {
		t.Fatalf("%v %v", r, err)
	}
	r, err = call(t, c, map[string]any{"op": "job_status", "job_id": "p"})
	if err != nil || r["error"].(map[string]any)["reason"] != "backendError" {
		t.Fatalf("%v %v", r, err)
	}
}

func events(n int) []byte {
	w := abi.NewBatchWriter(abi.EventColumns, nil)
	for i := range n {
		e := abi.Event{Event: "pageview", DistinctID: fmt.Sprintf("d%d", i), TeamID: 7,
			Properties:    fmt.Sprintf(`{"$ip":"10.0.0.%d","$set":{"email":"a%d@x"},"$set_once":{"first":true},"pad":"%s"}`, i%250, i, strings.Repeat("x", 200)),
			ElementsChain: `a:nth-child="1"`, Timestamp: t0.Add(time.Duration(i) * time.Millisecond), InsertedAt: t0}
		e.UUID[0], e.UUID[15] = byte(i>>8), byte(i)
		w.AppendEvent(&e)
		w.EndRow()
	}
	return w.Bytes()
}

func TestParquetResumableInsertSelectDrop(t *testing.T) {
	f, c := setup(t, 256<<10)
	// Final table with JSON columns.
	final := []map[string]string{{"name": "uuid", "type": "STRING"}, {"name": "event", "type": "STRING"},
		{"name": "properties", "type": "JSON"}, {"name": "elements", "type": "STRING"}, {"name": "set", "type": "JSON"},
		{"name": "ip", "type": "STRING"}, {"name": "team_id", "type": "INTEGER"}, {"name": "timestamp", "type": "TIMESTAMP"},
		{"name": "bq_ingested_timestamp", "type": "TIMESTAMP"}}
	if _, err := call(t, c, map[string]any{"op": "ensure_table", "table": "events", "schema": final, "partition_field": "timestamp"}); err != nil {
		t.Fatal(err)
	}
	// Parquet from the host encoder, ~2000 events (> one 256 KiB chunk: resumable upload).
	var buf bytes.Buffer
	spec := abi.EncoderSpec{Format: "parquet", Columns: []abi.ColumnSelect{{Name: "uuid"}, {Name: "event"}, {Name: "team_id"},
		{Name: "properties"}, {Name: "elements_chain"}, {Name: "timestamp"}}}
	enc, err := encode.New(&buf, spec, abi.EventColumns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.WriteBatch(events(2000)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() < 300<<10 {
		t.Fatalf("parquet only %d bytes", buf.Len())
	}
	stageSchema := []any{map[string]any{"name": "uuid", "type": "BYTES"}, map[string]any{"name": "event", "type": "STRING"},
		map[string]any{"name": "team_id", "type": "INTEGER"}, map[string]any{"name": "properties", "type": "STRING"},
		map[string]any{"name": "elements_chain", "type": "STRING"}, map[string]any{"name": "timestamp", "type": "TIMESTAMP"}}
	if _, err := load(t, c, "stage_events_1", map[string]any{"format": "PARQUET", "job_id_prefix": "r1_stage", "write_disposition": "WRITE_TRUNCATE", "schema": stageSchema}, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(f.Requests(), "\n"), "uploadType=resumable") {
		t.Fatalf("requests %v", f.Requests())
	}
	sql := "INSERT INTO `test-project.analytics.events` (uuid, event, properties, elements, set, ip, team_id, timestamp, bq_ingested_timestamp) " +
		"SELECT REGEXP_REPLACE(TO_HEX(uuid), r'^(.{8})(.{4})(.{4})(.{4})(.{12})$', r'\\1-\\2-\\3-\\4-\\5'), event, PARSE_JSON(properties), " +
		"TO_JSON_STRING(elements_chain), JSON_QUERY(PARSE_JSON(properties), '$.\"$set\"'), JSON_VALUE(properties, '$.\"$ip\"'), team_id, timestamp, CURRENT_TIMESTAMP() " +
		"FROM `test-project.analytics.stage_events_1`"
	r, err := call(t, c, map[string]any{"op": "query", "sql": sql, "job_id_prefix": "r1_insert"})
	if err != nil || r["rows_affected"] != float64(2000) || r["statement_type"] != "INSERT" {
		t.Fatalf("%v %v", r, err)
	}
	// The insert is idempotent per prefix.
	r, err = call(t, c, map[string]any{"op": "query", "sql": sql, "job_id_prefix": "r1_insert"})
	if err != nil || r["existing"] != true {
		t.Fatalf("%v %v", r, err)
	}
	tb, _ := f.Table(proj, ds, "events")
	if len(tb.Rows) != 2000 {
		t.Fatalf("rows %d", len(tb.Rows))
	}
	row := tb.Rows[1]
	if row["uuid"] != "00000000-0000-0000-0000-000000000001" || row["set"] != `{"email":"a1@x"}` || row["ip"] != "10.0.0.1" ||
		row["elements"] != `"a:nth-child=\"1\""` || row["team_id"] != int64(7) || !row["timestamp"].(time.Time).Equal(t0.Add(time.Millisecond)) ||
		row["bq_ingested_timestamp"] == nil {
		t.Fatalf("row %v", row)
	}
	var jq *int
	for _, j := range f.Jobs() {
		if j.Configuration.Query != nil && j.Configuration.Query.DefaultDataset.DatasetId != ds {
			t.Fatalf("default dataset %+v", j.Configuration.Query.DefaultDataset)
		}
	}
	_ = jq
	if _, err := call(t, c, map[string]any{"op": "query", "sql": "DROP TABLE IF EXISTS `analytics.stage_events_1`"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Table(proj, ds, "stage_events_1"); ok {
		t.Fatal("stage not dropped")
	}
	if r, err := call(t, c, map[string]any{"op": "drop_table", "table": "stage_events_1"}); err != nil || r["dropped"] != false {
		t.Fatalf("%v %v", r, err)
	}
	if _, err := call(t, c, map[string]any{"op": "drop_table", "table": "events"}); err == nil {
		t.Fatal("dropping the final table was allowed")
	}
}

func TestErrorMapping(t *testing.T) {
	f, c := setup(t, 0)
	f.AddDataset(proj, ds)
	opts := map[string]any{"format": "NEWLINE_DELIMITED_JSON", "job_id_prefix": "e1", "schema": stageSchema}
	cases := []struct {
		name   string
		inject func()
		run    func() error
		status abi.Status
		code   string
	}{
		{"load quota", func() {
			f.Fail("jobs.insert", 1, bqfake.Fault{Reason: "quotaExceeded", Message: "Quota exceeded: Your table exceeded quota for imports or query appends per table"})
		},
			func() error { _, err := load(t, c, "events", opts, ndjson(1)); return err }, abi.StatusRetryableIO, "quotaExceeded"},
		{"load 503", func() { f.Fail("jobs.insert", 1, bqfake.Fault{Code: 503, Message: "unavailable"}) },
			func() error { _, err := load(t, c, "events", opts, ndjson(1)); return err }, abi.StatusRetryableIO, ""},
		{"load rate", func() { f.Fail("jobs.insert", 1, bqfake.Fault{Reason: "rateLimitExceeded"}) },
			func() error { _, err := load(t, c, "events", opts, ndjson(1)); return err }, abi.StatusRetryableIO, "rateLimitExceeded"},
		{"load invalid schema", func() {},
			func() error {
				_, err := load(t, c, "events2", map[string]any{"format": "NEWLINE_DELIMITED_JSON", "job_id_prefix": "e2", "schema": stageSchema}, []byte(`{"nope":1}`+"\n"))
				return err
			}, abi.StatusFatalIO, "invalid"},
		{"dataset access denied", func() {
			f.Fail("datasets.get", 1, bqfake.Fault{Reason: "accessDenied", Message: "Access Denied: Dataset test-project:analytics: Permission bigquery.datasets.get denied"})
		},
			func() error { _, err := call(t, c, map[string]any{"op": "check_access"}); return err }, abi.StatusFatalIO, "accessDenied"},
		{"query on missing table", func() {},
			func() error {
				_, err := call(t, c, map[string]any{"op": "query", "sql": "INSERT INTO analytics.events SELECT * FROM analytics.stage_missing"})
				return err
			}, abi.StatusFatalIO, "notFound"},
		{"query quota", func() { f.Fail("jobs.insert", 1, bqfake.Fault{Reason: "quotaExceeded"}) },
			func() error {
				_, err := call(t, c, map[string]any{"op": "query", "sql": "DROP TABLE IF EXISTS analytics.stage_x"})
				return err
			}, abi.StatusRetryableIO, "quotaExceeded"},
	}
	for _, tc := range cases {
		tc.inject()
		err := tc.run()
		st, code := status(err)
		if st != tc.status || (tc.code != "" && code != tc.code) {
			t.Errorf("%s: got %v (status %v code %q)", tc.name, err, st, code)
		}
	}
	// The message of BigQuery is kept.
	f.Fail("datasets.get", 1, bqfake.Fault{Reason: "accessDenied", Message: "Access Denied: Dataset test-project:analytics"})
	_, err := call(t, c, map[string]any{"op": "check_access"})
	if err == nil || !strings.Contains(err.Error(), "Access Denied: Dataset test-project:analytics") {
		t.Fatalf("message: %v", err)
	}
}

func TestQueryPermissionAndAbort(t *testing.T) {
	f, c := setup(t, 0)
	f.AddDataset(proj, ds)
	r, err := call(t, c, map[string]any{"op": "check_query_permission", "table": "events"})
	if err != nil || r["allowed"] != true {
		t.Fatalf("%v %v", r, err)
	}
	f.Fail("jobs.insert", 1, bqfake.Fault{Reason: "accessDenied", Message: "User does not have bigquery.jobs.create permission"})
	r, err = call(t, c, map[string]any{"op": "check_query_permission", "table": "events"})
	if err != nil || r["allowed"] != false {
		t.Fatalf("%v %v", r, err)
	}
	ctx := context.Background()
	u, err := c.Sink().Create(ctx, "events", runtime.ObjectOptions{Options: map[string]any{"format": "NEWLINE_DELIMITED_JSON", "job_id_prefix": "ab", "schema": stageSchema}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write(ndjson(5)); err != nil {
		t.Fatal(err)
	}
	if err := u.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	for _, j := range f.Jobs() {
		if j.Configuration.Load != nil {
			t.Fatalf("aborted upload created a job %+v", j.JobReference)
		}
	}
	if _, ok := f.Table(proj, ds, "events"); ok {
		t.Fatal("aborted load created the table")
	}
}

func TestFromBindings(t *testing.T) {
	cfg, err := bigquery.FromBindings(map[string]string{"project_id": "my-proj", "dataset_id": "d", "private_key": `-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n`,
		"private_key_id": "k1", "client_email": "sa@my-proj.iam.gserviceaccount.com"})
	if err != nil {
		t.Fatal(err)
	}
	var sa map[string]string
	if err := json.Unmarshal(cfg.CredentialsJSON, &sa); err != nil {
		t.Fatal(err)
	}
	if sa["type"] != "service_account" || !strings.Contains(sa["private_key"], "\nabc\n") || sa["token_uri"] != "https://oauth2.googleapis.com/token" || sa["private_key_id"] != "k1" {
		t.Fatalf("%v", sa)
	}
	if _, err := bigquery.FromBindings(map[string]string{"project_id": "p"}); err == nil {
		t.Fatal("no dataset accepted")
	}
	if _, err := bigquery.FromBindings(map[string]string{"project_id": "p", "dataset_id": "d"}); err == nil {
		t.Fatal("no key accepted")
	}
}
