package assemblyscript

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
	"github.com/sluicehq/sluice/host/runtime/testkit"
	"github.com/sluicehq/sluice/internal/toolchain"
)

var sample struct {
	sync.Mutex
	wasm []byte
}

// buildSample installs the pinned compiler (npm ci, package-lock.json) and builds the
// sample plugin examples/jsonl with the SDK's asconfig.json, once per test binary.
func buildSample(t *testing.T) []byte {
	t.Helper()
	npm := toolchain.NPM(t)
	sample.Lock()
	defer sample.Unlock()
	if sample.wasm != nil {
		return sample.wasm
	}
	toolchain.Run(t, ".", nil, npm, "ci", "--no-audit", "--no-fund")
	out := filepath.Join(t.TempDir(), "as-jsonl.wasm")
	toolchain.Run(t, ".", nil, filepath.Join("node_modules", ".bin", "asc"), "examples/jsonl/index.ts",
		"--config", "asconfig.json", "--target", "release", "--outFile", out)
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sample.wasm = wasm
	return wasm
}

func newRuntime(t *testing.T) *runtime.Runtime {
	t.Helper()
	rt, err := runtime.New(context.Background(), runtime.Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func vector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := testkit.ReadBatchFile(filepath.Join("..", "..", "abi", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The sample plugin, built with npm's assemblyscript, passes the conformance suite on both
// routes: the host encoder, and the SDK's SLB1 decoder in the guest.
func TestSampleConformance(t *testing.T) {
	wasm := buildSample(t)
	rt := newRuntime(t)
	for _, route := range []string{"host", "guest"} {
		t.Run(route, func(t *testing.T) {
			rep := conformance.Run(context.Background(), rt, wasm,
				conformance.Options{Config: map[string]any{"bucket_name": "conformance", "route": route}})
			if !rep.OK() {
				t.Fatalf("conformance:\n%s", rep)
			}
		})
	}

	// The decoder in the guest writes exactly what the host's jsonl encoder writes, over
	// the golden vectors and synthetic event batches.
	t.Run("guest decoding equals the host encoder", func(t *testing.T) {
		for name, batches := range map[string][][]byte{
			"events_2.hex": {vector(t, "events_2.hex")},
			"empty.hex":    {vector(t, "empty.hex")},
			"minimal.hex":  {vector(t, "minimal.hex")},
			"edge values":  {edgeBatch(t)},
			"3 batches of events": {conformance.Batch(conformance.Events(50, 400, 1)),
				conformance.Batch(conformance.Events(1, 100, 2)), conformance.Batch(conformance.Events(20, 2000, 3))},
		} {
			objs := map[string][]byte{}
			for _, route := range []string{"host", "guest"} {
				o, err := testkit.Run(context.Background(), rt, wasm, testkit.Options{Batches: batches,
					Config: map[string]any{"bucket_name": "b", "route": route}})
				if err != nil {
					t.Fatal(err)
				}
				if o.Err != nil {
					t.Fatalf("%s, route %s: %v", name, route, o.Err)
				}
				if len(o.Objects) != 1 {
					t.Fatalf("%s, route %s: %d objects", name, route, len(o.Objects))
				}
				for _, b := range o.Objects {
					objs[route] = b
				}
			}
			if !bytes.Equal(objs["host"], objs["guest"]) {
				t.Errorf("%s: guest decoding differs from the host encoder:\nhost:  %q\nguest: %q", name, objs["host"], objs["guest"])
			}
		}
	})

	// SPEC section 8's worked example, decoded value by value.
	t.Run("minimal.hex decoded values", func(t *testing.T) {
		o, err := testkit.Run(context.Background(), rt, wasm, testkit.Options{Batches: [][]byte{vector(t, "minimal.hex")},
			Config: map[string]any{"bucket_name": "b", "route": "guest"}})
		if err != nil || o.Err != nil {
			t.Fatal(err, o.Err)
		}
		want := "{\"n\":-2,\"s\":\"hi\"}\n{\"n\":300,\"s\":null}\n"
		for k, b := range o.Objects {
			if string(b) != want {
				t.Errorf("%s = %q, want %q", k, b, want)
			}
		}
	})
}

// edgeBatch holds the values whose JSON form is easy to get wrong: escapes (\b \f, other
// control characters, U+2028, invalid UTF-8), floats (integral, tiny, huge, NaN, infinities),
// int64 and timestamp extremes, nulls of every kind.
func edgeBatch(t *testing.T) []byte {
	t.Helper()
	cols := []abi.Column{{Name: "s", Kind: abi.KindString, Nullable: true}, {Name: "f", Kind: abi.KindFloat64, Nullable: true},
		{Name: "i", Kind: abi.KindInt64, Nullable: true}, {Name: "ts", Kind: abi.KindTimestamp, Nullable: true},
		{Name: "u", Kind: abi.KindUUID, Nullable: true}, {Name: "b", Kind: abi.KindBool, Nullable: true},
		{Name: "j", Kind: abi.KindJSON, Nullable: true}}
	w := abi.NewBatchWriter(cols, nil)
	strs := []string{"", "plain", "q\"b\\s/", "\b\f\n\r\t\x00\x1f\x7f", "line\u2028para\u2029", "bad\xff\xc0\x80utf8\xed\xa0\x80",
		"é中😀", "</script>&"}
	floats := []float64{0, 1, -2.5, 0.1, 1e21, 1e20, 1e-7, 1e-6, 123456789.125, 5e-324, math.MaxFloat64, math.NaN(), math.Inf(1), math.Inf(-1), -0.0}
	ints := []int64{0, -1, math.MinInt64, math.MaxInt64, 300}
	stamps := []int64{0, -1, 1_700_000_000_123_456, -62135596800_000_000, 253402300799_999_999}
	n := max(len(strs), len(floats), len(ints), len(stamps))
	for i := 0; i <= n; i++ {
		if i < len(strs) {
			w.AppendString(strs[i])
		} else {
			w.AppendNull()
		}
		if i < len(floats) {
			w.AppendFloat(floats[i])
		} else {
			w.AppendNull()
		}
		if i < len(ints) {
			w.AppendInt(ints[i])
		} else {
			w.AppendNull()
		}
		if i < len(stamps) {
			w.AppendTimestamp(stamps[i])
		} else {
			w.AppendNull()
		}
		if i%2 == 0 {
			w.AppendUUID([16]byte{0xde, 0xad, byte(i), 0xef, 15: 0xff})
		} else {
			w.AppendNull()
		}
		if i%3 == 2 {
			w.AppendNull()
		} else {
			w.AppendBool(i%3 == 1)
		}
		if i%2 == 0 {
			w.AppendString(`{"a":[1,2,{"b":null}],"c":"d"}`)
		} else {
			w.AppendNull()
		}
		w.EndRow()
	}
	return w.Bytes()
}

// malformed returns one batch per must-reject rule of SPEC section 8, each a small change
// to the worked example minimal.hex.
func malformed(t *testing.T) map[string][]byte {
	min := vector(t, "minimal.hex")
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(min)) }
	boolBatch, _ := hex.DecodeString("534c42310100000000000000" + "01" + "016207" + "02")
	return map[string][]byte{
		"wrong magic":           mut(func(b []byte) []byte { b[0] = 'T'; return b }),
		"non-zero flags":        mut(func(b []byte) []byte { b[8] = 1; return b }),
		"zero columns":          mut(func(b []byte) []byte { b[12] = 0; return b }),
		"1025 columns":          mut(func(b []byte) []byte { return append(append(b[:12:12], 0x81, 0x08), b[13:]...) }),
		"empty column name":     mut(func(b []byte) []byte { b[13] = 0; return b }),
		"non-UTF-8 column name": mut(func(b []byte) []byte { b[14] = 0xff; return b }),
		"unknown kind":          mut(func(b []byte) []byte { b[15] = 0x08; return b }),
		"length past the end":   mut(func(b []byte) []byte { b[21] = 0x7f; return b }),
		"presence byte 2":       mut(func(b []byte) []byte { b[20] = 2; return b }),
		"bool byte 2":           boolBatch,
		"count cannot fit":      mut(func(b []byte) []byte { b[4], b[5] = 0xe8, 0x03; return b }),
		"trailing bytes":        mut(func(b []byte) []byte { return append(b, 0) }),
		"truncated":             mut(func(b []byte) []byte { return b[:len(b)-2] }),
	}
}

// goRejects reports whether the Go reference decoder (package abi) refuses b.
func goRejects(b []byte) bool {
	r, err := abi.NewBatchReader(b)
	if err != nil {
		return true
	}
	vals := make([]abi.Value, len(r.Columns()))
	for {
		err := r.Next(vals)
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			return true
		}
	}
}

// The SDK's decoder refuses every malformed batch (the plugin's write fails naming the
// rule) and never traps; the Go decoder refuses the same batches.
func TestDecoderRejectsMalformed(t *testing.T) {
	wasm := buildSample(t)
	rt := newRuntime(t)
	ctx := context.Background()
	p, err := rt.Load(ctx, wasm, []string{abi.CapObject}, runtime.Limits{PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Unload(ctx, p)
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, b := range malformed(t) {
		t.Run(name, func(t *testing.T) {
			if !goRejects(b) {
				t.Fatalf("the Go decoder accepts this batch: the vector is wrong")
			}
			s, err := p.Open(ctx, abi.OpenRequest{RunID: "bad", IntervalStart: start, IntervalEnd: start.Add(time.Hour),
				Attempt: 1, Config: map[string]any{"bucket_name": "b", "route": "guest"}, Columns: abi.EventColumns},
				runtime.Bindings{Objects: conformance.NewMemStore(), Encoders: conformance.Encoders})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(ctx)
			// The record count the header declares: the host refuses a batch whose header
			// disagrees with it, or that is not SLB1 at all (then the plugin never sees it).
			err = s.WriteBatch(ctx, b, int(binary.LittleEndian.Uint32(b[4:8])))
			if err == nil {
				t.Fatal("the plugin accepted a malformed batch")
			}
			if name != "wrong magic" && !strings.Contains(err.Error(), "bad batch") {
				t.Fatalf("want the SDK decoder's refusal, got %v", err)
			}
		})
	}
}
