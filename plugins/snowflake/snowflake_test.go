package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk/sdktest"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func baseConfig() map[string]any {
	return map[string]any{"account": "org-acct", "user": "loader", "authentication_type": "password",
		"database": "analytics", "schema": "public", "table_name": "events", "warehouse": "wh", "role": "loader",
		"file_format": FormatJSONLines, "compression": "none"}
}

func TestValidate(t *testing.T) {
	h := sdktest.New()
	if err := h.Validate(baseConfig(), "password"); err != nil {
		t.Fatal(err)
	}
	kp := baseConfig()
	kp["authentication_type"] = "keypair"
	if err := h.Validate(kp, "private_key"); err != nil {
		t.Fatal(err)
	}
	bad := map[string]map[string]any{
		"account":             {"account": "bad account"},
		"database":            {"database": `x"y`},
		"table_name":          {"table_name": "other.events"},
		"authentication_type": {"authentication_type": "oauth"},
		"file_format":         {"file_format": "CSV"},
		"compression":         {"compression": "lz4"},
		"max_file_size_mb":    {"max_file_size_mb": 5000},
	}
	for field, over := range bad {
		cfg := baseConfig()
		for k, v := range over {
			cfg[k] = v
		}
		var ee *sdktest.ExportError
		if err := h.Validate(cfg, "password", "private_key"); !errors.As(err, &ee) || ee.Err.Field != field {
			t.Errorf("%s: %v", field, err)
		}
	}
	var ee *sdktest.ExportError
	if err := h.Validate(baseConfig()); !errors.As(err, &ee) || ee.Err.Field != "password" {
		t.Errorf("missing password: %v", err)
	}
	if err := h.Validate(kp, "password"); !errors.As(err, &ee) || ee.Err.Field != "private_key" {
		t.Errorf("missing key: %v", err)
	}
	m, err := h.Describe()
	if err != nil || m.Name != "snowflake" || m.Capabilities[0] != abi.CapSnowflake {
		t.Fatalf("%+v %v", m, err)
	}
	bound := map[string]bool{"account": true, "user": true, "authentication_type": true, "password": true, "private_key": true,
		"private_key_passphrase": true, "database": true, "schema": true, "warehouse": true, "role": true}
	for _, f := range m.Config {
		if bound[f.Name] != (f.Binding == "snowflake."+f.Name) {
			t.Errorf("field %s binding %q", f.Name, f.Binding)
		}
		if secret := strings.HasPrefix(f.Name, "private_key") || f.Name == "password"; secret != f.Secret {
			t.Errorf("field %s secret %v", f.Name, f.Secret)
		}
	}
}

// fakeSF answers the capability calls and records them.
type fakeSF struct {
	calls  []map[string]any
	fail   map[string]abi.Error // by the statement's first word, or op
	loaded int
	// copy answers COPY statements when set.
	copy string
}

func (f *fakeSF) handle(capability string, req []byte) (abi.Status, []byte) {
	var m map[string]any
	_ = json.Unmarshal(req, &m)
	f.calls = append(f.calls, m)
	op, _ := m["op"].(string)
	sql, _ := m["sql"].(string)
	key := op
	if sql != "" {
		key = strings.Fields(sql)[0]
	}
	if e, ok := f.fail[key]; ok {
		st, _ := abi.StatusByName(e.Status)
		b, _ := json.Marshal(e)
		return st, b
	}
	switch {
	case op == "execute" && strings.HasPrefix(sql, "COPY") && f.copy != "":
		return abi.StatusOK, []byte(f.copy)
	case op == "execute" && strings.HasPrefix(sql, "COPY"):
		return abi.StatusOK, []byte(`{"kind":"COPY","rows_loaded":2,"files":[{"file":"sluice/run-1/part-00000.jsonl","status":"LOADED","rows_loaded":2}]}`)
	case op == "execute":
		return abi.StatusOK, []byte(`{"kind":"X","rows_affected":0}`)
	case op == "check_access":
		return abi.StatusOK, []byte(`{"database":"ANALYTICS","schema":"PUBLIC","warehouse":"WH","role":"LOADER"}`)
	case op == "table_info":
		return abi.StatusOK, []byte(`{"exists":true}`)
	}
	return abi.StatusUnimplemented, []byte(`{"message":"no such op","status":"unimplemented"}`)
}

