package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/sluicehq/sluice/abi"
)

// Destination is what a plugin implements: one value serves one run, from Open to the end
// of the run (Finish, then Close). Register gives the SDK a constructor; it makes a fresh
// Destination for every run, so run state can live in the struct's fields.
//
// Optional behaviour (Validate, Classify, Test, Close) comes from the interfaces Validator,
// Classifier, Tester and Closer; embedding Base provides defaults for all four.
type Destination interface {
	// Open starts a run. Parse the config (rc.Config), keep what the run needs.
	Open(rc *RunContext) error
	// WriteBatch receives one batch. The batch handle is valid only during the call: hand it
	// to an Encoder (host-native, no copy) or read the records (Batch.Events, Batch.Rows).
	WriteBatch(b *Batch) error
	// Finish completes the run (commit uploads, run load statements) and reports it.
	Finish() (abi.Result, error)
}

// Validator checks a destination config at export creation and update, after the host
// checked it against the manifest's schema. Return FieldError to name the key at fault.
type Validator interface {
	Validate(c *Config) error
}

// Classifier decides what to do with a failed run (sluice_classify). It must not call host
// functions other than Log and Metric.
type Classifier interface {
	Classify(e *abi.Error, attempt int) abi.Classification
}

// Tester checks the destination (credentials, bucket or table access) for the export's
// "test" button. It should not write data, or must remove what it wrote.
type Tester interface {
	Test(rc *RunContext) (abi.TestReport, error)
}

// Closer ends a run on the instance whatever happened (after Finish, or after a failure).
// Uploads the run opened and did not commit are aborted by the SDK after Close returns.
type Closer interface {
	Close() error
}

// Base gives a Destination the default optional behaviour; embed it:
//
//	type dest struct {
//		sdk.Base
//		...
//	}
type Base struct{}

// Validate accepts every config the host's schema check let through.
func (Base) Validate(*Config) error { return nil }

// Classify applies DefaultClassify.
func (Base) Classify(e *abi.Error, attempt int) abi.Classification {
	return DefaultClassify(e, attempt)
}

// Test reports a single step saying that the plugin has no destination test.
func (Base) Test(*RunContext) (abi.TestReport, error) {
	return abi.TestReport{Steps: []abi.TestStep{{Name: "destination test", OK: true,
		Message: "this plugin implements no destination test; its config was validated"}}}, nil
}

// Close does nothing.
func (Base) Close() error { return nil }

// DefaultClassify is PostHog-like: a failure whose status is retryable_io, cancelled,
// internal (or unknown), or that came from the plugin itself without a status, is retried;
// fatal_io, denied, bad_argument, not_found, limit_exceeded and unimplemented fail the run.
func DefaultClassify(e *abi.Error, attempt int) abi.Classification {
	if e == nil || e.Status == "" {
		return abi.Classification{Outcome: abi.OutcomeRetry, Reason: "plugin error"}
	}
	st, ok := abi.StatusByName(e.Status)
	if !ok {
		st = abi.StatusInternal // SPEC section 4: an unknown code is internal
	}
	switch st {
	case abi.StatusFatalIO, abi.StatusDenied, abi.StatusBadArgument, abi.StatusNotFound,
		abi.StatusLimitExceeded, abi.StatusUnimplemented:
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: "non-retryable status " + st.String()}
	}
	return abi.Classification{Outcome: abi.OutcomeRetry, Reason: "retryable status " + st.String()}
}

// RunContext is the context of one run: the OpenRequest (run id, interval, attempt,
// columns...) and its config. The OpenRequest's fields are promoted (rc.IntervalStart);
// the raw config map is rc.OpenRequest.Config.
type RunContext struct {
	abi.OpenRequest
}

// Config decodes the run's non-secret config (defaults applied by the host) into v, a
// pointer to a struct with json tags. Unknown keys are ignored.
func (rc *RunContext) Config(v any) error { return decodeConfig(rc.OpenRequest.Config, v) }

// Config is the input of Validate: the non-secret config, defaults applied, and which
// secret fields have a value (their values are never given to the plugin).
type Config struct {
	Values     map[string]any
	SecretsSet []string
}

// Decode decodes the config into v, like RunContext.Config.
func (c *Config) Decode(v any) error { return decodeConfig(c.Values, v) }

// SecretSet reports whether the secret field name has a value.
func (c *Config) SecretSet(name string) bool { return slices.Contains(c.SecretsSet, name) }

