package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk/sdktest"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func baseConfig() map[string]any {
	return map[string]any{"project_id": "my-project", "dataset_id": "analytics", "table_id": "events",
		"use_json_type": false, "file_format": FormatJSONLines}
}

func TestValidate(t *testing.T) {
	h := sdktest.New()
	if err := h.Validate(baseConfig(), "private_key", "client_email", "private_key_id"); err != nil {
		t.Fatal(err)
	}
	bad := map[string]map[string]any{
		"project_id":  {"project_id": "Bad Project"},
		"dataset_id":  {"dataset_id": "other.ds"},
		"table_id":    {"table_id": "`x`"},
		"file_format": {"file_format": "CSV"},
	}
	for field, over := range bad {
		cfg := baseConfig()
		for k, v := range over {
			cfg[k] = v
		}
		var ee *sdktest.ExportError
		if err := h.Validate(cfg, "private_key", "client_email"); !errors.As(err, &ee) || ee.Err.Field != field {
			t.Errorf("%s: %v", field, err)
		}
	}
	var ee *sdktest.ExportError
	if err := h.Validate(baseConfig(), "client_email"); !errors.As(err, &ee) || ee.Err.Field != "private_key" {
		t.Errorf("missing key: %v", err)
	}
	m, err := h.Describe()
	if err != nil || m.Name != "bigquery" || m.Capabilities[0] != abi.CapBigQuery {
		t.Fatalf("%+v %v", m, err)
	}
	for _, f := range m.Config {
		if strings.HasPrefix(f.Name, "private_key") || f.Name == "client_email" || f.Name == "token_uri" {
			if !f.Secret || f.Binding != "bigquery."+f.Name {
				t.Errorf("field %s: secret %v binding %q", f.Name, f.Secret, f.Binding)
			}
		}
	}
}

// fakeBQ answers the capability calls and records them.
type fakeBQ struct {
	calls   []map[string]any
	allowed bool
	fail    map[string]abi.Error // by op
	// insert answers the INSERT query (default: 2 rows affected, a new job).
	insert string
	// outputRows answers job_status (the direct load's job).
	outputRows int64
}

func (f *fakeBQ) handle(capability string, req []byte) (abi.Status, []byte) {
	var m map[string]any
	_ = json.Unmarshal(req, &m)
	f.calls = append(f.calls, m)
	op, _ := m["op"].(string)
	if e, ok := f.fail[op]; ok {
		st, _ := abi.StatusByName(e.Status)
		b, _ := json.Marshal(e)
		return st, b
	}
	switch op {
	case "ensure_table":
		return abi.StatusOK, []byte(`{"created":true}`)
	case "check_query_permission":
		if f.allowed {
			return abi.StatusOK, []byte(`{"allowed":true}`)
		}
		return abi.StatusOK, []byte(`{"allowed":false,"reason":"no bigquery.jobs.create"}`)
	case "query":
		if sql, _ := m["sql"].(string); f.insert != "" && strings.HasPrefix(sql, "INSERT") {
			return abi.StatusOK, []byte(f.insert)
		}
		return abi.StatusOK, []byte(`{"job_id":"j","rows_affected":2}`)
	case "job_status":
		return abi.StatusOK, []byte(fmt.Sprintf(`{"job_id":%q,"state":"DONE","output_rows":%d}`, m["job_id"], f.outputRows))
	case "check_access":
		return abi.StatusOK, []byte(`{"location":"US"}`)
	case "table_info":
		return abi.StatusOK, []byte(`{"exists":true}`)
	}
	return abi.StatusUnimplemented, []byte(`{"message":"no such op","status":"unimplemented"}`)
}

func (f *fakeBQ) ops() []string {
	var out []string
	for _, c := range f.calls {
		out = append(out, c["op"].(string))
	}
	return out
}

func batch() []byte {
	evs := []abi.Event{
		{Event: "$pageview", DistinctID: "d1", TeamID: 2, Properties: `{"$ip":"1.2.3.4","$set":{"a":1},"$set_once":{"b":2}}`,
			ElementsChain: `div:nth-child="1"`, Timestamp: t0, InsertedAt: t0},
		{Event: "click", DistinctID: "d2", TeamID: 2, Properties: `{}`, Timestamp: t0.Add(time.Second), InsertedAt: t0},
	}
	evs[0].UUID[15] = 1
	return sdktest.Events(evs...)
}

