package runtime_test

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
)

// countStore discards bytes and counts them (benchmarks must not keep GBs in memory).
type countStore struct{}

type countUpload struct{ n int64 }

func (countStore) Create(context.Context, string, runtime.ObjectOptions) (runtime.Upload, error) {
	return &countUpload{}, nil
}
func (u *countUpload) Write(p []byte) (int, error) { u.n += int64(len(p)); return len(p), nil }
func (u *countUpload) Written() int64              { return u.n }
func (u *countUpload) Commit(context.Context) (runtime.ObjectInfo, error) {
	return runtime.ObjectInfo{Bytes: u.n}, nil
}
func (u *countUpload) Abort(context.Context) error { return nil }

// BenchmarkClassifyCall is one full Plugin.Classify on the Go guest: JSON request, alloc,
// export call, JSON answer.
func BenchmarkClassifyCall(b *testing.B) {
	rt := newRuntime(b, runtime.Config{})
	ctx := context.Background()
	p, err := rt.Load(ctx, wasm(b, "goguest"), []string{abi.CapObject}, runtime.Limits{PoolSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	e := &runtime.PluginError{Err: abi.Error{Message: "x", Status: "retryable_io"}}
	for b.Loop() {
		if c := p.Classify(ctx, e, 1); c.Outcome != abi.OutcomeRetryAfter {
			b.Fatal(c)
		}
	}
}

// Benchmark10kBatch hands one batch of 10,000 events (~500 bytes each) to the Go guest:
// native: the guest passes the handle to the host's JSONL encoder (encoder_write);
// guest: the guest copies the batch in (batch_read), decodes every record with
// abi.BatchReader and writes JSON Lines with upload_write.
func Benchmark10kBatch(b *testing.B) {
	batch := conformance.Batch(conformance.Events(10000, 500, 1))
	for _, mode := range []string{"native", "guest"} {
		b.Run(mode, func(b *testing.B) {
			rt := newRuntime(b, runtime.Config{})
			ctx := context.Background()
			p, err := rt.Load(ctx, wasm(b, "goguest"), []string{abi.CapObject}, runtime.Limits{PoolSize: 1})
			if err != nil {
				b.Fatal(err)
			}
			req := openReq("bench")
			req.Config = map[string]any{"mode": mode}
			s, err := p.Open(ctx, req, runtime.Bindings{Objects: countStore{}, Encoders: conformance.Encoders})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(ctx)
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				if err := s.WriteBatch(ctx, batch, 10000); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
