package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/plugins/internal/objectexport"
	"github.com/sluicehq/sluice/sdk"
	"github.com/sluicehq/sluice/sdk/sdktest"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func TestManifestBindsAzure(t *testing.T) {
	m := manifest()
	if err := sdk.CheckManifest(m); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"container_name": "object.azure.container", "connection_string": "object.azure.connection_string",
		"account_name": "object.azure.account_name", "account_key": "object.azure.account_key",
		"endpoint_url": "object.azure.endpoint_url", "prefix": ""}
	for _, f := range m.Config {
		if b, ok := want[f.Name]; ok && f.Binding != b {
			t.Errorf("%s binds %q, want %q", f.Name, f.Binding, b)
		}
		if (f.Name == "connection_string" || f.Name == "account_key") != f.Secret {
			t.Errorf("%s: secret = %v", f.Name, f.Secret)
		}
	}
}

func TestValidateCredentials(t *testing.T) {
	h := sdktest.New()
	cases := []struct {
		cfg     map[string]any
		secrets []string
		field   string
	}{
		{map[string]any{}, []string{"connection_string"}, ""},
		{map[string]any{"account_name": "a"}, []string{"account_key"}, ""},
		{map[string]any{}, nil, "connection_string"},
		{map[string]any{"account_name": "a"}, []string{"connection_string", "account_key"}, ""}, // the connection string wins
		{map[string]any{"account_name": "a"}, nil, "account_key"},
		{map[string]any{}, []string{"account_key"}, "account_key"},
		{map[string]any{"prefix": "{nope}"}, []string{"connection_string"}, "prefix"},
		{map[string]any{"file_format": "Parquet", "compression": "rar"}, []string{"connection_string"}, "compression"},
		{map[string]any{"partition_by": "event"}, []string{"connection_string"}, "prefix"},
	}
	for _, c := range cases {
		c.cfg["container_name"] = "c"
		err := h.Validate(c.cfg, c.secrets...)
		if sdktest.ErrorField(err) != c.field {
			t.Errorf("%v %v: %v, want field %q", c.cfg, c.secrets, err, c.field)
		}
	}
}

func TestRunWritesPostHogNames(t *testing.T) {
	h := sdktest.New()
	cfg := map[string]any{"container_name": "c", "prefix": "{table}/{year}/{month}/{day}/{hour}", "columns": []string{"event"}}
	if err := h.Open(sdktest.Interval(t0, cfg)); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteBatch(sdktest.Events(abi.Event{Event: "e", Timestamp: t0, InsertedAt: t0})); err != nil {
		t.Fatal(err)
	}
	res, err := h.Finish()
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	key := "events/2026/11/28/13/2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00.jsonl"
	if string(h.Objects[key]) != `{"event":"e"}`+"\n" || res.Records != 1 {
		t.Fatalf("objects %v result %+v", h.Objects, res)
	}
	rep, err := h.Test(sdktest.Interval(t0, cfg))
	if err != nil || len(rep.Steps) != 3 || rep.Steps[2].Name != "container access" || !rep.Steps[2].OK {
		t.Fatalf("test report %+v %v", rep, err)
	}
}

func TestClassify(t *testing.T) {
	d := plugin
	cases := []struct {
		e    abi.Error
		want string
	}{
		{abi.Error{Status: "not_found", Code: "ContainerNotFound"}, abi.OutcomeFail},
		{abi.Error{Status: "denied", Code: "AuthenticationFailed"}, abi.OutcomeFail},
		{abi.Error{Status: "retryable_io", Code: "AuthorizationPermissionMismatch"}, abi.OutcomeFail},
		{abi.Error{Status: "fatal_io", Code: "ServerBusy"}, abi.OutcomeRetry},
		{abi.Error{Status: "retryable_io", Code: "OperationTimedOut"}, abi.OutcomeRetry},
		{abi.Error{Status: "denied"}, abi.OutcomeFail},
		{abi.Error{Field: "partition_by"}, abi.OutcomeFail},
		{abi.Error{Message: "connection reset"}, abi.OutcomeRetry},
	}
	for _, c := range cases {
		dest := &objectexport.Destination{P: d}
		if got := dest.Classify(&c.e, 1); got.Outcome != c.want {
			t.Errorf("%+v: %s, want %s", c.e, got.Outcome, c.want)
		}
	}
	if !strings.Contains(manifest().Description, "Azure") {
		t.Error("description")
	}
}