func TestStageFlow(t *testing.T) {
	h := sdktest.New()
	f := &fakeBQ{allowed: true}
	h.Calls = f.handle
	req := sdktest.Interval(t0, baseConfig())
	req.Attempt = 2
	if err := h.Open(req); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteBatch(batch()); err != nil {
		t.Fatal(err)
	}
	res, err := h.Finish()
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	stage := "stage_events_run_1_g0_2"
	body := string(h.Objects[stage])
	if res.Records != 2 || strings.Count(body, "\n") != 2 || !strings.Contains(body, `"properties":{"$ip":"1.2.3.4"`) ||
		strings.Contains(body, "person_properties") {
		t.Fatalf("result %+v body %s", res, body)
	}
	if got := strings.Join(f.ops(), ","); got != "ensure_table,check_query_permission,query,query" {
		t.Fatalf("ops %s", got)
	}
	et := f.calls[0]
	if et["table"] != "events" || et["partition_field"] != "timestamp" || et["add_missing_columns"] != true {
		t.Fatalf("ensure_table %v", et)
	}
	ins := f.calls[2]
	sql := ins["sql"].(string)
	for _, want := range []string{"INSERT INTO `my-project.analytics.events` (uuid, event, properties, elements, set, set_once, distinct_id, team_id, ip, site_url, timestamp, bq_ingested_timestamp) SELECT",
		`JSON_QUERY(TO_JSON_STRING(properties), '$."$set"') AS set`, `JSON_VALUE(TO_JSON_STRING(properties), '$."$ip"') AS ip`,
		"FROM `my-project.analytics." + stage + "`"} {
		if !strings.Contains(sql, want) {
			t.Errorf("insert lacks %q:\n%s", want, sql)
		}
	}
	if ins["job_id_prefix"] != "sluice_run-1_insert" {
		t.Errorf("insert prefix %v", ins["job_id_prefix"])
	}
	if drop := f.calls[3]["sql"]; drop != "DROP TABLE IF EXISTS `analytics."+stage+"`" {
		t.Errorf("drop %v", drop)
	}
}

func TestDirectLoadWithoutQueryPermission(t *testing.T) {
	h := sdktest.New()
	f := &fakeBQ{allowed: false, outputRows: 2}
	h.Calls = f.handle
	cfg := baseConfig()
	cfg["use_json_type"] = true
	if err := h.Open(sdktest.Interval(t0, cfg)); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteBatch(batch()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Finish(); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if got := strings.Join(f.ops(), ","); got != "ensure_table,check_query_permission,job_status" {
		t.Fatalf("ops %s", got)
	}
	lines := strings.Split(strings.TrimSpace(string(h.Objects["events"])), "\n")
	if len(lines) != 2 {
		t.Fatalf("objects %v", h.Objects)
	}
	var row map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &row); err != nil {
		t.Fatal(err)
	}
	if row["uuid"] != "00000000-0000-0000-0000-000000000001" || row["ip"] != "1.2.3.4" || row["elements"] != `"div:nth-child=\"1\""` ||
		row["set"].(map[string]any)["a"] != float64(1) || row["timestamp"] != "2026-11-28T12:00:00.000000Z" || row["site_url"] != "" {
		t.Fatalf("row %v", row)
	}
	if !strings.Contains(lines[1], `"set":null`) || !strings.Contains(lines[1], `"ip":null`) {
		t.Fatalf("row 2 %s", lines[1])
	}
}

func TestInsertFailureDropsStageOnClose(t *testing.T) {
	h := sdktest.New()
	f := &fakeBQ{allowed: true}
	h.Calls = func(c string, req []byte) (abi.Status, []byte) {
		if strings.Contains(string(req), "INSERT INTO") {
			f.calls = append(f.calls, map[string]any{"op": "query-insert"})
			return abi.StatusRetryableIO, []byte(`{"message":"Quota exceeded","status":"retryable_io","code":"quotaExceeded"}`)
		}
		return f.handle(c, req)
	}
	if err := h.Open(sdktest.Interval(t0, baseConfig())); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteBatch(batch()); err != nil {
		t.Fatal(err)
	}
	_, err := h.Finish()
	var ee *sdktest.ExportError
	if !errors.As(err, &ee) || ee.Err.Code != "quotaExceeded" || ee.Err.Status != "retryable_io" {
		t.Fatalf("%v", err)
	}
	c, _ := h.Classify(ee.Err, 1)
	if c.Outcome != abi.OutcomeRetry {
		t.Fatalf("classify %+v", c)
	}
	h.Close()
	if got := strings.Join(f.ops(), ","); got != "ensure_table,check_query_permission,query-insert,query" {
		t.Fatalf("ops %s", got)
	}
}