func (f *fakeSF) statements() []string {
	var out []string
	for _, c := range f.calls {
		if s, ok := c["sql"].(string); ok {
			out = append(out, strings.Fields(s)[0])
		} else {
			out = append(out, c["op"].(string))
		}
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

func TestFlow(t *testing.T) {
	h := sdktest.New()
	f := &fakeSF{}
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
	key := "sluice/run-1/part-00000.jsonl"
	body := string(h.Objects[key])
	if res.Records != 2 || strings.Count(body, "\n") != 2 || !strings.Contains(body, `"properties":{"$ip":"1.2.3.4"`) ||
		strings.Contains(body, "person_properties") || len(res.Outputs) != 1 || res.Outputs[0].Name != "analytics.public.events" {
		t.Fatalf("result %+v objects %v", res, h.Objects)
	}
	if got := strings.Join(f.statements(), ","); got != "CREATE,COPY,REMOVE" {
		t.Fatalf("statements %s", got)
	}
	create := f.calls[0]["sql"].(string)
	if !strings.HasPrefix(create, `CREATE TABLE IF NOT EXISTS "ANALYTICS"."PUBLIC"."events" (`) || !strings.Contains(create, "people_set_once VARIANT") {
		t.Fatalf("create %s", create)
	}
	cp := f.calls[1]["sql"].(string)
	for _, want := range []string{`COPY INTO "ANALYTICS"."PUBLIC"."events" (uuid, event, properties, elements, people_set, people_set_once, distinct_id, team_id, ip, site_url, timestamp)`,
		`$1:properties:"$set"`, `$1:properties:"$ip"`, `FROM '@%"events"/sluice/run-1/')`, `FILES = ('part-00000.jsonl')`,
		`FILE_FORMAT = (TYPE = 'JSON')`, `PURGE = TRUE`} {
		if !strings.Contains(cp, want) {
			t.Errorf("copy lacks %q:\n%s", want, cp)
		}
	}
	if rm := f.calls[2]["sql"]; rm != `REMOVE '@%"events"/sluice/run-1/'` {
		t.Errorf("remove %v", rm)
	}
}

func TestSplitFiles(t *testing.T) {
	h := sdktest.New()
	f := &fakeSF{}
	h.Calls = f.handle
	cfg := baseConfig()
	cfg["max_file_size_mb"] = 1
	if err := h.Open(sdktest.Interval(t0, cfg)); err != nil {
		t.Fatal(err)
	}
	// ~1.2 MB per batch of big events: every batch closes a file.
	big := strings.Repeat("x", 600<<10)
	evs := []abi.Event{{Event: "e", Properties: `{"p":"` + big + `"}`, Timestamp: t0, InsertedAt: t0},
		{Event: "e", Properties: `{"p":"` + big + `"}`, Timestamp: t0, InsertedAt: t0}}
	for range 3 {
		if err := h.WriteBatch(sdktest.Events(evs...)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Finish(); err != nil {
		t.Fatal(err)
	}
	if len(h.Objects) != 3 {
		t.Fatalf("%d files", len(h.Objects))
	}
	cp := f.calls[1]["sql"].(string)
	if !strings.Contains(cp, `FILES = ('part-00000.jsonl', 'part-00001.jsonl', 'part-00002.jsonl')`) {
		t.Fatalf("copy %s", cp)
	}
}

func TestCopyFailureClassified(t *testing.T) {
	h := sdktest.New()
	f := &fakeSF{fail: map[string]abi.Error{"COPY": {Message: "000608 (57P03): Warehouse 'WH' cannot be resumed", Status: "retryable_io", Code: "000608"}}}
	h.Calls = f.handle
	if err := h.Open(sdktest.Interval(t0, baseConfig())); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteBatch(batch()); err != nil {
		t.Fatal(err)
	}
	_, err := h.Finish()
	var ee *sdktest.ExportError
	if !errors.As(err, &ee) || ee.Err.Code != "000608" {
		t.Fatalf("%v", err)
	}
	if c, _ := h.Classify(ee.Err, 1); c.Outcome != abi.OutcomeRetry {
		t.Fatalf("classify %+v", c)
	}
	h.Close()
}

func TestClassify(t *testing.T) {
	d := &destination{}
	cases := []struct {
		e    abi.Error
		want string
	}{
		{abi.Error{Status: "retryable_io", Code: "000608"}, abi.OutcomeRetry},
		{abi.Error{Status: "fatal_io", Code: "000604"}, abi.OutcomeRetry},
		{abi.Error{Status: "retryable_io", Code: "http_5xx"}, abi.OutcomeRetry},
		{abi.Error{Status: "retryable_io"}, abi.OutcomeRetry},
		{abi.Error{Status: "fatal_io", Code: "390100"}, abi.OutcomeFail},
		{abi.Error{Status: "fatal_io", Code: "390144"}, abi.OutcomeFail},
		{abi.Error{Status: "retryable_io", Code: "002003"}, abi.OutcomeFail},
		{abi.Error{Status: "fatal_io", Code: "000904"}, abi.OutcomeFail},
		{abi.Error{Status: "fatal_io", Code: "invalid_private_key"}, abi.OutcomeFail},
		{abi.Error{Status: "fatal_io", Code: "copy_load_failed"}, abi.OutcomeFail},
		{abi.Error{Status: "denied"}, abi.OutcomeFail},
		{abi.Error{Field: "table_name"}, abi.OutcomeFail},
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
	f := &fakeSF{}
	h.Calls = f.handle
	rep, err := h.Test(sdktest.Interval(t0, baseConfig()))
	if err != nil || len(rep.Steps) != 3 {
		t.Fatalf("%+v %v", rep, err)
	}
	for _, s := range rep.Steps {
		if !s.OK {
			t.Errorf("step %+v", s)
		}
	}
	f.fail = map[string]abi.Error{"check_access": {Message: "390100 (08004): Incorrect username or password was specified.", Status: "fatal_io", Code: "390100"}}
	rep, _ = h.Test(sdktest.Interval(t0, baseConfig()))
	if last := rep.Steps[len(rep.Steps)-1]; last.OK || !strings.Contains(last.Message, "Incorrect username") {
		t.Fatalf("%+v", rep)
	}
}

func TestCopySQLParquet(t *testing.T) {
	cfg := config{Database: "My DB", Schema: "raw", TableName: "Events", FileFormat: FormatParquet}
	sql := copySQL(&cfg, "sluice/r", []string{"part-00000.parquet"})
	for _, want := range []string{`COPY INTO "My DB"."RAW"."Events"`, `$1:uuid::VARCHAR`, `PARSE_JSON($1:properties):"$set_once"`,
		`FROM '@%"Events"/sluice/r/')`, `TYPE = 'PARQUET'`} {
		if !strings.Contains(sql, want) {
			t.Errorf("lacks %q:\n%s", want, sql)
		}
	}
}

// runOnce runs one attempt of runID with the given attempt and generation.
func runOnce(t *testing.T, f *fakeSF, runID string, attempt, generation int) (abi.Result, *sdktest.Host) {
	t.Helper()
	h := sdktest.New()
	h.Calls = f.handle
	req := sdktest.Interval(t0, baseConfig())
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

// Issue 17: COPY's load metadata skips a file already loaded under the same path, so a
// deliberate re-run (a higher generation) must stage new paths, while an automatic retry
// (same generation) rewrites the same ones.
func TestStagePathPerGeneration(t *testing.T) {
	var keys, copies, removes []string
	for _, g := range []struct{ attempt, gen int }{{1, 0}, {2, 0}, {3, 2}, {4, 3}} {
		f := &fakeSF{}
		_, h := runOnce(t, f, "run-1", g.attempt, g.gen)
		for k := range h.Objects {
			keys = append(keys, k)
		}
		for _, c := range f.calls {
			sql, _ := c["sql"].(string)
			if i := strings.Index(sql, "FROM '@%"); strings.HasPrefix(sql, "COPY") && i >= 0 {
				copies = append(copies, sql[i:strings.Index(sql[i:], ")")+i])
			}
			if strings.HasPrefix(sql, "REMOVE") {
				removes = append(removes, sql)
			}
		}
	}
	want := []string{"sluice/run-1/part-00000.jsonl", "sluice/run-1/part-00000.jsonl", "sluice/run-1_g2/part-00000.jsonl", "sluice/run-1_g3/part-00000.jsonl"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("staged keys %v, want %v", keys, want)
	}
	if copies[0] != copies[1] || copies[2] != `FROM '@%"events"/sluice/run-1_g2/'` || removes[3] != `REMOVE '@%"events"/sluice/run-1_g3/'` {
		t.Fatalf("copies %v removes %v", copies, removes)
	}
	// Two exports (two runs) into one table in one interval never share a path.
	if stagePath("run-a", 0) == stagePath("run-b", 0) {
		t.Fatal("two runs share a stage path")
	}
}

// Issue 17: records is what the COPY loaded (rows_loaded), and for files the load metadata
// skipped (an earlier attempt of this generation loaded them) the rows they hold.
func TestRecordsAreRowsLoaded(t *testing.T) {
	f := &fakeSF{copy: `{"kind":"COPY","rows_loaded":3,"files":[{"file":"sluice/run-1/part-00000.jsonl","status":"LOADED","rows_loaded":3}]}`}
	if res, _ := runOnce(t, f, "run-1", 1, 0); res.Records != 3 || res.Outputs[0].Records != 3 {
		t.Fatalf("result %+v, want the 3 rows Snowflake reported", res)
	}
	// Every file skipped: Snowflake answers "Copy executed with 0 files processed.".
	f = &fakeSF{copy: `{"kind":"COPY","rows_affected":0}`}
	res, h := runOnce(t, f, "run-1", 2, 0)
	if res.Records != 2 || !strings.Contains(strings.Join(h.Logs, "\n"), "already loaded") {
		t.Fatalf("result %+v logs %v", res, h.Logs)
	}
}
