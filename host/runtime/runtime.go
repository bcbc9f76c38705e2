// Package runtime runs Sluice destination plugins: sandboxed WebAssembly modules that follow
// the plugin ABI (abi/SPEC.md). It owns the wazero runtime (compiler + file compilation
// cache), module validation at install, the host functions of module sluice_v1, a closed
// WASI, a pool of instances per plugin, and the lifecycle calls of a run (Session).
//
// Capabilities (object storage, encoders, warehouses, logging, metrics) are interfaces
// declared here and bound per run through Bindings; other packages implement them.
//
// Safety properties: every guest call runs under a deadline with WithCloseOnContextDone, so a
// runaway guest cannot freeze the host; every guest pointer is checked against the memory
// size; an instance that trapped, timed out, returned a bad pointer or grew past its recycle
// budget is closed and replaced. See docs/runtime.md.
package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicehq/sluice/abi"
)

// Defaults of Config and Limits (abi/SPEC.md section 11).
const (
	DefaultMaxModuleBytes     = 64 << 20
	DefaultMemoryLimitPages   = 4096 // 256 MiB
	DefaultCallTimeout        = 60 * time.Second
	DefaultMaxLogBytesPerRun  = 1 << 20
	DefaultRecycleMemoryBytes = 128 << 20
	DefaultPoolSize           = 4
	DefaultMemoryBudgetBytes  = 1 << 30 // 4 instances at the default memory limit
	DefaultControlCallTimeout = 5 * time.Second

	MaxLogLineBytes  = 8 << 10 // a longer log line is truncated
	MaxOpenHandles   = 16      // open uploads (and, separately, encoders) per run
	MaxResponseBytes = 4 << 20 // response buffer and guest documents
	MaxMetricNames   = 32      // distinct metric names per run
)

// Config configures a Runtime. Zero fields take the defaults above.
type Config struct {
	// CacheDir holds wazero's compilation cache; empty disables the file cache (compiled code
	// is then kept in memory only, for this process).
	CacheDir string
	// MaxModuleBytes refuses larger modules before parsing them.
	MaxModuleBytes int64
	// Limits are the default limits of every plugin; Load may override them per plugin.
	Limits Limits
	// MemoryBudgetBytes bounds the linear memory of all live instances of all plugins
	// together: every instance reserves its plugin's memory limit from it while it exists
	// (idle instances are evicted to make room), so instances x limit never exceeds it.
	// Default 1 GiB; it must be at least one instance's memory limit.
	MemoryBudgetBytes uint64
	// ControlCallTimeout is the deadline of _initialize, sluice_describe and
	// sluice_validate (install checks and config validation, which are answered while an
	// API request waits) and of waiting for room in the memory budget for them. Default 5 s;
	// never more than the plugin's CallTimeout.
	ControlCallTimeout time.Duration
	// Logger receives the runtime's own events (instances discarded, denied calls). Plugin
	// log lines go to Bindings.Log.
	Logger *slog.Logger
}

// MetricSink receives every value plugins report through the metric import, labelled with
// the plugin's manifest name (Bindings.Metric still receives the run's own). It is called
// inside the guest call: it must be cheap and safe for concurrent use, and it is where the
// number of distinct names per plugin is bounded (api.Metrics does).
type MetricSink interface {
	PluginMetric(plugin, name string, value int64)
}

// Limits bound one plugin's instances. Zero fields take the defaults.
type Limits struct {
	MemoryLimitPages   uint32        // linear memory cap, in 64 KiB pages
	CallTimeout        time.Duration // deadline of each guest call, host I/O inside it included
	MaxLogBytesPerRun  int           // log volume per run (or per call outside a run)
	RecycleMemoryBytes uint64        // an idle instance with more linear memory is closed
	PoolSize           int           // instances of the plugin in use at once (runs in parallel); at most MemoryBudgetBytes / memory limit
}