func TestClassify(t *testing.T) {
	d := &destination{}
	cases := []struct {
		e    abi.Error
		want string
	}{
		{abi.Error{Status: "retryable_io", Code: "quotaExceeded"}, abi.OutcomeRetry},
		{abi.Error{Status: "retryable_io", Code: "rateLimitExceeded"}, abi.OutcomeRetry},
		{abi.Error{Status: "fatal_io", Code: "backendError"}, abi.OutcomeRetry},
		{abi.Error{Status: "retryable_io", Code: "503"}, abi.OutcomeRetry},
		{abi.Error{Status: "fatal_io", Code: "notFound"}, abi.OutcomeFail},
		{abi.Error{Status: "fatal_io", Code: "accessDenied"}, abi.OutcomeFail},
		{abi.Error{Status: "fatal_io", Code: "invalid"}, abi.OutcomeFail},
		{abi.Error{Status: "denied"}, abi.OutcomeFail},
		{abi.Error{Field: "table_id"}, abi.OutcomeFail},
		{abi.Error{Message: "odd"}, abi.OutcomeRetry},
	}
	for _, c := range cases {
		if got := d.Classify(&c.e, 1); got.Outcome != c.want {
			t.Errorf("%+v: got %s want %s", c.e, got.Outcome, c.want)
		}
	}
}

func TestTest(t *testing.T) {
	h := sdktest.New()
	f := &fakeBQ{allowed: true}
	h.Calls = f.handle
	rep, err := h.Test(sdktest.Interval(t0, baseConfig()))
	if err != nil || len(rep.Steps) != 4 {
		t.Fatalf("%+v %v", rep, err)
	}
	for _, s := range rep.Steps {
		if !s.OK {
			t.Errorf("step %+v", s)
		}
	}
	f.fail = map[string]abi.Error{"check_access": {Message: "Access Denied: Dataset my-project:analytics", Status: "fatal_io", Code: "accessDenied"}}
	rep, _ = h.Test(sdktest.Interval(t0, baseConfig()))
	if last := rep.Steps[len(rep.Steps)-1]; last.OK || !strings.Contains(last.Message, "Access Denied") {
		t.Fatalf("%+v", rep)
	}
}

func TestInsertSQLParquetJSON(t *testing.T) {
	cfg := config{ProjectID: "p-123", DatasetID: "d", TableID: "events", UseJSONType: true}
	sql := insertSQL(&cfg, "stage_x", true)
	for _, want := range []string{`REGEXP_REPLACE(TO_HEX(uuid)`, `PARSE_JSON(properties) AS properties`,
		`JSON_QUERY(PARSE_JSON(properties), '$."$set_once"') AS set_once`, `JSON_VALUE(properties, '$."$ip"') AS ip`} {
		if !strings.Contains(sql, want) {
			t.Errorf("lacks %q:\n%s", want, sql)
		}
	}
}

// runOnce runs one attempt of run-1 with the given attempt and generation and returns the
// result and the capability calls.
func runOnce(t *testing.T, f *fakeBQ, runID string, attempt, generation int, cfg map[string]any) (abi.Result, *sdktest.Host) {
	t.Helper()
	h := sdktest.New()
	h.Calls = f.handle
	req := sdktest.Interval(t0, cfg)
	req.RunID, req.Attempt, req.Generation = runID, attempt, generation
	if err := h.Open(req); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteBatch(batch()); err != nil {
		t.Fatal(err)
	}
	res, err := h.Finish()
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	return res, h
}

// prefixes lists the job_id_prefix of every INSERT the plugin asked for.
func (f *fakeBQ) insertPrefixes() []string {
	var out []string
	for _, c := range f.calls {
		if sql, _ := c["sql"].(string); strings.HasPrefix(sql, "INSERT") {
			out = append(out, c["job_id_prefix"].(string))
		}
	}
	return out
}

// Issue 17: a deliberate re-run (a higher generation) must insert again, so its job ids
// differ from the first execution's; an automatic retry (same generation, next attempt)
// must reuse them so the capability finds the insert that already succeeded.
func TestJobIDsPerGeneration(t *testing.T) {
	f := &fakeBQ{allowed: true}
	runOnce(t, f, "run-1", 1, 0, baseConfig())
	runOnce(t, f, "run-1", 2, 0, baseConfig()) // automatic retry
	runOnce(t, f, "run-1", 3, 2, baseConfig()) // user retry of the completed run
	runOnce(t, f, "run-1", 4, 3, baseConfig()) // a second backfill over it
	got := f.insertPrefixes()
	want := []string{"sluice_run-1_insert", "sluice_run-1_insert", "sluice_run-1_g2_insert", "sluice_run-1_g3_insert"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("insert job prefixes %v, want %v", got, want)
	}
	// Direct loads and stage loads take the same per-generation base.
	if a, b, c := jobBase("run-1", 0), jobBase("run-1", 0), jobBase("run-1", 1); a != b || a == c || a != "sluice_run-1" {
		t.Fatalf("job bases %s %s %s", a, b, c)
	}
}

