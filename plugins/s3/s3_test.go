package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
	"github.com/sluicehq/sluice/sdk/sdktest"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func TestKeys(t *testing.T) {
	c := config{FileFormat: FormatJSONLines, Compression: "gzip"}
	p, err := renderPrefix("/exports/{year}-{month}-{day}T{hour}:{minute}:{second}/{table}/{{x}}", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if p != "exports/2026-11-28T13:00:00/events/{x}" {
		t.Fatalf("prefix %q", p)
	}
	cases := []struct {
		c      config
		prefix string
		n      int
		want   string
	}{
		{c, p, -1, "exports/2026-11-28T13:00:00/events/{x}/2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00.jsonl.gz"},
		{config{FileFormat: FormatParquet, Compression: "snappy"}, "a/", 2, "a/2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00-2.parquet.sz"},
		{config{FileFormat: FormatParquet, Compression: "none"}, "", -1, "2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00.parquet"},
		{config{FileFormat: FormatJSONLines, Compression: "brotli"}, "", 0, "2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00-0.jsonl.br"},
		{config{FileFormat: FormatJSONLines, Compression: "zstd"}, "", -1, "2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00.jsonl.zst"},
		{config{FileFormat: FormatJSONLines, Compression: "lz4"}, "", -1, "2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00.jsonl.lz4"},
	}
	for _, tc := range cases {
		if got := tc.c.fileKey(tc.prefix, t0, t0.Add(time.Hour), tc.n); got != tc.want {
			t.Errorf("got %s want %s", got, tc.want)
		}
	}
	if got := manifestKey("p", t0, t0.Add(time.Hour)); got != "p/2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00_manifest.json" {
		t.Errorf("manifest key %s", got)
	}
	if got := isoTime(t0.Add(1500 * time.Microsecond)); got != "2026-11-28T12:00:00.001500+00:00" {
		t.Errorf("isoTime %s", got)
	}
}

func TestValidate(t *testing.T) {
	h := sdktest.New()
	good := map[string]any{"bucket_name": "b", "prefix": "x/{data_interval_start}", "file_format": "Parquet", "compression": "zstd"}
	if err := h.Validate(good, "aws_access_key_id", "aws_secret_access_key"); err != nil {
		t.Fatal(err)
	}
	bad := map[string]map[string]any{
		"file_format":           {"file_format": "CSV"},
		"compression":           {"compression": "rar"},
		"prefix":                {"prefix": "a/{nope}"},
		"max_file_size_mb":      {"max_file_size_mb": -1},
		"kms_key_id":            {"kms_key_id": "k", "encryption": "AES256"},
		"columns":               {"columns": []string{"uuid", "uuid"}},
		"aws_secret_access_key": {},
	}
	for field, over := range bad {
		cfg := map[string]any{"bucket_name": "b"}
		for k, v := range over {
			cfg[k] = v
		}
		err := h.Validate(cfg, "aws_access_key_id")
		if field != "aws_secret_access_key" {
			err = h.Validate(cfg)
		}
		var ee *sdktest.ExportError
		if !errors.As(err, &ee) || ee.Err.Field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
	if err := h.Validate(map[string]any{"prefix": "a//{year}"}); err == nil {
		t.Error("an empty key segment was accepted")
	}
}

func events(n int, pad int) []byte {
	evs := make([]abi.Event, n)
	for i := range evs {
		evs[i] = abi.Event{Event: "e", DistinctID: "d", Properties: `{"p":"` + strings.Repeat("x", pad) + `"}`,
			Timestamp: t0, InsertedAt: t0.Add(time.Second)}
	}
	return sdktest.Events(evs...)
}

func TestRunSingleFile(t *testing.T) {
	h := sdktest.New()
	cfg := map[string]any{"bucket_name": "b", "prefix": "p/{day}", "columns": []string{"event", "_inserted_at"}}
	if err := h.Open(sdktest.Interval(t0, cfg)); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteBatch(events(2, 1)); err != nil {
		t.Fatal(err)
	}
	res, err := h.Finish()
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	key := "p/28/2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00.jsonl"
	want := strings.Repeat(`{"event":"e","_inserted_at":"2026-11-28T12:00:01.000000Z"}`+"\n", 2)
	if string(h.Objects[key]) != want || res.Records != 2 || len(res.Outputs) != 1 {
		t.Fatalf("objects %q result %+v", h.Objects, res)
	}
}

func TestRunSplitsFiles(t *testing.T) {
	h := sdktest.New()
	cfg := map[string]any{"bucket_name": "b", "prefix": "s", "max_file_size_mb": 1}
	if err := h.Open(sdktest.Interval(t0, cfg)); err != nil {
		t.Fatal(err)
	}
	for range 5 { // ~600 KB per batch: files of two batches each
		if err := h.WriteBatch(events(1000, 500)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := h.Finish()
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	base := "s/2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00"
	var man struct{ Files []string }
	if err := json.Unmarshal(h.Objects[base+"_manifest.json"], &man); err != nil {
		t.Fatal(err)
	}
	want := []string{base + "-0.jsonl", base + "-1.jsonl", base + "-2.jsonl"}
	if strings.Join(man.Files, ",") != strings.Join(want, ",") {
		t.Fatalf("manifest %v", man.Files)
	}
	if res.Records != 5000 || len(res.Outputs) != 4 || res.Outputs[0].Records != 2000 || res.Outputs[2].Records != 1000 {
		t.Fatalf("result %+v", res)
	}
}

func TestClassify(t *testing.T) {
	d := &destination{}
	cases := []struct {
		e    abi.Error
		want string
	}{
		{abi.Error{Status: "fatal_io", Code: "NoSuchBucket"}, abi.OutcomeFail},
		{abi.Error{Status: "denied", Code: "AccessDenied"}, abi.OutcomeFail},
		{abi.Error{Status: "denied", Code: "SignatureDoesNotMatch"}, abi.OutcomeFail},
		{abi.Error{Status: "bad_argument"}, abi.OutcomeFail}, // invalid key
		{abi.Error{Status: "fatal_io"}, abi.OutcomeFail},     // bad endpoint
		{abi.Error{Field: "file_format"}, abi.OutcomeFail},
		{abi.Error{Status: "retryable_io", Code: "SlowDown"}, abi.OutcomeRetry},
		{abi.Error{Status: "fatal_io", Code: "InternalError"}, abi.OutcomeRetry},
		{abi.Error{Status: "retryable_io"}, abi.OutcomeRetry},
		{abi.Error{Message: "something odd"}, abi.OutcomeRetry},
	}
	for _, c := range cases {
		if got := d.Classify(&c.e, 1); got.Outcome != c.want {
			t.Errorf("%+v: got %s", c.e, got.Outcome)
		}
	}
}

func TestTestStepsAndManifest(t *testing.T) {
	if err := sdk.CheckManifest(manifest()); err != nil {
		t.Fatal(err)
	}
	h := sdktest.New()
	rep, err := h.Test(sdktest.Interval(t0, map[string]any{"bucket_name": "b"}))
	if err != nil || len(rep.Steps) != 3 || !rep.Steps[2].OK {
		t.Fatalf("%+v %v", rep, err)
	}
	if len(h.Objects) != 0 {
		t.Fatal("the test left an object")
	}
}