func (l Limits) withDefaults(d Limits) Limits {
	if l.MemoryLimitPages == 0 {
		l.MemoryLimitPages = d.MemoryLimitPages
	}
	if l.CallTimeout <= 0 {
		l.CallTimeout = d.CallTimeout
	}
	if l.MaxLogBytesPerRun <= 0 {
		l.MaxLogBytesPerRun = d.MaxLogBytesPerRun
	}
	if l.RecycleMemoryBytes == 0 {
		l.RecycleMemoryBytes = d.RecycleMemoryBytes
	}
	if l.PoolSize <= 0 {
		l.PoolSize = d.PoolSize
	}
	return l
}

var builtinLimits = Limits{
	MemoryLimitPages:   DefaultMemoryLimitPages,
	CallTimeout:        DefaultCallTimeout,
	MaxLogBytesPerRun:  DefaultMaxLogBytesPerRun,
	RecycleMemoryBytes: DefaultRecycleMemoryBytes,
	PoolSize:           DefaultPoolSize,
}

// Runtime compiles, validates and loads plugins. It is safe for concurrent use.
type Runtime struct {
	cfg    Config
	log    *slog.Logger
	cache  wazero.CompilationCache
	hostFn map[string]map[string]api.FunctionDefinition // module -> name -> definition

	budget  *memBudget
	metrics atomic.Pointer[MetricSink]

	mu      sync.Mutex
	engines map[uint32]*engine // by memory limit in pages
	loaded  map[loadKey]*Plugin
	closed  bool
}

type loadKey struct {
	sha   string
	pages uint32
}

// engine is one wazero runtime (one memory limit) with the host modules instantiated.
type engine struct {
	r     wazero.Runtime
	pages uint32
}

// New creates a runtime. Close releases it.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.MaxModuleBytes <= 0 {
		cfg.MaxModuleBytes = DefaultMaxModuleBytes
	}
	cfg.Limits = cfg.Limits.withDefaults(builtinLimits)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MemoryBudgetBytes == 0 {
		cfg.MemoryBudgetBytes = DefaultMemoryBudgetBytes
	}
	if cfg.ControlCallTimeout <= 0 {
		cfg.ControlCallTimeout = DefaultControlCallTimeout
	}
	if limit := uint64(cfg.Limits.MemoryLimitPages) * 65536; limit > cfg.MemoryBudgetBytes {
		return nil, fmt.Errorf("runtime: the plugin memory budget (%d MiB) is smaller than the memory limit of one instance (%d MiB)",
			cfg.MemoryBudgetBytes>>20, limit>>20)
	}
	rt := &Runtime{cfg: cfg, log: cfg.Logger, budget: newMemBudget(cfg.MemoryBudgetBytes), engines: map[uint32]*engine{}, loaded: map[loadKey]*Plugin{}}
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("runtime: compilation cache %s: %w", cfg.CacheDir, err)
		}
		rt.cache = c
	} else {
		rt.cache = wazero.NewCompilationCache()
	}
	e, err := rt.engineFor(ctx, cfg.Limits.MemoryLimitPages)
	if err != nil {
		rt.Close(ctx)
		return nil, err
	}
	// Record what the host modules provide, for import checks.
	rt.hostFn = map[string]map[string]api.FunctionDefinition{}
	for _, mod := range []string{abi.ImportModule, wasi_snapshot_preview1.ModuleName} {
		m := e.r.Module(mod)
		rt.hostFn[mod] = m.ExportedFunctionDefinitions()
	}
	return rt, nil
}

// Config returns the effective configuration (defaults applied).
func (rt *Runtime) Config() Config { return rt.cfg }

// UseMetrics sends the metrics plugins report (the metric import) to s, labelled with the
// plugin's name. Safe to call at any time; nil stops it.
func (rt *Runtime) UseMetrics(s MetricSink) {
	if s == nil {
		rt.metrics.Store(nil)
		return
	}
	rt.metrics.Store(&s)
}

func (rt *Runtime) metricSink() MetricSink {
	if s := rt.metrics.Load(); s != nil {
		return *s
	}
	return nil
}

func (rt *Runtime) engineFor(ctx context.Context, pages uint32) (*engine, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return nil, errors.New("runtime: closed")
	}
	if e, ok := rt.engines[pages]; ok {
		return e, nil
	}
	rc := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(rt.cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(pages).
		WithCoreFeatures(api.CoreFeaturesV2)
	r := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("runtime: wasi: %w", err)
	}
	if err := instantiateHostModule(ctx, r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("runtime: host module: %w", err)
	}
	e := &engine{r: r, pages: pages}
	rt.engines[pages] = e
	return e, nil
}

