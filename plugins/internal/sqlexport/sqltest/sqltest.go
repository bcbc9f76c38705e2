// Package sqltest runs a built table-destination plugin (bin/plugins/<name>.wasm) in the real
// runtime with the real sql capability (host/sqlcap) bound to a test server: the conformance
// suite, and single runs with chosen run ids, generations and batches. Tests only.
package sqltest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
	"github.com/sluicehq/sluice/host/sqlcap"
)

// ErrInjected fails a run on purpose (Env.Run's failAfter).
var ErrInjected = errors.New("sqltest: the run fails here on purpose")

// T0 is the start of the test intervals.
var T0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// Module reads bin/plugins/<name>.wasm from the repository root (make plugins builds it).
func Module(t *testing.T, name string) []byte {
	t.Helper()
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			wasm, err := os.ReadFile(filepath.Join(d, "bin", "plugins", name+".wasm"))
			if err != nil {
				t.Fatalf("%v (run make plugins first)", err)
			}
			return wasm
		}
		if filepath.Dir(d) == d {
			t.Fatal("no go.mod above " + dir)
		}
	}
}

// Env is a runtime with a loaded plugin and a pool of sql connections allowed on loopback.
type Env struct {
	T      *testing.T
	RT     *runtime.Runtime
	Plugin *runtime.Plugin
	Wasm   []byte
	Pools  *sqlcap.Pools
	Params map[string]string // the sql binding of every run
	// Objects, when set, binds the object capability of the runs.
	Objects runtime.ObjectStore
	Logs    []string
}

// New loads the plugin.
func New(t *testing.T, name string, params map[string]string) *Env {
	t.Helper()
	ctx := context.Background()
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	wasm := Module(t, name)
	p, err := rt.Load(ctx, wasm, []string{abi.CapSQL, abi.CapObject}, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	pools := sqlcap.NewPools(sqlcap.Config{AllowLoopback: true})
	t.Cleanup(pools.Close)
	return &Env{T: t, RT: rt, Plugin: p, Wasm: wasm, Pools: pools, Params: params}
}

// Bind binds the sql capability for one run.
func (e *Env) Bind() *sqlcap.Binding {
	e.T.Helper()
	b, err := sqlcap.Bind(e.Pools, e.Params)
	if err != nil {
		e.T.Fatal(err)
	}
	return b
}

// Conformance runs the conformance suite with the sql capability bound to e.Params.
func (e *Env) Conformance(config map[string]any) *conformance.Report {
	b := e.Bind()
	defer b.Close()
	return conformance.Run(context.Background(), e.RT, e.Wasm, conformance.Options{Config: config, SQL: b})
}

// Run is one run of the plugin: its batches (SLB1 bytes) written in order. failAfter >= 0
// makes the run fail after that many batches (the run is closed, not finished). It returns
// the result or the run's error.
func (e *Env) Run(run string, generation, attempt int, config map[string]any, batches [][]byte, failAfter int) (abi.Result, error) {
	e.T.Helper()
	ctx := context.Background()
	b := e.Bind()
	defer b.Close()
	bind := runtime.Bindings{SQL: b, Objects: e.Objects, Encoders: conformance.Encoders,
		Log: func(l slog.Level, msg string) { e.Logs = append(e.Logs, l.String()+" "+msg) }, Metric: func(string, int64) {}}
	s, err := e.Plugin.Open(ctx, abi.OpenRequest{RunID: run, ExportID: "e", ExportName: "e", IntervalStart: T0,
		IntervalEnd: T0.Add(time.Hour), Attempt: attempt, Generation: generation, Config: config, Columns: abi.EventColumns}, bind)
	if err != nil {
		return abi.Result{}, err
	}
	defer s.Close(ctx)
	for i, batch := range batches {
		if i == failAfter {
			return abi.Result{}, ErrInjected
		}
		if err := s.WriteBatch(ctx, batch, records(batch)); err != nil {
			return abi.Result{}, err
		}
	}
	r, err := s.Finish(ctx)
	return r.Result, err
}

func records(batch []byte) int {
	r, err := abi.NewBatchReader(batch)
	if err != nil {
		return 0
	}
	return r.Records()
}

// Events encodes n demo events of the event schema, uuids numbered from first, at T0 plus
// one second each.
func Events(first, n int) []byte {
	w := abi.NewBatchWriter(abi.EventColumns, nil)
	for i := first; i < first+n; i++ {
		ev := abi.Event{Event: "$pageview", DistinctID: fmt.Sprintf("user-%d", i%7), TeamID: 1,
			Properties:    fmt.Sprintf(`{"$current_url":"https://example.com/%d","n":%d}`, i, i),
			ElementsChain: "", Timestamp: T0.Add(time.Duration(i) * time.Second), InsertedAt: T0.Add(time.Duration(i) * time.Second)}
		if i%2 == 0 { // every other event has a person and a created_at
			pid := [16]byte{0: 0xaa, 6: 0x40, 8: 0x80, 15: byte(i % 7)}
			props := `{"email":"u@example.com"}`
			at := ev.Timestamp.Add(time.Millisecond + 123*time.Microsecond)
			ev.PersonID, ev.PersonProperties, ev.CreatedAt = &pid, &props, &at
		}
		ev.UUID[15] = byte(i)
		ev.UUID[14] = byte(i >> 8)
		ev.UUID[6] = 0x40
		ev.UUID[8] = 0x80
		w.AppendEvent(&ev)
		w.EndRow()
	}
	return w.Bytes()
}