func decodeConfig(m map[string]any, v any) error {
	if m == nil {
		m = map[string]any{}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("sdk: config: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return FieldError(te.Field, "config key %q: %v", te.Field, err)
		}
		return fmt.Errorf("sdk: config: %w", err)
	}
	return nil
}

// Error is a plugin error carrying the fields of abi.Error that the host and Classify see:
// Field (the config key at fault), Code (a destination code) and Status (a status name).
// Build one with FieldError or WithCode; errors.As finds it through wrapping.
type Error struct {
	Field  string
	Code   string
	Status string
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "sdk: error"
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// FieldError is a validation error naming the config key at fault.
func FieldError(field, format string, args ...any) error {
	return &Error{Field: field, Err: fmt.Errorf(format, args...)}
}

// WithCode attaches a destination code (an S3 error code, a Snowflake error number) and,
// if not empty, a status name to err, for Classify.
func WithCode(err error, code string, status abi.Status) error {
	if err == nil {
		return nil
	}
	e := &Error{Code: code, Err: err}
	if status != abi.StatusOK {
		e.Status = status.String()
	}
	return e
}

// ToABI converts an error returned by plugin code into the abi.Error the host receives:
// the message is err.Error(); status and code come from a *HostError in the chain (the
// first host call that failed), overridden by an *Error's non-empty fields.
func ToABI(err error) *abi.Error {
	out := &abi.Error{Message: err.Error()}
	var he *HostError
	if errors.As(err, &he) {
		out.Status = he.Status.String()
		out.Code = he.Err.Code
		out.Field = he.Err.Field
	}
	var se *Error
	if errors.As(err, &se) {
		if se.Field != "" {
			out.Field = se.Field
		}
		if se.Code != "" {
			out.Code = se.Code
		}
		if se.Status != "" {
			out.Status = se.Status
		}
	}
	return out
}

// HostError is a failed host call. Status is the call's status; Err the Error document the
// host left in the response buffer (its Message may be empty if there was none).
type HostError struct {
	Op     string // the import, e.g. "upload_commit"
	Status abi.Status
	Err    abi.Error
}

func (e *HostError) Error() string {
	msg := "sluice: " + e.Op + ": " + e.Status.String()
	if e.Err.Message != "" {
		msg += ": " + e.Err.Message
	}
	if e.Err.Code != "" {
		msg += " (code " + e.Err.Code + ")"
	}
	return msg
}

// IsStatus reports whether err is a *HostError with status st.
func IsStatus(err error, st abi.Status) bool {
	var he *HostError
	return errors.As(err, &he) && he.Status == st
}

// ErrorCodes classifies failures by the destination's own error code (Error.code: an S3
// error code, a BigQuery reason, a Snowflake error number), the way PostHog's destinations
// list their retryable and non-retryable errors. A plugin's Classify consults it first and
// falls back to DefaultClassify.
type ErrorCodes struct {
	Destination string          // named in the reason: "S3", "BigQuery"...
	Retryable   map[string]bool // transient: retry
	Fatal       map[string]bool // permanent: fail the run
}

// Classify decides e when its code is listed, or when it names a config field (a bad
// config fails the run); ok is false otherwise.
func (c ErrorCodes) Classify(e *abi.Error) (_ abi.Classification, ok bool) {
	switch {
	case e == nil:
		return abi.Classification{}, false
	case c.Fatal[e.Code]:
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: c.Destination + " error " + e.Code + " is not retryable"}, true
	case c.Retryable[e.Code]:
		return abi.Classification{Outcome: abi.OutcomeRetry, Reason: c.Destination + " error " + e.Code + " is transient"}, true
	case e.Field != "":
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: "invalid config key " + strconv.Quote(e.Field)}, true
	}
	return abi.Classification{}, false
}

// TestSteps builds the report of a destination's Test, one step at a time.
type TestSteps struct {
	Report abi.TestReport
}

// Step records a step that passed with okMsg when err is nil, or failed with err's text; it
// returns whether the step passed, so that a Test can stop at the first failure.
func (t *TestSteps) Step(name string, err error, okMsg string) bool {
	s := abi.TestStep{Name: name, OK: err == nil, Message: okMsg}
	if err != nil {
		s.Message = err.Error()
	}
	t.Report.Steps = append(t.Report.Steps, s)
	return err == nil
}
