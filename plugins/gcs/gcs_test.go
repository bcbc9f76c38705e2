package main

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/plugins/internal/objectexport"
	"github.com/sluicehq/sluice/sdk"
	"github.com/sluicehq/sluice/sdk/sdktest"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func TestManifestBindsGCS(t *testing.T) {
	m := manifest()
	if err := sdk.CheckManifest(m); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"bucket_name": "object.gcs.bucket", "service_account_key": "object.gcs.service_account_key", "prefix": ""}
	for _, f := range m.Config {
		if b, ok := want[f.Name]; ok && f.Binding != b {
			t.Errorf("%s binds %q, want %q", f.Name, f.Binding, b)
		}
		if (f.Name == "service_account_key") != f.Secret {
			t.Errorf("%s: secret = %v", f.Name, f.Secret)
		}
	}
}

func TestValidate(t *testing.T) {
	h := sdktest.New()
	cases := []struct {
		cfg     map[string]any
		secrets []string
		field   string
	}{
		{map[string]any{"prefix": "{data_interval_start}", "file_format": "Parquet", "compression": "zstd"}, []string{"service_account_key"}, ""},
		{map[string]any{}, nil, "service_account_key"},
		{map[string]any{"max_file_size_mb": -1}, []string{"service_account_key"}, "max_file_size_mb"},
		{map[string]any{"prefix": "a/{event}"}, []string{"service_account_key"}, "prefix"},
		{map[string]any{"partition_by": "event", "prefix": "{event}/{day}"}, []string{"service_account_key"}, ""},
	}
	for _, c := range cases {
		c.cfg["bucket_name"] = "b"
		err := h.Validate(c.cfg, c.secrets...)
		if sdktest.ErrorField(err) != c.field {
			t.Errorf("%v %v: %v, want field %q", c.cfg, c.secrets, err, c.field)
		}
	}
}

func TestRunAndClassify(t *testing.T) {
	h := sdktest.New()
	cfg := map[string]any{"bucket_name": "b", "prefix": "g/", "columns": []string{"distinct_id"}}
	if err := h.Open(sdktest.Interval(t0, cfg)); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteBatch(sdktest.Events(abi.Event{Event: "e", DistinctID: "d", Timestamp: t0, InsertedAt: t0})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Finish(); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if got := string(h.Objects["g/2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00.jsonl"]); got != `{"distinct_id":"d"}`+"\n" {
		t.Fatalf("objects %v", h.Objects)
	}
	d := &objectexport.Destination{P: plugin}
	for _, c := range []struct {
		e    abi.Error
		want string
	}{
		{abi.Error{Status: "retryable_io", Code: "forbidden"}, abi.OutcomeFail},
		{abi.Error{Status: "not_found", Code: "notFound"}, abi.OutcomeFail},
		{abi.Error{Status: "fatal_io", Code: "rateLimitExceeded"}, abi.OutcomeRetry},
		{abi.Error{Status: "retryable_io"}, abi.OutcomeRetry},
		{abi.Error{Status: "denied"}, abi.OutcomeFail},
	} {
		if got := d.Classify(&c.e, 1); got.Outcome != c.want {
			t.Errorf("%+v: %s, want %s", c.e, got.Outcome, c.want)
		}
	}
}
