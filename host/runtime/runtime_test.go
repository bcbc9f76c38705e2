package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
)

var cacheDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "sluice-runtime-cache")
	if err != nil {
		panic(err)
	}
	cacheDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

func wasm(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logSink collects runtime and plugin log lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) add(level slog.Level, msg string) {
	l.mu.Lock()
	l.lines = append(l.lines, level.String()+" "+msg)
	l.mu.Unlock()
}

func (l *logSink) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func newRuntime(t testing.TB, cfg runtime.Config) *runtime.Runtime {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = cacheDir
	}
	rt, err := runtime.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func openReq(run string) abi.OpenRequest {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return abi.OpenRequest{RunID: run, ExportID: "e1", ExportName: "test", IntervalStart: start,
		IntervalEnd: start.Add(time.Hour), Attempt: 1, Config: map[string]any{}, Columns: abi.EventColumns}
}

var smallBatch = conformance.Batch(conformance.Events(3, 200, 1))

// requireGood checks the runtime still serves a well-behaved plugin end to end.
func requireGood(t *testing.T, rt *runtime.Runtime) {
	t.Helper()
	ctx := context.Background()
	p, err := rt.Load(ctx, wasm(t, "good"), nil, runtime.Limits{})
	if err != nil {
		t.Fatalf("good plugin after hostile one: %v", err)
	}
	s, err := p.Open(ctx, openReq("good"), runtime.Bindings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, smallBatch, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// checkGoroutines waits for the goroutine count to come back to (about) before.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := goruntime.NumGoroutine()
		if n <= before+1 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:goruntime.Stack(buf, true)]
			t.Fatalf("goroutines: %d before, %d after\n%s", before, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWatModulesUpToDate(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm not on PATH")
	}
	wats, _ := filepath.Glob("testdata/*.wat")
	if len(wats) == 0 {
		t.Fatal("no .wat files")
	}
	for _, w := range wats {
		out := filepath.Join(t.TempDir(), "m.wasm")
		if b, err := exec.Command("wat2wasm", w, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", w, err, b)
		}
		got, _ := os.ReadFile(out)
		want, err := os.ReadFile(strings.TrimSuffix(w, ".wat") + ".wasm")
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: committed .wasm is stale; run: wat2wasm %s -o %s", w, w, strings.TrimSuffix(w, ".wat")+".wasm")
		}
	}
}

