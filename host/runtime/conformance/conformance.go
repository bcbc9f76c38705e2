// Package conformance drives any Sluice plugin through its whole lifecycle against
// in-memory capabilities and reports each step. It backs `sluice plugins test PATH.wasm`
// and the runtime's own tests.
package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// Options tune a conformance run. Zero values take defaults.
type Options struct {
	// Granted capabilities; nil grants every capability the manifest requests.
	Granted []string
	// Config overrides keys of the defaulted config given to validate and open.
	Config map[string]any
	// RowsPerBatch is the number of events in each of the 3 batches (default 100).
	RowsPerBatch int
	// Limits of the plugin (PoolSize is forced to 1 so the second run reuses the instance).
	Limits runtime.Limits
	// Encoders serves encoder_open (default: host/encode).
	Encoders runtime.EncoderFactory
	// Warehouses and Sinks bind warehouse capabilities (`call` by capability name, upload
	// sinks other than "object"), e.g. a bigquery capability on a loopback fake. Unbound,
	// a plugin's calls on them are denied.
	Warehouses map[string]runtime.Caller
	Sinks      map[string]runtime.ObjectStore
	// HTTP binds the http capability (ABI 1.1); its bodies are Sinks["http_body"]. `sluice
	// plugins test` binds it to the config's url, or to a loopback receiver that accepts
	// every request.
	HTTP runtime.HTTPCaller
	// SQL binds the sql capability (ABI 1.1).
	SQL runtime.SQLCaller
}

// Step is one checked step.
type Step struct {
	Name     string
	OK       bool
	Skipped  bool // OK, but not checked: Message says why
	Message  string
	Duration time.Duration
}

// Report is the outcome of Run.
type Report struct {
	Plugin  string
	SHA256  string
	Steps   []Step
	Objects []string // keys committed to the in-memory store
	Logs    []string // plugin log lines, "LEVEL msg"
}

// OK reports whether every step passed.
func (r *Report) OK() bool {
	for _, s := range r.Steps {
		if !s.OK {
			return false
		}
	}
	return len(r.Steps) > 0
}

// String renders the report, one line per step.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "plugin %s (sha256 %s)\n", r.Plugin, r.SHA256)
	for _, s := range r.Steps {
		mark := "PASS"
		switch {
		case !s.OK:
			mark = "FAIL"
		case s.Skipped:
			mark = "SKIP"
		}
		fmt.Fprintf(&b, "  %s %-28s %8s  %s\n", mark, s.Name, s.Duration.Round(time.Microsecond), s.Message)
	}
	return b.String()
}

type runner struct {
	rep   *Report
	store *MemStore
	mu    sync.Mutex
	logs  []string
}

func (r *runner) step(name string, f func() (string, error)) bool {
	t0 := time.Now()
	msg, err := f()
	s := Step{Name: name, OK: err == nil, Message: msg, Duration: time.Since(t0)}
	if err != nil {
		s.Message = err.Error()
	}
	r.rep.Steps = append(r.rep.Steps, s)
	return s.OK
}

// skip records a step that was not checked, and why.
func (r *runner) skip(name, why string) {
	r.rep.Steps = append(r.rep.Steps, Step{Name: name, OK: true, Skipped: true, Message: why})
}

func (r *runner) bindings(opts Options) runtime.Bindings {
	return runtime.Bindings{
		Objects:    r.store,
		Encoders:   opts.Encoders,
		Warehouses: opts.Warehouses,
		Sinks:      opts.Sinks,
		HTTP:       opts.HTTP,
		SQL:        opts.SQL,
		Log: func(level slog.Level, msg string) {
			r.mu.Lock()
			r.logs = append(r.logs, level.String()+" "+msg)
			r.mu.Unlock()
		},
		Metric: func(string, int64) {},
	}
}