// Issue 17: two exports writing one table in the same interval must not share a stage
// table (WRITE_TRUNCATE would replace the other's rows); neither may two generations.
func TestStageTablePerRun(t *testing.T) {
	f := &fakeBQ{allowed: true}
	_, a := runOnce(t, f, "0f0e-run-a", 1, 0, baseConfig())
	_, b := runOnce(t, f, "0f0e-run-b", 1, 0, baseConfig())
	_, c := runOnce(t, f, "0f0e-run-a", 1, 1, baseConfig())
	names := map[string]bool{}
	for _, h := range []*sdktest.Host{a, b, c} {
		if len(h.Objects) != 1 {
			t.Fatalf("uploads %v", h.Objects)
		}
		for k := range h.Objects {
			names[k] = true
		}
	}
	if len(names) != 3 {
		t.Fatalf("stage tables %v: two runs or generations share one", names)
	}
	for n := range names {
		if !regexp.MustCompile(`^stage_events_[A-Za-z0-9_]+$`).MatchString(n) {
			t.Errorf("stage table %q", n)
		}
	}
	long := stageName(strings.Repeat("t", 900), strings.Repeat("r", 200), 12, 3)
	if len(long) > maxTableID || !strings.HasPrefix(long, "stage_ttt") || long == stageName(strings.Repeat("t", 900), strings.Repeat("r", 200), 12, 4) {
		t.Errorf("long stage name %d bytes: %s", len(long), long)
	}
}

// Issue 17: records is what BigQuery inserted (the DML affected rows), including when an
// earlier attempt of this generation already inserted (the finished job's count), and
// for a direct load the load job's output rows.
func TestRecordsAreLoadedRows(t *testing.T) {
	f := &fakeBQ{allowed: true, insert: `{"job_id":"sluice_run-1_insert","rows_affected":7,"existing":true}`}
	res, h := runOnce(t, f, "run-1", 2, 0, baseConfig())
	if res.Records != 7 || res.Outputs[0].Records != 7 {
		t.Fatalf("result %+v, want the 7 rows the earlier job inserted", res)
	}
	if !strings.Contains(strings.Join(h.Logs, "\n"), "already inserted") {
		t.Errorf("logs %v", h.Logs)
	}
	f = &fakeBQ{allowed: true, insert: `{"job_id":"sluice_run-1_insert","rows_affected":1}`}
	if res, _ := runOnce(t, f, "run-1", 1, 0, baseConfig()); res.Records != 1 {
		t.Fatalf("result %+v, want the 1 row the INSERT affected", res)
	}
	f = &fakeBQ{allowed: false, outputRows: 5}
	if res, _ := runOnce(t, f, "run-1", 1, 0, baseConfig()); res.Records != 5 {
		t.Fatalf("direct load result %+v, want the job's 5 output rows", res)
	}
}

// Issue 17: properties that are not valid JSON are kept as text (never nulled) and logged.
func TestInvalidPropertiesKept(t *testing.T) {
	for _, useJSON := range []bool{false, true} {
		f := &fakeBQ{allowed: false, outputRows: 1}
		h := sdktest.New()
		h.Calls = f.handle
		cfg := baseConfig()
		cfg["use_json_type"] = useJSON
		if err := h.Open(sdktest.Interval(t0, cfg)); err != nil {
			t.Fatal(err)
		}
		ev := abi.Event{Event: "e", DistinctID: "d", TeamID: 2, Properties: `{"$ip": "1.2.3.4", broken`, Timestamp: t0, InsertedAt: t0}
		ev.UUID[15] = 9
		if err := h.WriteBatch(sdktest.Events(ev)); err != nil {
			t.Fatalf("use_json_type %v: %v", useJSON, err)
		}
		if _, err := h.Finish(); err != nil {
			t.Fatalf("use_json_type %v: %v", useJSON, err)
		}
		var row map[string]any
		if err := json.Unmarshal(h.Objects["events"], &row); err != nil {
			t.Fatalf("use_json_type %v: %v in %s", useJSON, err, h.Objects["events"])
		}
		if row["properties"] != `{"$ip": "1.2.3.4", broken` {
			t.Errorf("use_json_type %v: properties %#v, want the text kept", useJSON, row["properties"])
		}
		if logs := strings.Join(h.Logs, "\n"); !strings.Contains(logs, "not valid JSON") || !strings.Contains(logs, "00000000-0000-0000-0000-000000000009") {
			t.Errorf("use_json_type %v: not logged: %s", useJSON, logs)
		}
	}
}