// Close closes every plugin, instance and compiled module. The file cache stays.
func (rt *Runtime) Close(ctx context.Context) error {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil
	}
	rt.closed = true
	plugins := rt.loaded
	engines := rt.engines
	rt.loaded, rt.engines = nil, nil
	rt.mu.Unlock()
	for _, p := range plugins {
		p.pool.close(ctx)
	}
	var errs []error
	for _, e := range engines {
		errs = append(errs, e.r.Close(ctx))
	}
	errs = append(errs, rt.cache.Close(ctx))
	return errors.Join(errs...)
}

// SHA256 returns the hex sha256 of a module, the key plugins are pinned and cached by.
func SHA256(wasm []byte) string {
	s := sha256.Sum256(wasm)
	return hex.EncodeToString(s[:])
}

// Validate checks a module as an install would (abi/SPEC.md sections 1, 2, 5, 7, 9): size,
// imports, marker and ABI version, export signatures, _initialize and sluice_describe, the
// manifest, and that every requested capability is granted. The returned plugin is not
// loaded: it has no instance pool and its compiled module is released.
func (rt *Runtime) Validate(ctx context.Context, wasm []byte, granted []string) (*Plugin, error) {
	limits, err := rt.effectiveLimits(rt.cfg.Limits)
	if err != nil {
		return nil, err
	}
	p, err := rt.prepare(ctx, wasm, granted, limits)
	if err != nil {
		return nil, err
	}
	p.pool.close(ctx)
	return p, nil
}

// Load validates a module (as Validate) and keeps it ready to run: compiled once per sha256
// and memory limit, with a pool of instances. Loading the same module again returns the same
// *Plugin (its grants are those of the first load; reload through a new Runtime to change
// them).
func (rt *Runtime) Load(ctx context.Context, wasm []byte, granted []string, limits Limits) (*Plugin, error) {
	limits, err := rt.effectiveLimits(limits)
	if err != nil {
		return nil, err
	}
	key := loadKey{sha: SHA256(wasm), pages: limits.MemoryLimitPages}
	rt.mu.Lock()
	if p, ok := rt.loaded[key]; ok {
		rt.mu.Unlock()
		if err := p.checkGrants(granted); err != nil {
			return nil, err
		}
		return p, nil
	}
	rt.mu.Unlock()
	p, err := rt.prepare(ctx, wasm, granted, limits)
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		p.pool.close(ctx)
		return nil, errors.New("runtime: closed")
	}
	if q, ok := rt.loaded[key]; ok { // lost a race: keep the first
		p.pool.close(ctx)
		return q, nil
	}
	rt.loaded[key] = p
	return p, nil
}

// effectiveLimits applies the defaults and fits the pool in the memory budget: at most
// budget / memory limit instances of one plugin exist at once.
func (rt *Runtime) effectiveLimits(l Limits) (Limits, error) {
	l = l.withDefaults(rt.cfg.Limits)
	if l.MemoryLimitPages > 65536 {
		return l, invalid("plugin memory limit of %d pages exceeds WebAssembly's 65536 pages (4 GiB)", l.MemoryLimitPages)
	}
	limit := uint64(l.MemoryLimitPages) * 65536
	if limit > rt.cfg.MemoryBudgetBytes {
		return l, invalid("plugin memory limit of %d MiB (%d pages) exceeds the host's plugin memory budget of %d MiB",
			limit>>20, l.MemoryLimitPages, rt.cfg.MemoryBudgetBytes>>20)
	}
	if n := rt.cfg.MemoryBudgetBytes / limit; uint64(l.PoolSize) > n {
		l.PoolSize = int(n)
	}
	return l, nil
}

// Unload closes a loaded plugin's instances and compiled module. Sessions in progress keep
// their instance until they close.
func (rt *Runtime) Unload(ctx context.Context, p *Plugin) {
	rt.mu.Lock()
	for k, q := range rt.loaded {
		if q == p {
			delete(rt.loaded, k)
		}
	}
	rt.mu.Unlock()
	p.pool.close(ctx)
}
