package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/sluicehq/sluice/abi"
)

// Plugin is a validated module. A loaded plugin (Runtime.Load) keeps its compiled module and
// a pool of instances; each call or run borrows one instance.
type Plugin struct {
	Manifest abi.Manifest
	SHA256   string
	ABIMinor int

	rt       *Runtime
	eng      *engine
	compiled wazero.CompiledModule
	limits   Limits
	hasTest  bool
	granted  map[string]bool
	pool     *pool
}

// Limits returns the plugin's effective limits.
func (p *Plugin) Limits() Limits { return p.limits }

// HasTest reports whether the plugin exports sluice_test.
func (p *Plugin) HasTest() bool { return p.hasTest }

// Granted reports whether a capability is granted to the plugin (always-granted included).
func (p *Plugin) Granted(capability string) bool { return p.granted[capability] }

// pool hands out instances, at most limits.PoolSize at a time, and recycles them.
type pool struct {
	p      *Plugin
	sem    chan struct{}
	mu     sync.Mutex
	idle   []*instance
	out    int
	closed bool
}

func newPool(p *Plugin) *pool {
	return &pool{p: p, sem: make(chan struct{}, p.limits.PoolSize)}
}

func (pl *pool) get(ctx context.Context) (*instance, error) { return pl.getFor(ctx, false) }

// getFor borrows an instance; control (describe, validate) bounds the wait for room in the
// memory budget by ControlCallTimeout.
func (pl *pool) getFor(ctx context.Context, control bool) (*instance, error) {
	select {
	case pl.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, &CancelledError{Plugin: pl.p.Manifest.Name, Export: "instance pool", Err: ctx.Err()}
	}
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		<-pl.sem
		return nil, &HostError{Status: abi.StatusInternal, Msg: fmt.Sprintf("plugin %q is unloaded", pl.p.Manifest.Name)}
	}
	pl.out++
	if n := len(pl.idle); n > 0 {
		in := pl.idle[n-1]
		pl.idle = pl.idle[:n-1]
		pl.mu.Unlock()
		return in, nil
	}
	pl.mu.Unlock()
	in, err := pl.p.newInstance(ctx, control)
	if err != nil {
		pl.mu.Lock()
		pl.out--
		pl.maybeReleaseLocked(context.Background())
		pl.mu.Unlock()
		<-pl.sem
		return nil, err
	}
	return in, nil
}

// put returns an instance: kept if healthy and within its memory budget, else closed.
func (pl *pool) put(in *instance) {
	ctx := context.Background()
	reason := in.broken
	if reason == "" && uint64(in.mem.Size()) > pl.p.limits.RecycleMemoryBytes {
		reason = fmt.Sprintf("linear memory %d bytes is past the recycle budget of %d bytes", in.mem.Size(), pl.p.limits.RecycleMemoryBytes)
	}
	pl.mu.Lock()
	pl.out--
	if reason == "" && pl.closed {
		reason = "plugin unloaded"
	}
	if reason == "" {
		pl.idle = append(pl.idle, in)
	}
	pl.mu.Unlock()
	if reason != "" {
		pl.p.rt.log.Info("plugin instance discarded", "plugin", pl.p.Manifest.Name, "sha256", pl.p.SHA256[:12], "reason", reason)
		in.destroy(ctx)
		pl.mu.Lock()
		pl.maybeReleaseLocked(ctx)
		pl.mu.Unlock()
	}
	<-pl.sem
}

// close closes idle instances now and the compiled module once every instance is back.
func (pl *pool) close(ctx context.Context) {
	pl.mu.Lock()
	pl.closed = true
	idle := pl.idle
	pl.idle = nil
	pl.mu.Unlock()
	for _, in := range idle {
		in.destroy(ctx)
	}
	pl.mu.Lock()
	pl.maybeReleaseLocked(ctx)
	pl.mu.Unlock()
}

func (pl *pool) maybeReleaseLocked(ctx context.Context) {
	if pl.closed && pl.out == 0 && pl.p.compiled != nil {
		pl.p.compiled.Close(ctx)
		pl.p.compiled = nil
	}
}

// Instance states for the host functions: which imports a call may use.
type callMode int

const (
	modeControl  callMode = iota // describe, validate: log and metrics only, others denied
	modeRun                      // open, write_batch, finish, close, test: capabilities bound
	modeClassify                 // classify: log, log_enabled, metric only
)

type guestFns struct {
	initialize, alloc, describe, validate, open, writeBatch, finish, classify, close, test api.Function
}

