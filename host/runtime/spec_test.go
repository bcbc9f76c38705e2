package runtime_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
)

// TestSpecEdgeCases checks what abi/SPEC.md states about its edge cases against the host,
// with testdata/specedge.wat:
//   - §1: a start section runs at instantiation, before _initialize; sluice_v1 imports
//     called from it answer internal (a log line is dropped), and the install succeeds;
//   - §3: the (0, 0) pointer/length pair is a valid empty byte string (log writes an empty
//     line); a packed result with length 0 is an empty success whatever its pointer;
//   - §7: an Error whose status and code are JSON numbers keeps its message: the status
//     number is read as that code's name, the code as its decimal text;
//   - §5: a plugin's own error has no status; a Classification document that is empty
//     (the 0 return) is not an answer, and the host applies its own rule; an empty Result
//     (the 0 return) completes the run with the number of records the host streamed.
func TestSpecEdgeCases(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, runtime.Config{})
	mod := wasm(t, "specedge")
	if _, err := rt.Validate(ctx, mod, nil); err != nil {
		t.Fatalf("install (start section before _initialize, imports answering internal): %v", err)
	}
	p, err := rt.Load(ctx, mod, nil, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}

	// §12: the conformance suite gives a required field without a default a value of its
	// type and names the CLI flag that gives it a real one.
	rep := conformance.Run(ctx, newRuntime(t, runtime.Config{}), mod, conformance.Options{})
	i := slices.IndexFunc(rep.Steps, func(s conformance.Step) bool { return s.Name == "manifest sanity" })
	if i < 0 || !rep.Steps[i].OK || !strings.Contains(rep.Steps[i].Message, `given needed="conformance"`) ||
		!strings.Contains(rep.Steps[i].Message, `sluice plugins test -config '{"needed": ...}'`) {
		t.Errorf("the suite does not name the -config flag for a required field: %+v", rep.Steps)
	}

	err = p.Validate(ctx, abi.ValidateRequest{Config: map[string]any{}})
	var pe *runtime.PluginError
	if !errors.As(err, &pe) || pe.Err.Message != "numeric status" || pe.Err.Status != "fatal_io" || pe.Err.Code != "404" {
		t.Fatalf("an Error with numeric status and code: %#v (%v)", pe, err)
	}

	var sink logSink
	s, err := p.Open(ctx, openReq("r1"), runtime.Bindings{Log: sink.add})
	if err != nil {
		t.Fatalf("open returning (12345 << 32 | 0): %v", err)
	}
	if lines := strings.Split(sink.text(), "\n"); !slices.Contains(lines, "INFO ") {
		t.Errorf("log(INFO, 0, 0) did not write an empty line: %q", lines)
	}
	batch := abi.NewBatchWriter(abi.EventColumns, nil).Bytes()
	werr := s.WriteBatch(ctx, batch, 0)
	if !errors.As(werr, &pe) || pe.Err.Message != "own failure" || pe.Err.Status != "" {
		t.Fatalf("the plugin's own error: %v", werr)
	}
	c := s.Classify(ctx, werr)
	if c.Outcome != abi.OutcomeRetry || !strings.Contains(c.Reason, `unknown outcome ""`) {
		t.Errorf("an empty Classification: %+v, want the host's rule (retry) saying why", c)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s, err = p.Open(ctx, openReq("r2"), runtime.Bindings{Log: sink.add})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Finish(ctx)
	if err != nil || res.RecordsReported || res.Records != 0 || len(res.Outputs) != 0 {
		t.Fatalf("an empty Result: %+v, %v; want success without a records count", res, err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
