package sdk

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/abi"
)

func TestDefaultClassify(t *testing.T) {
	cases := map[string]string{
		"retryable_io": abi.OutcomeRetry, "cancelled": abi.OutcomeRetry, "internal": abi.OutcomeRetry,
		"status_77": abi.OutcomeRetry, "": abi.OutcomeRetry,
		"fatal_io": abi.OutcomeFail, "denied": abi.OutcomeFail, "bad_argument": abi.OutcomeFail,
		"not_found": abi.OutcomeFail, "limit_exceeded": abi.OutcomeFail, "unimplemented": abi.OutcomeFail,
	}
	for status, want := range cases {
		if got := DefaultClassify(&abi.Error{Message: "x", Status: status}, 1); got.Outcome != want {
			t.Errorf("status %q: got %s want %s", status, got.Outcome, want)
		}
	}
	if got := (Base{}).Classify(&abi.Error{Status: "denied"}, 2); got.Outcome != abi.OutcomeFail {
		t.Errorf("Base.Classify: %+v", got)
	}
}

func TestErrorCodes(t *testing.T) {
	codes := ErrorCodes{Destination: "S3", Fatal: map[string]bool{"NoSuchBucket": true}, Retryable: map[string]bool{"SlowDown": true}}
	tests := []struct {
		name    string
		err     *abi.Error
		decided bool
		outcome string
		reason  string
	}{
		{"fatal code", &abi.Error{Code: "NoSuchBucket", Status: "retryable_io"}, true, abi.OutcomeFail, "S3 error NoSuchBucket is not retryable"},
		{"retryable code", &abi.Error{Code: "SlowDown", Status: "fatal_io"}, true, abi.OutcomeRetry, "S3 error SlowDown is transient"},
		{"config field", &abi.Error{Field: "bucket_name", Status: "bad_argument"}, true, abi.OutcomeFail, `invalid config key "bucket_name"`},
		{"unlisted code", &abi.Error{Code: "Teapot", Status: "fatal_io"}, false, "", ""},
		{"no error", nil, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := codes.Classify(tt.err)
			if ok != tt.decided || c.Outcome != tt.outcome || c.Reason != tt.reason {
				t.Fatalf("got %+v decided=%v, want %s %q decided=%v", c, ok, tt.outcome, tt.reason, tt.decided)
			}
		})
	}
}

func TestTestSteps(t *testing.T) {
	var steps TestSteps
	if !steps.Step("config", nil, "config is valid") {
		t.Fatal("a step without error failed")
	}
	if steps.Step("access", errors.New("AccessDenied"), "unused") {
		t.Fatal("a step with an error passed")
	}
	want := []abi.TestStep{{Name: "config", OK: true, Message: "config is valid"}, {Name: "access", OK: false, Message: "AccessDenied"}}
	if len(steps.Report.Steps) != 2 || steps.Report.Steps[0] != want[0] || steps.Report.Steps[1] != want[1] {
		t.Fatalf("steps %+v, want %+v", steps.Report.Steps, want)
	}
}

func TestConfigDecode(t *testing.T) {
	var cfg struct {
		Bucket string   `json:"bucket_name"`
		Size   int64    `json:"max_file_size_mb"`
		Cols   []string `json:"columns"`
	}
	rc := &RunContext{abi.OpenRequest{Config: map[string]any{"bucket_name": "b", "max_file_size_mb": float64(5),
		"columns": []any{"a", "b"}, "unknown": true}}}
	if err := rc.Config(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Bucket != "b" || cfg.Size != 5 || len(cfg.Cols) != 2 {
		t.Fatalf("%+v", cfg)
	}
	c := &Config{Values: map[string]any{"max_file_size_mb": "big"}, SecretsSet: []string{"k"}}
	err := c.Decode(&cfg)
	if e := ToABI(err); e.Field != "max_file_size_mb" {
		t.Fatalf("want a field error, got %+v", e)
	}
	if !c.SecretSet("k") || c.SecretSet("other") {
		t.Fatal("SecretSet")
	}
}

func TestToABI(t *testing.T) {
	he := &HostError{Op: "upload_open", Status: abi.StatusFatalIO, Err: abi.Error{Message: "no bucket", Code: "NoSuchBucket"}}
	e := ToABI(errors.Join(errors.New("opening"), he))
	if e.Status != "fatal_io" || e.Code != "NoSuchBucket" || !strings.Contains(e.Message, "no bucket") {
		t.Fatalf("%+v", e)
	}
	e = ToABI(WithCode(he, "Other", abi.StatusRetryableIO))
	if e.Status != "retryable_io" || e.Code != "Other" {
		t.Fatalf("%+v", e)
	}
	e = ToABI(FieldError("prefix", "bad %s", "x"))
	if e.Field != "prefix" || e.Message != "bad x" || e.Status != "" {
		t.Fatalf("%+v", e)
	}
	if !IsStatus(he, abi.StatusFatalIO) || IsStatus(errors.New("x"), abi.StatusFatalIO) {
		t.Fatal("IsStatus")
	}
}

func TestCheckManifest(t *testing.T) {
	good := abi.Manifest{Name: "s3", Version: "1.0.0", ABIVersion: "1.0", Capabilities: []string{"object"},
		Config: []abi.Field{{Name: "bucket", Type: "string", Binding: "object.bucket"},
			{Name: "key", Type: "string", Secret: true, Binding: "object.secret_access_key"}}}
	if err := CheckManifest(good); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(m *abi.Manifest){
		"name":      func(m *abi.Manifest) { m.Name = "S3!" },
		"abi":       func(m *abi.Manifest) { m.ABIVersion = "1.1" },
		"version":   func(m *abi.Manifest) { m.Version = "" },
		"type":      func(m *abi.Manifest) { m.Config = []abi.Field{{Name: "a", Type: "blob"}} },
		"duplicate": func(m *abi.Manifest) { m.Config = append(m.Config, m.Config[0]) },
		"capability": func(m *abi.Manifest) {
			m.Config = []abi.Field{{Name: "a", Type: "string", Binding: "bigquery.dataset"}}
		},
		"secret unbound": func(m *abi.Manifest) { m.Config = []abi.Field{{Name: "a", Type: "string", Secret: true}} },
	}
	for name, mut := range bad {
		m := good
		m.Config = append([]abi.Field(nil), good.Config...)
		mut(&m)
		if err := CheckManifest(m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRegisterDefaults(t *testing.T) {
	Register(abi.Manifest{Name: "x", Version: "0.1.0"}, func() Destination { return nil })
	m := Registered()
	if m.ABIVersion != "1.0" || m.Capabilities == nil || m.Config == nil {
		t.Fatalf("%+v", m)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("an invalid manifest did not panic")
		}
	}()
	Register(abi.Manifest{Name: "BAD"}, func() Destination { return nil })
}