func TestGoodWatLifecycle(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	p, err := rt.Validate(context.Background(), wasm(t, "good"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Manifest.Name != "good" || p.ABIMinor != 0 || len(p.SHA256) != 64 {
		t.Fatalf("plugin %+v", p)
	}
	requireGood(t, rt)
	// Classify falls through to the plugin, which says retry.
	p2, _ := rt.Load(context.Background(), wasm(t, "good"), nil, runtime.Limits{})
	c := p2.Classify(context.Background(), &runtime.PluginError{Err: abi.Error{Message: "x", Status: "fatal_io"}}, 1)
	if c.Outcome != abi.OutcomeRetry || c.Reason != "wat module" {
		t.Fatalf("classify %+v", c)
	}
}

// installErr loads a module and checks the install error contains every want string.
func installErr(t *testing.T, rt *runtime.Runtime, mod []byte, granted []string, want ...string) error {
	t.Helper()
	_, err := rt.Load(context.Background(), mod, granted, runtime.Limits{})
	if err == nil {
		t.Fatal("install succeeded; want an error")
	}
	if !errors.Is(err, runtime.ErrInvalidPlugin) {
		t.Errorf("error %v does not match ErrInvalidPlugin", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	t.Logf("install error: %v", err)
	return err
}

func TestHostileInstall(t *testing.T) {
	cases := []struct {
		name string
		want []string
	}{
		{"badimport", []string{"sluice_v1.open_socket", "does not provide"}},
		{"badsig", []string{"sluice_write_batch", "(i32) -> (i32)", "want (i32, i32) -> (i64)"}},
		{"nomarker", []string{"no Sluice ABI marker", "sluice_abi_v1_1"}},
		{"future", []string{`plugin "future" needs Sluice plugin ABI 1.9; this host provides 1.0 through 1.1`}},
		{"oldrange", []string{"sluice_v1.encoder_write_range, which is part of ABI 1.1, but declares ABI 1.0"}},
		{"oldhttp", []string{`plugin "oldhttp" requests capability "http", which is part of ABI 1.1, but declares ABI 1.0`}},
		{"oldsql", []string{`plugin "oldsql" requests capability "sql", which is part of ABI 1.1, but declares ABI 1.0`}},
		{"badptr", []string{"crashed in sluice_describe (bad_pointer): returned pointer 0xffff0000 length 100, outside its 131072-byte memory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := goruntime.NumGoroutine()
			rt := newRuntime(t, runtime.Config{})
			installErr(t, rt, wasm(t, c.name), nil, c.want...)
			requireGood(t, rt)
			checkGoroutines(t, before)
		})
	}
	t.Run("oversize", func(t *testing.T) {
		rt := newRuntime(t, runtime.Config{MaxModuleBytes: 256})
		installErr(t, rt, wasm(t, "good"), nil, "plugin module is 495 bytes; the limit is 256 bytes")
	})
	t.Run("not wasm", func(t *testing.T) {
		rt := newRuntime(t, runtime.Config{})
		installErr(t, rt, []byte("\x00asm garbage"), nil, "not a valid WebAssembly module")
	})
	t.Run("capability not granted", func(t *testing.T) {
		rt := newRuntime(t, runtime.Config{})
		installErr(t, rt, wasm(t, "goguest"), nil, `plugin "go-test-guest" requests capability "object", which was not granted`)
	})
}

func TestHostileInfiniteLoop(t *testing.T) {
	before := goruntime.NumGoroutine()
	rt := newRuntime(t, runtime.Config{})
	ctx := context.Background()
	const timeout = 300 * time.Millisecond
	p, err := rt.Load(ctx, wasm(t, "loop"), nil, runtime.Limits{CallTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Open(ctx, openReq("loop"), runtime.Bindings{})
	if err != nil {
		t.Fatal(err)
	}
	// A ticker goroutine must keep ticking while the guest spins (no frozen host / GC).
	var ticks atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				ticks.Add(1)
				goruntime.GC()
			case <-stop:
				return
			}
		}
	}()
	t0 := time.Now()
	err = s.WriteBatch(ctx, smallBatch, 3)
	el := time.Since(t0)
	close(stop)
	<-done
	var de *runtime.DeadlineError
	if !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v; want DeadlineError", err)
	}
	if !strings.Contains(err.Error(), `plugin "loop": sluice_write_batch did not return within its deadline of 300ms`) {
		t.Errorf("message %q", err)
	}
	if el < timeout || el > timeout+700*time.Millisecond {
		t.Errorf("returned after %v; want about %v", el, timeout)
	}
	if n := ticks.Load(); n < int64(timeout/(10*time.Millisecond))/3 {
		t.Errorf("ticker ticked %d times during %v: host frozen", n, el)
	}
	if c := s.Classify(ctx, err); c.Outcome != abi.OutcomeRetry {
		t.Errorf("classify %+v; want retry", c)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
	t.Logf("deadline after %v, %d ticks: %v", el, ticks.Load(), err)
	requireGood(t, rt)
	checkGoroutines(t, before)
}

func runOneBatch(t *testing.T, p *runtime.Plugin, b runtime.Bindings) (*runtime.Session, error) {
	t.Helper()
	ctx := context.Background()
	s, err := p.Open(ctx, openReq("r"), b)
	if err != nil {
		t.Fatal(err)
	}
	return s, s.WriteBatch(ctx, smallBatch, 3)
}

func TestHostileMemoryBomb(t *testing.T) {
	before := goruntime.NumGoroutine()
	rt := newRuntime(t, runtime.Config{})
	p, err := rt.Load(context.Background(), wasm(t, "membomb"), nil, runtime.Limits{MemoryLimitPages: 64})
	if err != nil {
		t.Fatal(err)
	}
	s, err := runOneBatch(t, p, runtime.Bindings{})
	var te *runtime.TrapError
	if !errors.As(err, &te) || te.Kind != runtime.TrapMemory || !strings.Contains(err.Error(), "wasm error: unreachable (linear memory reached its limit of 4 MiB)") {
		t.Fatalf("err = %v; want a memory_limit trap", err)
	}
	t.Logf("memory bomb: %v", err)
	if c := s.Classify(context.Background(), err); c.Outcome != abi.OutcomeRetry {
		t.Errorf("classify first attempt %+v; want retry", c)
	}
	s.Close(context.Background())
	requireGood(t, rt)
	checkGoroutines(t, before)
}

func TestHostileTrap(t *testing.T) {
	before := goruntime.NumGoroutine()
	rt := newRuntime(t, runtime.Config{})
	p, err := rt.Load(context.Background(), wasm(t, "trap"), nil, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := runOneBatch(t, p, runtime.Bindings{})
	var te *runtime.TrapError
	if !errors.As(err, &te) || te.Kind != runtime.TrapPanic || !strings.Contains(err.Error(), `plugin "trap" crashed in sluice_write_batch (trap): wasm error: unreachable`) {
		t.Fatalf("err = %v; want an unreachable trap", err)
	}
	// Later calls on the session fail cleanly; the instance is discarded at Close.
	if _, err := s.Finish(context.Background()); err == nil || !strings.Contains(err.Error(), "instance unusable") {
		t.Errorf("finish after trap: %v", err)
	}
	s.Close(context.Background())
	// Trap: retry on attempt 1, fail on attempt 2.
	if c := runtime.HostClassify(te, 2); c.Outcome != abi.OutcomeFail {
		t.Errorf("second trap classify %+v", c)
	}
	requireGood(t, rt)
	// The trapping plugin itself still serves a new run on a fresh instance.
	s2, err := p.Open(context.Background(), openReq("again"), runtime.Bindings{})
	if err != nil {
		t.Fatalf("reopen after trap: %v", err)
	}
	s2.Close(context.Background())
	checkGoroutines(t, before)
}

func TestHostileDeniedCapability(t *testing.T) {
	before := goruntime.NumGoroutine()
	logger := &logSink{}
	rt := newRuntime(t, runtime.Config{})
	p, err := rt.Load(context.Background(), wasm(t, "denied"), nil, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	store := conformance.NewMemStore()
	_, err = p.Open(context.Background(), openReq("d"), runtime.Bindings{Objects: store, Log: logger.add})
	var pe *runtime.PluginError
	if !errors.As(err, &pe) || pe.ABIStatus() != abi.StatusDenied ||
		!strings.Contains(pe.Err.Message, `upload_open denied: capability "object" was not granted to the plugin`) {
		t.Fatalf("err = %v; want a denied PluginError", err)
	}
	if !strings.Contains(logger.text(), "WARN host: upload_open denied") {
		t.Errorf("no WARN log line for the denied call:\n%s", logger.text())
	}
	if store.Open() != 0 || len(store.Objects()) != 0 {
		t.Error("store was touched")
	}
	if c := p.Classify(context.Background(), err, 1); c.Outcome != abi.OutcomeRetry {
		// the wat module's classify always answers retry
		t.Errorf("classify %+v", c)
	}
	if c := runtime.HostClassify(err, 1); c.Outcome != abi.OutcomeFail {
		t.Errorf("host classify of denied %+v; want fail", c)
	}
	t.Logf("denied: %v", err)
	requireGood(t, rt)
	checkGoroutines(t, before)
}

func TestCancelledRun(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	p, err := rt.Load(context.Background(), wasm(t, "loop"), nil, runtime.Limits{CallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := p.Open(ctx, openReq("c"), runtime.Bindings{})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 := time.Now()
	err = s.WriteBatch(ctx, smallBatch, 3)
	if !errors.Is(err, context.Canceled) || time.Since(t0) > 2*time.Second {
		t.Fatalf("err = %v after %v; want cancelled quickly", err, time.Since(t0))
	}
	if c := s.Classify(ctx, err); c.Outcome != abi.OutcomeFail {
		t.Errorf("classify cancelled %+v; want fail", c)
	}
	s.Close(ctx)
}

func TestGoGuestConformance(t *testing.T) {
	before := goruntime.NumGoroutine()
	rt := newRuntime(t, runtime.Config{})
	for _, mode := range []string{"native", "guest"} {
		t.Run(mode, func(t *testing.T) {
			rep := conformance.Run(context.Background(), rt, wasm(t, "goguest"), conformance.Options{Config: map[string]any{"mode": mode}})
			t.Log("\n" + rep.String())
			if !rep.OK() {
				t.Fatal("conformance failed")
			}
			if len(rep.Objects) != 2 {
				t.Errorf("objects %v; want two runs' files", rep.Objects)
			}
		})
	}
	checkGoroutines(t, before)
}

func TestGoGuestOutputsAgree(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	ctx := context.Background()
	p, err := rt.Load(ctx, wasm(t, "goguest"), []string{abi.CapObject}, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	evs := conformance.Events(50, 500, 3)
	batch := conformance.Batch(evs)
	out := map[string][]byte{}
	var metrics sync.Map
	for _, mode := range []string{"native", "guest"} {
		store := conformance.NewMemStore()
		req := openReq(mode)
		req.Config = map[string]any{"mode": mode, "prefix": "x/"}
		s, err := p.Open(ctx, req, runtime.Bindings{Objects: store, Encoders: conformance.Encoders,
			Metric: func(n string, v int64) { metrics.Store(n, v) }})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteBatch(ctx, batch, 50); err != nil {
			t.Fatal(err)
		}
		res, err := s.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Close(ctx)
		b, ok := store.Object("x/" + mode + ".jsonl")
		if !ok || res.Records != 50 || res.Bytes != int64(len(b)) || len(res.Outputs) != 1 {
			t.Fatalf("%s: result %+v, object %d bytes, keys %v", mode, res, len(b), store.Objects())
		}
		out[mode] = b
	}
	if n := bytes.Count(out["guest"], []byte("\n")); n != 50 {
		t.Errorf("guest JSONL has %d lines", n)
	}
	if n := bytes.Count(out["native"], []byte("\n")); n != 50 {
		t.Errorf("native JSONL has %d lines", n)
	}
	if v, _ := metrics.Load("records_written"); v != int64(50) {
		t.Errorf("metric records_written = %v", v)
	}
}

func TestGoGuestPanic(t *testing.T) {
	before := goruntime.NumGoroutine()
	logs := &logSink{}
	rt := newRuntime(t, runtime.Config{})
	ctx := context.Background()
	p, err := rt.Load(ctx, wasm(t, "goguest"), []string{abi.CapObject}, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	req := openReq("panic")
	req.Config = map[string]any{"mode": "panic"}
	s, err := p.Open(ctx, req, runtime.Bindings{Log: logs.add})
	if err != nil {
		t.Fatal(err)
	}
	err = s.WriteBatch(ctx, smallBatch, 3)
	var te *runtime.TrapError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "panic: goguest: boom in write_batch") {
		t.Fatalf("err = %v; want a trap naming the panic", err)
	}
	t.Logf("go panic: %v", err)
	if !strings.Contains(logs.text(), "WARN panic: goguest: boom") {
		t.Errorf("stderr not captured as WARN lines:\n%s", logs.text())
	}
	s.Close(ctx)
	// The same plugin serves a healthy run afterwards on a fresh instance.
	req.Config = map[string]any{"mode": "none"}
	s, err = p.Open(ctx, req, runtime.Bindings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, smallBatch, 3); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Finish(ctx); err != nil || res.Records != 3 {
		t.Fatalf("finish %+v %v", res, err)
	}
	s.Close(ctx)
	checkGoroutines(t, before)
}

func TestGoGuestValidateAndTest(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	ctx := context.Background()
	p, err := rt.Load(ctx, wasm(t, "goguest"), []string{abi.CapObject}, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Validate(ctx, abi.ValidateRequest{Config: map[string]any{"mode": "bogus"}})
	var pe *runtime.PluginError
	if !errors.As(err, &pe) || pe.Err.Field != "mode" {
		t.Fatalf("validate: %v", err)
	}
	if err := p.Validate(ctx, abi.ValidateRequest{Config: map[string]any{"mode": "guest"}}); err != nil {
		t.Fatal(err)
	}
	rep, err := p.Test(ctx, openReq("t"), runtime.Bindings{})
	if err != nil || len(rep.Steps) != 1 || !rep.Steps[0].OK {
		t.Fatalf("test %+v %v", rep, err)
	}
}

func TestRecycleAndPool(t *testing.T) {
	var logBuf bytes.Buffer
	rt := newRuntime(t, runtime.Config{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	ctx := context.Background()
	// Recycle budget below the module's 2 pages: every instance is discarded after a run.
	p, err := rt.Load(ctx, wasm(t, "good"), nil, runtime.Limits{RecycleMemoryBytes: 65536, PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s, err := p.Open(ctx, openReq("r"), runtime.Bindings{})
		if err != nil {
			t.Fatal(err)
		}
		s.Close(ctx)
	}
	if n := strings.Count(logBuf.String(), "past the recycle budget"); n != 4 { // 3 runs + the install-time describe instance
		t.Errorf("%d instances recycled; want 4\n%s", n, logBuf.String())
	}
	// Pool of 2: a third Open waits until one closes.
	s1, _ := p.Open(ctx, openReq("1"), runtime.Bindings{})
	s2, _ := p.Open(ctx, openReq("2"), runtime.Bindings{})
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := p.Open(wctx, openReq("3"), runtime.Bindings{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third open: %v; want to wait for a free instance", err)
	}
	s1.Close(ctx)
	s3, err := p.Open(ctx, openReq("3"), runtime.Bindings{})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close(ctx)
	s3.Close(ctx)
}

func TestParallelRuns(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	ctx := context.Background()
	p, err := rt.Load(ctx, wasm(t, "goguest"), []string{abi.CapObject}, runtime.Limits{PoolSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	store := conformance.NewMemStore()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := openReq("p" + string(rune('a'+i)))
			req.Config = map[string]any{"mode": "native"}
			s, err := p.Open(ctx, req, runtime.Bindings{Objects: store, Encoders: conformance.Encoders})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close(ctx)
			if err := s.WriteBatch(ctx, smallBatch, 3); err != nil {
				errs <- err
				return
			}
			if _, err := s.Finish(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(store.Objects()); n != 6 {
		t.Errorf("%d objects", n)
	}
}