// Run loads wasm into rt and runs the suite. It never panics on a bad plugin: every failure
// is a failed step. Steps after a failed load are skipped.
func Run(ctx context.Context, rt *runtime.Runtime, wasm []byte, opts Options) *Report {
	rep := &Report{SHA256: runtime.SHA256(wasm)}
	r := &runner{rep: rep, store: NewMemStore()}
	defer func() {
		rep.Objects = r.store.Objects()
		rep.Logs = r.logs
	}()
	if opts.RowsPerBatch <= 0 {
		opts.RowsPerBatch = 100
	}
	if opts.Encoders == nil {
		opts.Encoders = hostEncoders
	}
	opts.Encoders = TrackEncoders(opts.Encoders)
	opts.Limits.PoolSize = 1

	// Install checks with everything granted tell us what the plugin requests.
	var p *runtime.Plugin
	if !r.step("validate module", func() (string, error) {
		v, err := rt.Validate(ctx, wasm, []string{abi.CapObject, abi.CapBigQuery, abi.CapSnowflake, abi.CapHTTP, abi.CapSQL})
		if err != nil {
			return "", err
		}
		rep.Plugin = v.Manifest.Name
		granted := opts.Granted
		if granted == nil {
			granted = v.Manifest.Capabilities
		}
		p, err = rt.Load(ctx, wasm, granted, opts.Limits)
		if err != nil {
			return "", err
		}
		if !reflect.DeepEqual(v.Manifest, p.Manifest) {
			return "", errors.New("sluice_describe is not pure: two instances gave different manifests")
		}
		return fmt.Sprintf("%s %s, ABI 1.%d, capabilities %v", p.Manifest.Name, p.Manifest.Version, p.ABIMinor, p.Manifest.Capabilities), nil
	}) {
		return rep
	}
	defer rt.Unload(context.WithoutCancel(ctx), p)

	filled := map[string]any{} // required fields without a default nor a value in opts.Config
	r.step("manifest sanity", func() (string, error) {
		m := p.Manifest
		var probs []string
		if m.Description == "" {
			probs = append(probs, "no description")
		}
		for _, f := range m.Config {
			if f.Required && f.Default == nil && !f.Secret && opts.Config[f.Name] == nil {
				filled[f.Name] = valueOfType(f)
			}
			if f.Secret && f.Binding == "" {
				probs = append(probs, fmt.Sprintf("secret field %q binds no capability parameter (the plugin never sees it)", f.Name))
			}
		}
		if len(probs) > 0 {
			return "", errors.New(strings.Join(probs, "; "))
		}
		return fmt.Sprintf("%d config fields", len(m.Config)) + filledNote(filled), nil
	})

	config := map[string]any{}
	var secrets []string
	for _, f := range p.Manifest.Config {
		if f.Secret {
			secrets = append(secrets, f.Name)
			continue
		}
		if f.Default != nil {
			config[f.Name] = f.Default
		}
	}
	maps.Copy(config, filled)
	maps.Copy(config, opts.Config)
	r.step("validate config with defaults", func() (string, error) {
		err := p.Validate(ctx, abi.ValidateRequest{Config: config, SecretsSet: secrets})
		if err != nil && len(filled) > 0 {
			return "", fmt.Errorf("%w (the suite gave required fields without a default a value of their type%s)", err, filledNote(filled))
		}
		return "", err
	})

	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	openReq := func(run string) abi.OpenRequest {
		return abi.OpenRequest{RunID: run, ExportID: "conformance", ExportName: "conformance",
			IntervalStart: start, IntervalEnd: start.Add(time.Hour), Attempt: 1, Config: config,
			Columns: abi.EventColumns}
	}
	b := r.bindings(opts)

	// Run 1: open, three batches, finish, compare the output, classify, close.
	var s *runtime.Session
	okOpen := r.step("open", func() (string, error) {
		var err error
		s, err = p.Open(ctx, openReq("run-1"), b)
		return "", err
	})
	if okOpen {
		var sent []abi.Event
		n0 := r.store.NumCommits()
		var werr error
		okWrite := r.step("write 3 batches", func() (string, error) {
			for i := range 3 {
				evs := Events(opts.RowsPerBatch, 500, i)
				if werr = s.WriteBatch(ctx, Batch(evs), opts.RowsPerBatch); werr != nil {
					return "", fmt.Errorf("batch %d: %w", i, werr)
				}
				sent = append(sent, evs...)
			}
			return fmt.Sprintf("%d records", len(sent)), nil
		})
		if !okWrite {
			// As the host does: no sluice_finish after a failed write; classify, then close.
			r.skip("finish", "sluice_write_batch failed: the host classifies the failure and closes the run without sluice_finish")
			r.step("classify the write failure", func() (string, error) {
				c := s.Classify(ctx, werr)
				return fmt.Sprintf("%s: %s", c.Outcome, c.Reason), nil
			})
		} else if r.step("finish", func() (string, error) {
			res, err := s.Finish(ctx)
			if err != nil {
				return "", err
			}
			if res.Records != int64(len(sent)) {
				return "", fmt.Errorf("result records %d, sent %d", res.Records, len(sent))
			}
			return fmt.Sprintf("records %d, bytes %d, outputs %d", res.Records, res.Bytes, len(res.Outputs)), nil
		}) {
			r.outputStep("output matches input", p.Manifest, r.store.Commits(n0), sent)
		}
		r.step("classify retryable error", func() (string, error) {
			c := s.Classify(ctx, &runtime.PluginError{Plugin: p.Manifest.Name, Export: abi.ExportWriteBatch,
				Err: abi.Error{Message: "SlowDown: please reduce your request rate", Status: abi.StatusRetryableIO.String(), Code: "SlowDown"}})
			if c.Outcome != abi.OutcomeRetry && c.Outcome != abi.OutcomeRetryAfter {
				return "", fmt.Errorf("outcome %q (%s); want retry or retry_after", c.Outcome, c.Reason)
			}
			return fmt.Sprintf("%s %dms: %s", c.Outcome, c.RetryAfterMS, c.Reason), nil
		})
		r.step("classify fatal error", func() (string, error) {
			c := s.Classify(ctx, &runtime.PluginError{Plugin: p.Manifest.Name, Export: abi.ExportFinish,
				Err: abi.Error{Message: "AccessDenied", Status: abi.StatusFatalIO.String(), Code: "AccessDenied"}})
			if c.Outcome != abi.OutcomeFail {
				return "", fmt.Errorf("outcome %q (%s); want fail", c.Outcome, c.Reason)
			}
			return c.Reason, nil
		})
		r.step("close", func() (string, error) { return "", s.Close(ctx) })
	}

	// Run 2 on the same instance (pool of one), then a run with zero batches.
	r.step("second run on the same instance", func() (string, error) {
		s, err := p.Open(ctx, openReq("run-2"), b)
		if err != nil {
			return "", err
		}
		defer s.Close(ctx)
		n0 := r.store.NumCommits()
		evs := Events(7, 500, 9)
		if err := s.WriteBatch(ctx, Batch(evs), 7); err != nil {
			return "", err
		}
		res, err := s.Finish(ctx)
		if err != nil {
			return "", err
		}
		if res.Records != 7 {
			return "", fmt.Errorf("result records %d, sent 7 (state leaked from the first run?)", res.Records)
		}
		msg, compared, err := compareOutput(r.store.Commits(n0), evs)
		if err != nil {
			return "", err
		}
		if compared {
			return "records 7; " + msg, s.Close(ctx)
		}
		return "records 7", s.Close(ctx)
	})
	r.step("run with zero batches", func() (string, error) {
		s, err := p.Open(ctx, openReq("run-3"), b)
		if err != nil {
			return "", err
		}
		defer s.Close(ctx)
		res, err := s.Finish(ctx)
		if err != nil {
			return "", err
		}
		if res.Records != 0 {
			return "", fmt.Errorf("result records %d, sent 0", res.Records)
		}
		return "records 0", s.Close(ctx)
	})
	r.malformedSteps(ctx, p, wasm, func(i int) abi.OpenRequest { return openReq(fmt.Sprintf("malformed-%d", i)) }, b)
	r.step("no upload left open", func() (string, error) {
		if n := r.store.Open(); n != 0 {
			return "", fmt.Errorf("%d uploads neither committed nor aborted", n)
		}
		return fmt.Sprintf("%d objects committed, %d uploads aborted", len(r.store.Objects()), r.store.Aborted()), nil
	})
	if p.HasTest() {
		r.step("destination test", func() (string, error) {
			rep, err := p.Test(ctx, openReq("test"), b)
			if err != nil {
				return "", err
			}
			var bad []string
			for _, st := range rep.Steps {
				if !st.OK {
					bad = append(bad, st.Name+": "+st.Message)
				}
			}
			if len(bad) > 0 {
				return "", errors.New(strings.Join(bad, "; "))
			}
			return fmt.Sprintf("%d steps", len(rep.Steps)), nil
		})
	}
	return rep
}

// valueOfType is the value the suite gives a required field without a default: its first
// enum value, else a plain value of its type.
func valueOfType(f abi.Field) any {
	if len(f.Enum) > 0 {
		return f.Enum[0]
	}
	switch f.Type {
	case abi.TypeInteger:
		return 1
	case abi.TypeNumber:
		return 1.5
	case abi.TypeBoolean:
		return true
	case abi.TypeStringList:
		return []any{"conformance"}
	case abi.TypeObject:
		return map[string]any{}
	}
	return "conformance"
}

// filledNote names the fields valueOfType filled and the CLI flag that gives real values.
func filledNote(filled map[string]any) string {
	if len(filled) == 0 {
		return ""
	}
	names := slices.Sorted(maps.Keys(filled))
	var vals []string
	for _, n := range names {
		b, _ := json.Marshal(filled[n])
		vals = append(vals, fmt.Sprintf("%s=%s", n, b))
	}
	return fmt.Sprintf("; required without a default, given %s: give real values with sluice plugins test -config '{%q: ...}' (Options.Config from Go)",
		strings.Join(vals, ", "), names[0])
}
