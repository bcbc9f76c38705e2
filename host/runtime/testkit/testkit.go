// Package testkit is the plugin author's test kit: it runs one plugin module (any
// language) through a single run over recorded SLB1 batches (the abi/testdata vectors, or
// batches an author saved) against an in-memory object store and the host's real encoders,
// without a running host, and returns what the plugin wrote. It backs `sluice plugins
// run`; the conformance suite (`sluice plugins test`) checks the lifecycle, this shows the
// output.
package testkit

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
)

// Options describe the run.
type Options struct {
	// Config is the export's non-secret config; the manifest's defaults fill missing keys.
	Config map[string]any
	// Batches are SLB1 batches, written in order. They must share their columns, which
	// become OpenRequest.columns (the event schema when there is no batch).
	Batches [][]byte
	// Granted capabilities; nil grants what the manifest requests.
	Granted []string
	// IntervalStart of the run (default 2025-01-01T00:00:00Z); the interval is one hour.
	IntervalStart time.Time
}

// Output is what the run did.
type Output struct {
	Plugin string
	// Result is sluice_finish's answer (zero when the run failed).
	Result abi.Result
	// Err is the first failure (open, a batch, finish), nil for a completed run; then
	// Classification is the plugin's sluice_classify decision on it.
	Err            error
	Classification abi.Classification
	// Objects committed to the memory store, by key; Logs are the plugin's lines.
	Objects map[string][]byte
	Logs    []string
}

// ReadBatchFile reads one recorded batch: hex text (the abi/testdata/*.hex vectors,
// whitespace ignored) when the file name ends in .hex, raw SLB1 bytes otherwise.
func ReadBatchFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(path, ".hex") {
		return b, nil
	}
	out, err := hex.DecodeString(strings.Join(strings.Fields(string(b)), ""))
	if err != nil {
		return nil, fmt.Errorf("%s: not hex text: %w", path, err)
	}
	return out, nil
}

// Run loads wasm into rt and runs open, every batch, finish and close. A failure of the
// plugin is Output.Err (with the plugin's classification), not an error: the error result
// is for a module that cannot be loaded or batches that cannot be read.
func Run(ctx context.Context, rt *runtime.Runtime, wasm []byte, opts Options) (*Output, error) {
	cols := abi.EventColumns
	counts := make([]int, len(opts.Batches))
	for i, b := range opts.Batches {
		r, err := abi.NewBatchReader(b)
		if err != nil {
			return nil, fmt.Errorf("batch %d: %w", i, err)
		}
		if i == 0 {
			cols = r.Columns()
		}
		counts[i] = r.Records()
	}
	v, err := rt.Validate(ctx, wasm, []string{abi.CapObject, abi.CapBigQuery, abi.CapSnowflake, abi.CapHTTP, abi.CapSQL})
	if err != nil {
		return nil, err
	}
	granted := opts.Granted
	if granted == nil {
		granted = v.Manifest.Capabilities
	}
	p, err := rt.Load(ctx, wasm, granted, runtime.Limits{PoolSize: 1})
	if err != nil {
		return nil, err
	}
	defer rt.Unload(context.WithoutCancel(ctx), p)

	config := map[string]any{}
	for _, f := range p.Manifest.Config {
		if !f.Secret && f.Default != nil {
			config[f.Name] = f.Default
		}
	}
	for k, val := range opts.Config {
		config[k] = val
	}
	start := opts.IntervalStart
	if start.IsZero() {
		start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	store := conformance.NewMemStore()
	out := &Output{Plugin: p.Manifest.Name, Objects: map[string][]byte{}}
	var mu sync.Mutex
	b := runtime.Bindings{Objects: store, Encoders: conformance.Encoders,
		Log: func(level slog.Level, msg string) {
			mu.Lock()
			out.Logs = append(out.Logs, level.String()+" "+msg)
			mu.Unlock()
		},
		Metric: func(string, int64) {}}
	defer func() {
		for _, k := range store.Objects() {
			out.Objects[k], _ = store.Object(k)
		}
	}()

	if err := p.Validate(ctx, abi.ValidateRequest{Config: config}); err != nil {
		out.Err = fmt.Errorf("validate: %w", err)
		return out, nil
	}
	s, err := p.Open(ctx, abi.OpenRequest{RunID: "testkit", ExportID: "testkit", ExportName: "testkit",
		IntervalStart: start, IntervalEnd: start.Add(time.Hour), Attempt: 1, Config: config, Columns: cols}, b)
	if err != nil {
		out.Err = fmt.Errorf("open: %w", err)
		out.Classification = p.Classify(ctx, err, 1)
		return out, nil
	}
	fail := func(err error) (*Output, error) {
		out.Err = err
		out.Classification = s.Classify(ctx, err)
		if cerr := s.Close(context.WithoutCancel(ctx)); cerr != nil {
			out.Logs = append(out.Logs, "ERROR close after the failure: "+cerr.Error())
		}
		return out, nil
	}
	for i, batch := range opts.Batches {
		if err := s.WriteBatch(ctx, batch, counts[i]); err != nil {
			return fail(fmt.Errorf("batch %d: %w", i, err))
		}
	}
	res, err := s.Finish(ctx)
	if err != nil {
		return fail(fmt.Errorf("finish: %w", err))
	}
	out.Result = res.Result
	if err := s.Close(ctx); err != nil {
		out.Err = fmt.Errorf("close: %w", err)
	}
	return out, nil
}
