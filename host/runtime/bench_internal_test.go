package runtime

import (
	"context"
	"os"
	"testing"

	"github.com/sluicehq/sluice/abi"
)

func goguest(b *testing.B) []byte {
	w, err := os.ReadFile("testdata/goguest.wasm")
	if err != nil {
		b.Fatal(err)
	}
	return w
}

func compileOnce(b *testing.B, dir string, w []byte) {
	ctx := context.Background()
	rt, err := New(ctx, Config{CacheDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	e, _ := rt.engineFor(ctx, rt.cfg.Limits.MemoryLimitPages)
	m, err := e.r.CompileModule(ctx, w)
	if err != nil {
		b.Fatal(err)
	}
	m.Close(ctx)
	rt.Close(ctx)
}

// BenchmarkCompileCold compiles the Go test guest (3.5 MB) with an empty cache directory.
func BenchmarkCompileCold(b *testing.B) {
	w := goguest(b)
	for b.Loop() {
		compileOnce(b, b.TempDir(), w)
	}
}

// BenchmarkCompileCached compiles it in a new runtime whose cache directory is warm.
func BenchmarkCompileCached(b *testing.B) {
	w := goguest(b)
	dir := b.TempDir()
	compileOnce(b, dir, w)
	for b.Loop() {
		compileOnce(b, dir, w)
	}
}

func loadGoGuest(b *testing.B) (*Runtime, *Plugin) {
	ctx := context.Background()
	rt, err := New(ctx, Config{CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close(ctx) })
	p, err := rt.Load(ctx, goguest(b), []string{abi.CapObject}, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	return rt, p
}

// BenchmarkInstantiate instantiates the Go guest and runs _initialize.
func BenchmarkInstantiate(b *testing.B) {
	_, p := loadGoGuest(b)
	ctx := context.Background()
	for b.Loop() {
		in, err := p.newInstance(ctx, false)
		if err != nil {
			b.Fatal(err)
		}
		in.destroy(ctx)
	}
}

// BenchmarkEmptyCall calls the marker export (() -> ()) through the host's call path: per-call
// deadline, WithCloseOnContextDone, error mapping.
func BenchmarkEmptyCall(b *testing.B) {
	_, p := loadGoGuest(b)
	ctx := context.Background()
	in, err := p.pool.get(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer p.pool.put(in)
	fn := in.mod.ExportedFunction(abi.Marker(1, 0))
	for b.Loop() {
		if _, err := in.call(ctx, "marker", fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEmptyCallRaw is the same call without the host's wrapper (wazero alone).
func BenchmarkEmptyCallRaw(b *testing.B) {
	_, p := loadGoGuest(b)
	ctx := context.Background()
	in, err := p.pool.get(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer p.pool.put(in)
	fn := in.mod.ExportedFunction(abi.Marker(1, 0))
	for b.Loop() {
		if _, err := fn.Call(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
