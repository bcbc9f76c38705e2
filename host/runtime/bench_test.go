package runtime_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
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
			benchWriteBatch(b, wasm(b, "goguest"), map[string]any{"mode": mode}, batch, 10000)
		})
	}
}

// BenchmarkS3PartitionByEvent is the cost of partition_by: event in the s3 plugin
// (bin/plugins/s3.wasm, `make plugins`) on one batch of 10,000 events (~500 bytes),
// JSON Lines with gzip: one file set ("whole") against one per event name with 1 and 8
// names in the batch. Partitioned, the plugin copies the batch in and reads its event column,
// then each name's encoder decodes the batch and keeps its rows (EncoderSpec.where).
func BenchmarkS3PartitionByEvent(b *testing.B) {
	mod, err := os.ReadFile(filepath.Join("..", "..", "bin", "plugins", "s3.wasm"))
	if err != nil {
		b.Skipf("bin/plugins/s3.wasm is not built (make plugins): %v", err)
	}
	for _, c := range []struct {
		name  string
		names int
		cfg   map[string]any
	}{
		{"whole", 8, map[string]any{"prefix": "p"}},
		{"by_event_1_name", 1, map[string]any{"prefix": "{event}", "partition_by": "event"}},
		{"by_event_8_names", 8, map[string]any{"prefix": "{event}", "partition_by": "event"}},
	} {
		evs := conformance.Events(10000, 500, 1)
		for i := range evs {
			evs[i].Event = fmt.Sprint("event-", i%c.names)
		}
		batch := conformance.Batch(evs)
		cfg := map[string]any{"bucket_name": "b", "file_format": "JSONLines", "compression": "gzip"}
		maps.Copy(cfg, c.cfg)
		b.Run(c.name, func(b *testing.B) { benchWriteBatch(b, mod, cfg, batch, len(evs)) })
	}
}

// benchWriteBatch opens a run of plugin mod with config (uploads counted and discarded) and
// hands it batch, of records records, once per iteration.
func benchWriteBatch(b *testing.B, mod []byte, config map[string]any, batch []byte, records int) {
	rt := newRuntime(b, runtime.Config{})
	ctx := context.Background()
	p, err := rt.Load(ctx, mod, []string{abi.CapObject}, runtime.Limits{PoolSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	req := openReq("bench")
	req.Config = config
	s, err := p.Open(ctx, req, runtime.Bindings{Objects: countStore{}, Encoders: conformance.Encoders})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	b.SetBytes(int64(len(batch)))
	for b.Loop() {
		if err := s.WriteBatch(ctx, batch, records); err != nil {
			b.Fatal(err)
		}
	}
}