// instance is one module instance and its host-side state. One call at a time.
type instance struct {
	p   *Plugin
	mod api.Module
	mem api.Memory
	fn  guestFns

	broken string // non-empty: discard on return to the pool

	lin      linearMemory  // the linear memory, allocated by the runtime
	reserved uint64        // bytes of the memory budget this instance holds
	timeout  time.Duration // deadline of the current call

	// Current call.
	export  string
	callCtx context.Context
	mode    callMode
	hostErr error // last capability error met during the current call

	// Response buffer (SPEC section 3).
	resp    []byte
	hasResp bool

	// Current batch (valid only during sluice_write_batch).
	batch     []byte
	batchID   uint32
	batchLive bool
	batchOffs []int // row offsets of batch, computed by the first encoder_write_range

	run    runState
	stdout *lineWriter
	stderr *lineWriter
}

type runState struct {
	b        Bindings
	cols     []abi.Column
	uploads  map[uint32]*uploadH
	encoders map[uint32]*encoderH
	next     uint32
	metrics  map[string]bool
	logUsed  int
	dropped  int
}

type instKey struct{}

// newInstance instantiates the module. control: for describe or validate, which wait for
// room in the memory budget at most ControlCallTimeout.
func (p *Plugin) newInstance(ctx context.Context, control bool) (*instance, error) {
	if p.compiled == nil {
		return nil, &HostError{Status: abi.StatusInternal, Msg: fmt.Sprintf("plugin %q is unloaded", p.Manifest.Name)}
	}
	in := &instance{p: p}
	// Room in the host's memory budget first: the instance may grow to its limit.
	rctx, rcancel := ctx, context.CancelFunc(func() {})
	if control {
		rctx, rcancel = context.WithTimeout(ctx, p.rt.cfg.ControlCallTimeout)
	}
	reserved, err := p.reserveMemory(rctx)
	rcancel()
	if err != nil {
		return nil, err
	}
	in.reserved = reserved
	in.stdout = &lineWriter{in: in, level: slog.LevelInfo}
	in.stderr = &lineWriter{in: in, level: slog.LevelWarn, keepTail: true}
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous: one compiled module, many instances
		WithStartFunctions().
		WithStdout(in.stdout).
		WithStderr(in.stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	ictx, cancel := context.WithTimeout(ctx, p.limits.CallTimeout)
	defer cancel()
	ictx = experimental.WithMemoryAllocator(ictx, experimental.MemoryAllocatorFunc(func(capBytes, maxBytes uint64) experimental.LinearMemory {
		in.lin = newLinearMemory(capBytes, maxBytes)
		return in.lin
	}))
	mod, err := p.eng.r.InstantiateModule(ictx, p.compiled, cfg)
	if err != nil {
		in.destroy(ctx)
		return nil, invalid("plugin %q could not be instantiated: %v", p.Manifest.Name, err)
	}
	in.mod = mod
	in.mem = mod.ExportedMemory("memory")
	if in.mem == nil {
		in.destroy(ctx)
		return nil, invalid("plugin %q does not export its memory", p.Manifest.Name)
	}
	f := &in.fn
	f.initialize = mod.ExportedFunction(abi.ExportInitialize)
	f.alloc = mod.ExportedFunction(abi.ExportAlloc)
	f.describe = mod.ExportedFunction(abi.ExportDescribe)
	f.validate = mod.ExportedFunction(abi.ExportValidate)
	f.open = mod.ExportedFunction(abi.ExportOpen)
	f.writeBatch = mod.ExportedFunction(abi.ExportWriteBatch)
	f.finish = mod.ExportedFunction(abi.ExportFinish)
	f.classify = mod.ExportedFunction(abi.ExportClassify)
	f.close = mod.ExportedFunction(abi.ExportClose)
	f.test = mod.ExportedFunction(abi.ExportTest)
	if f.initialize != nil {
		in.beginCall(nil, modeControl)
		if _, err := in.call(ctx, abi.ExportInitialize, f.initialize); err != nil {
			in.destroy(ctx)
			return nil, err
		}
	}
	return in, nil
}

// destroy closes the module, gives its linear memory back to the OS and its reservation
// back to the memory budget. The instance must not be in a call.
func (in *instance) destroy(ctx context.Context) {
	if in.mod != nil {
		in.mod.Close(ctx)
	}
	if in.lin != nil {
		in.lin.release()
	}
	if in.reserved > 0 {
		in.p.rt.budget.release(in.reserved)
		in.reserved = 0
	}
}

// beginCall resets per-call state. b is nil outside a run (no capabilities bound).
func (in *instance) beginCall(b *Bindings, mode callMode) {
	in.mode = mode
	in.hostErr = nil
	in.timeout = in.p.limits.CallTimeout
	if mode == modeControl {
		in.timeout = min(in.timeout, in.p.rt.cfg.ControlCallTimeout)
	}
	if b != nil {
		in.run.b = *b
	}
	if mode == modeControl {
		in.run = runState{}
	}
}

// call runs one export under the per-call deadline and turns failures into typed errors.
func (in *instance) call(ctx context.Context, export string, fn api.Function, params ...uint64) ([]uint64, error) {
	name := in.p.Manifest.Name
	if in.broken != "" {
		return nil, &HostError{Status: abi.StatusInternal, Msg: fmt.Sprintf("plugin %q: instance unusable (%s)", name, in.broken)}
	}
	if fn == nil {
		in.broken = "export missing"
		return nil, &TrapError{Plugin: name, Export: export, Kind: TrapMissingExport, Detail: "the export does not exist"}
	}
	if err := ctx.Err(); err != nil {
		return nil, &CancelledError{Plugin: name, Export: export, Err: err}
	}
	timeout := in.timeout
	if timeout <= 0 {
		timeout = in.p.limits.CallTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cctx = context.WithValue(cctx, instKey{}, in)
	in.export, in.callCtx = export, cctx
	in.stderr.tail = in.stderr.tail[:0]
	res, err := fn.Call(cctx, params...)
	in.callCtx = nil
	if err == nil {
		return res, nil
	}
	in.stdout.flush()
	in.stderr.flush()
	if perr := ctx.Err(); perr != nil {
		in.broken = "call cancelled: " + perr.Error()
		return nil, &CancelledError{Plugin: name, Export: export, Err: perr}
	}
	if errors.Is(cctx.Err(), context.DeadlineExceeded) {
		in.broken = "call deadline exceeded"
		return nil, &DeadlineError{Plugin: name, Export: export, Timeout: timeout}
	}
	first, stack, _ := strings.Cut(err.Error(), "\n")
	te := &TrapError{Plugin: name, Export: export, Kind: TrapPanic, Detail: first, Stack: strings.TrimSpace(stack), Err: err}
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		te.Kind = TrapExit
		te.Detail = fmt.Sprintf("the guest exited with code %d", ee.ExitCode())
	}
	if limit := uint64(in.p.limits.MemoryLimitPages) * 65536; uint64(in.mem.Size())+65536*16 > limit {
		te.Kind = TrapMemory
		te.Detail += fmt.Sprintf(" (linear memory reached its limit of %d MiB)", limit>>20)
	}
	if tail := in.stderr.panicLine(); tail != "" {
		te.Detail += "; guest stderr: " + tail
	}
	in.broken = "trapped: " + te.Detail
	in.p.rt.log.Warn("plugin trapped", "plugin", name, "export", export, "kind", te.Kind, "detail", te.Detail, "stack", te.Stack)
	return nil, te
}

// callDoc calls an export returning a packed pointer and copies the document out.
func (in *instance) callDoc(ctx context.Context, export string, fn api.Function, params ...uint64) ([]byte, error) {
	res, err := in.call(ctx, export, fn, params...)
	if err != nil {
		return nil, err
	}
	ptr, n := abi.UnpackPtr(res[0])
	if n == 0 {
		return nil, nil
	}
	if n > MaxResponseBytes {
		in.broken = "document too large"
		return nil, &TrapError{Plugin: in.p.Manifest.Name, Export: export, Kind: TrapBadOutput,
			Detail: fmt.Sprintf("returned a %d-byte document; the limit is %d bytes", n, MaxResponseBytes)}
	}
	b, ok := in.mem.Read(ptr, n)
	if !ok {
		in.broken = "bad pointer"
		return nil, &TrapError{Plugin: in.p.Manifest.Name, Export: export, Kind: TrapBadPointer,
			Detail: fmt.Sprintf("returned pointer %#x length %d, outside its %d-byte memory", ptr, n, in.mem.Size())}
	}
	return bytes.Clone(b), nil
}

// decode parses an export's document: an {"error": ...} envelope becomes a *PluginError.
func (in *instance) decode(export string, doc []byte, out any) error {
	if len(doc) == 0 {
		return nil
	}
	var env struct {
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(doc, &env); err != nil {
		in.broken = "bad output"
		return &TrapError{Plugin: in.p.Manifest.Name, Export: export, Kind: TrapBadOutput,
			Detail: fmt.Sprintf("returned a document that is not a JSON object: %v", err)}
	}
	if len(env.Error) > 0 {
		e, ok := readError(env.Error)
		if !ok || e.Message == "" {
			e.Message = "the plugin reported an error without a message: " + truncate(string(env.Error), 200)
		}
		pe := &PluginError{Plugin: in.p.Manifest.Name, Export: export, Err: e}
		if in.hostErr != nil && e.Status != "" && StatusOf(in.hostErr).String() == e.Status {
			pe.Cause = in.hostErr
		}
		return pe
	}
	if out != nil {
		if err := json.Unmarshal(doc, out); err != nil {
			return &TrapError{Plugin: in.p.Manifest.Name, Export: export, Kind: TrapBadOutput,
				Detail: fmt.Sprintf("returned a document of the wrong shape: %v", err)}
		}
	}
	return nil
}

// readError reads a plugin's Error document. status and code are strings (a status name,
// a destination code); a plugin that writes either as a JSON number keeps its message: the
// number is read as that status code (SPEC section 7) or as the code's decimal text.
func readError(raw json.RawMessage) (abi.Error, bool) {
	var doc struct {
		Message string          `json:"message"`
		Status  json.RawMessage `json:"status"`
		Field   string          `json:"field"`
		Code    json.RawMessage `json:"code"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return abi.Error{}, false
	}
	e := abi.Error{Message: doc.Message, Field: doc.Field}
	var ok1, ok2 bool
	e.Status, ok1 = stringOrNumber(doc.Status, func(n uint64) string { return abi.Status(n).String() })
	e.Code, ok2 = stringOrNumber(doc.Code, func(n uint64) string { return strconv.FormatUint(n, 10) })
	return e, ok1 && ok2
}

// stringOrNumber reads an absent or null value as "", a string as is, and a non-negative
// integer through num; anything else is not ok.
func stringOrNumber(raw json.RawMessage, num func(uint64) string) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n uint64
	if json.Unmarshal(raw, &n) == nil && n <= 0xffffffff {
		return num(n), true
	}
	return "", false
}

// pass copies data into guest memory through sluice_alloc.
func (in *instance) pass(ctx context.Context, export string, data []byte) (ptr, n uint32, err error) {
	if len(data) > MaxResponseBytes {
		return 0, 0, &HostError{Status: abi.StatusLimitExceeded, Msg: fmt.Sprintf("plugin %q: %s request of %d bytes exceeds %d bytes", in.p.Manifest.Name, export, len(data), MaxResponseBytes)}
	}
	res, err := in.call(ctx, abi.ExportAlloc, in.fn.alloc, uint64(len(data)))
	if err != nil {
		return 0, 0, err
	}
	ptr = uint32(res[0])
	if ptr == 0 {
		return 0, 0, &HostError{Status: abi.StatusLimitExceeded, Msg: fmt.Sprintf("plugin %q: sluice_alloc(%d) returned 0 (out of memory) before %s", in.p.Manifest.Name, len(data), export)}
	}
	if !in.mem.Write(ptr, data) {
		in.broken = "bad pointer"
		return 0, 0, &TrapError{Plugin: in.p.Manifest.Name, Export: abi.ExportAlloc, Kind: TrapBadPointer,
			Detail: fmt.Sprintf("sluice_alloc(%d) returned %#x, outside its %d-byte memory", len(data), ptr, in.mem.Size())}
	}
	return ptr, uint32(len(data)), nil
}

// callJSON marshals req, passes it to an (ptr, len) -> i64 export and decodes the result.
func (in *instance) callJSON(ctx context.Context, export string, fn api.Function, req, out any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return &HostError{Status: abi.StatusInternal, Msg: fmt.Sprintf("encode %s request: %v", export, err)}
	}
	if fn == nil {
		return in.decode(export, nil, nil)
	}
	ptr, n, err := in.pass(ctx, export, data)
	if err != nil {
		return err
	}
	doc, err := in.callDoc(ctx, export, fn, uint64(ptr), uint64(n))
	if err != nil {
		return err
	}
	return in.decode(export, doc, out)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// lineWriter turns guest stdout/stderr into log lines (bounded).
type lineWriter struct {
	in       *instance
	level    slog.Level
	buf      []byte
	keepTail bool
	tail     []string // last lines, for trap messages (stderr)
}

func (w *lineWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			room := MaxLogLineBytes - len(w.buf)
			if len(b) > room {
				w.buf = append(w.buf, b[:room]...)
				w.flush()
				b = b[room:]
				continue
			}
			w.buf = append(w.buf, b...)
			break
		}
		w.buf = append(w.buf, b[:min(i, max(0, MaxLogLineBytes-len(w.buf)))]...)
		w.flush()
		b = b[i+1:]
	}
	return n, nil
}

func (w *lineWriter) flush() {
	if len(w.buf) == 0 {
		return
	}
	line := string(w.buf)
	w.buf = w.buf[:0]
	if w.keepTail {
		w.tail = append(w.tail, line)
		if len(w.tail) > 16 {
			w.tail = w.tail[len(w.tail)-16:]
		}
	}
	w.in.emitLog(w.level, line)
}

// panicLine returns the last "panic:" line written to stderr during the current call, if any.
func (w *lineWriter) panicLine() string {
	for i := len(w.tail) - 1; i >= 0; i-- {
		if strings.HasPrefix(w.tail[i], "panic:") || strings.HasPrefix(w.tail[i], "fatal error:") {
			return truncate(w.tail[i], 512)
		}
	}
	return ""
}
