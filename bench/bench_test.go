package bench

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/abi"
)

// loadPlugin skips the test or benchmark when the s3 plugin is not built.
func loadPlugin(tb testing.TB) *WASM {
	tb.Helper()
	path, err := PluginPath()
	if err != nil {
		tb.Skipf("skipping: %v", err)
	}
	ctx := context.Background()
	w, err := LoadWASM(ctx, path)
	if err != nil {
		tb.Fatalf("load %s: %v", path, err)
	}
	tb.Cleanup(func() { w.Close(ctx) })
	return w
}

// TestWASMMatchesNative runs a small export through both paths into local directories and
// checks they wrote the same key, the same bytes and the same decoded rows, which are the
// source events.
func TestWASMMatchesNative(t *testing.T) {
	w := loadPlugin(t)
	ctx := context.Background()
	const n = 2500 // two full batches of 1,000 and a partial one
	d := NewData(n, 1000, 2)
	for _, f := range Formats {
		t.Run(f.Name, func(t *testing.T) {
			dirW, dirN := t.TempDir(), t.TempDir()
			sw, err := OpenSink(ctx, "local", dirW)
			if err != nil {
				t.Fatal(err)
			}
			defer sw.Close()
			sn, err := OpenSink(ctx, "local", dirN)
			if err != nil {
				t.Fatal(err)
			}
			defer sn.Close()
			rw, err := w.Run(ctx, sw.Store, f, d)
			if err != nil {
				t.Fatalf("wasm: %v", err)
			}
			rn, err := RunNative(ctx, sn.Store, f, d)
			if err != nil {
				t.Fatalf("native: %v", err)
			}
			if rw.Key != rn.Key || rw.Key != f.Key() {
				t.Fatalf("keys: wasm %q native %q want %q", rw.Key, rn.Key, f.Key())
			}
			if rw.Records != n || rn.Records != n || rw.Written != rn.Written {
				t.Fatalf("wasm %+v native %+v, want %d records each and equal bytes", rw, rn, n)
			}
			bw := readOnly(t, dirW)
			bn := readOnly(t, dirN)
			rowsW, rowsN := decodeRows(t, f, bw), decodeRows(t, f, bn)
			if len(rowsW) != n || len(rowsN) != n {
				t.Fatalf("decoded %d (wasm) and %d (native) rows, want %d", len(rowsW), len(rowsN), n)
			}
			for i := range rowsW {
				if rowsW[i] != rowsN[i] {
					t.Fatalf("row %d differs:\nwasm   %s\nnative %s", i, rowsW[i], rowsN[i])
				}
			}
			if !bytes.Equal(bw, bn) {
				t.Errorf("same rows but the files differ (%d vs %d bytes)", len(bw), len(bn))
			}
			// The rows are the source events, in order (cycled batches repeat them).
			if f.FileFormat == "JSONLines" {
				var first struct {
					UUID  string `json:"uuid"`
					Event string `json:"event"`
				}
				if err := json.Unmarshal([]byte(rowsW[0]), &first); err != nil {
					t.Fatal(err)
				}
				var src abi.Event
				_ = d.Each(func(b []byte, _ int) error {
					if src.Event == "" {
						r, _ := abi.NewBatchReader(b)
						vals := make([]abi.Value, len(abi.EventColumns))
						_ = r.Next(vals)
						abi.ReadEvent(vals, &src)
					}
					return nil
				})
				if first.Event != src.Event {
					t.Errorf("first row event %q, source %q", first.Event, src.Event)
				}
			}
		})
	}
}

// readOnly returns the content of the only regular file under dir.
func readOnly(t *testing.T, dir string) []byte {
	t.Helper()
	var files []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 {
		t.Fatalf("%s holds %d files, want 1: %v", dir, len(files), files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeRows decodes a file into one comparable string per row.
func decodeRows(t *testing.T, f Format, b []byte) []string {
	t.Helper()
	var rows []string
	switch f.FileFormat {
	case "JSONLines":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			rows = append(rows, sc.Text())
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	case "Parquet":
		pf, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		for _, rg := range pf.RowGroups() {
			rr := rg.Rows()
			buf := make([]parquet.Row, 256)
			for {
				k, err := rr.ReadRows(buf)
				for _, r := range buf[:k] {
					var s bytes.Buffer
					for _, v := range r {
						s.WriteString(strconv.Itoa(v.Column()) + "=" + v.String() + ";")
					}
					rows = append(rows, s.String())
				}
				if err != nil {
					break
				}
			}
			rr.Close()
		}
	}
	return rows
}

// benchEvents is the export size of the benchmarks: $SLUICE_BENCH_EVENTS, default 200,000.
func benchEvents(b *testing.B) int {
	if s := os.Getenv("SLUICE_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("SLUICE_BENCH_EVENTS=%q: want a positive integer", s)
		}
		return n
	}
	return 200_000
}

var (
	benchDataOnce sync.Once
	benchData     *Data
)

// BenchmarkExport runs one whole export per iteration (Open, WriteBatch of 10k-row batches,
// Finish, Close; or the same natively) for every sink, format and path. MB/s is of
// uncompressed SLB1 batch bytes. Compare wasm and native of the same sink and format:
//
//	go test -run '^$' -bench Export -count 3 ./bench/ | tee out.txt
func BenchmarkExport(b *testing.B) {
	w := loadPlugin(b)
	n := benchEvents(b)
	benchDataOnce.Do(func() { benchData = NewData(n, 10_000, 20) })
	d := benchData
	ctx := context.Background()
	for _, sinkName := range SinkNames {
		b.Run("sink="+sinkName, func(b *testing.B) {
			sink, err := OpenSink(ctx, sinkName, "")
			if err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			for _, f := range Formats {
				for _, path := range []string{"wasm", "native"} {
					b.Run(f.Name+"/"+path, func(b *testing.B) {
						b.SetBytes(d.Bytes)
						b.ReportMetric(float64(d.Events), "events/op")
						for b.Loop() {
							var r Result
							var err error
							if path == "wasm" {
								r, err = w.Run(ctx, sink.Store, f, d)
							} else {
								r, err = RunNative(ctx, sink.Store, f, d)
							}
							if err != nil {
								b.Fatal(err)
							}
							if r.Records != int64(d.Events) {
								b.Fatalf("%d records, want %d", r.Records, d.Events)
							}
						}
					})
				}
			}
		})
	}
}
