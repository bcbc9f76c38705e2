package testkit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/host/runtime"
)

func load(t *testing.T, name string) ([]byte, *runtime.Runtime) {
	t.Helper()
	wasm, err := os.ReadFile(filepath.Join("..", "..", "..", "bin", "plugins", name+".wasm"))
	if err != nil {
		t.Fatalf("%v (run `make plugins`)", err)
	}
	// The compilation cache `sluice plugins test` uses: a big module (s3) compiles once.
	rt, err := runtime.New(context.Background(), runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-conformance-cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return wasm, rt
}

func vector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := ReadBatchFile(filepath.Join("..", "..", "..", "abi", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRun(t *testing.T) {
	wasm, rt := load(t, "rust-jsonl")
	ev := vector(t, "events_2.hex")
	for _, tc := range []struct {
		name    string
		plugin  string // default rust-jsonl
		opts    Options
		records int64
		lines   int
		err     string // a failure of the plugin's run
	}{
		{name: "two recorded events", opts: Options{Batches: [][]byte{ev}, Config: map[string]any{"bucket_name": "b"}}, records: 2, lines: 2},
		{name: "the vector twice and an empty batch", opts: Options{Batches: [][]byte{ev, vector(t, "empty.hex"), ev},
			Config: map[string]any{"bucket_name": "b"}}, records: 4, lines: 4},
		{name: "no batch", opts: Options{Config: map[string]any{"bucket_name": "b"}}, records: 0, lines: 0},
		{name: "config refused by the plugin", plugin: "s3", opts: Options{Batches: [][]byte{ev},
			Config: map[string]any{"bucket_name": "b", "kms_key_id": "k"}}, err: "validate: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wasm, rt := wasm, rt
			if tc.plugin != "" {
				wasm, rt = load(t, tc.plugin)
			}
			o, err := Run(context.Background(), rt, wasm, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.err != "" {
				if o.Err == nil || !strings.Contains(o.Err.Error(), tc.err) || !strings.Contains(o.Err.Error(), "kms_key_id") {
					t.Fatalf("err %v, want one containing %q", o.Err, tc.err)
				}
				return
			}
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			if o.Result.Records != tc.records || len(o.Objects) != 1 {
				t.Fatalf("records %d, objects %d; want %d records in one object", o.Result.Records, len(o.Objects), tc.records)
			}
			for _, b := range o.Objects {
				if n := strings.Count(string(b), "\n"); n != tc.lines {
					t.Fatalf("%d lines, want %d", n, tc.lines)
				}
			}
		})
	}
}

func TestReadBatchFile(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"bad.hex": "53 4c zz", "raw.slb": "SLB1"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ReadBatchFile(filepath.Join(dir, "bad.hex")); err == nil || !strings.Contains(err.Error(), "not hex") {
		t.Errorf("bad.hex: %v", err)
	}
	if b, err := ReadBatchFile(filepath.Join(dir, "raw.slb")); err != nil || string(b) != "SLB1" {
		t.Errorf("raw.slb: %q %v", b, err)
	}
	// A batch that is not SLB1 is refused before the plugin is loaded.
	wasm, rt := load(t, "rust-jsonl")
	if _, err := Run(context.Background(), rt, wasm, Options{Batches: [][]byte{[]byte("nope")}}); err == nil || !strings.Contains(err.Error(), "batch 0") {
		t.Errorf("malformed batch: %v", err)
	}
}
