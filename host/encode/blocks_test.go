package encode

import (
	"bufio"
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
)

// raceEnabled is set under -race (race_test.go): the heavier tests run a smaller input.
var raceEnabled bool

var blockCompressions = []string{CompressionGzip, CompressionZstd, CompressionSnappy, CompressionLZ4}

// encodeFile encodes rows into one file and returns its bytes.
func encodeFile(t testing.TB, format, compression string, rows []row, batchSize int, opts ...Option) ([]byte, *Encoder) {
	t.Helper()
	var buf bytes.Buffer
	enc, err := New(&buf, abi.EncoderSpec{Format: format, Compression: compression}, testColumns, opts...)
	if err != nil {
		t.Fatal(err)
	}
	encodeBatches(t, enc, testColumns, rows, batchSize)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), enc
}

// encodeTrace is encodeFile that also returns how many bytes had reached the destination
// after each WriteBatch (what a plugin sees when it decides to start a new file).
func encodeTrace(t testing.TB, format, compression string, rows []row, batchSize int, opts ...Option) ([]byte, []int) {
	t.Helper()
	var buf bytes.Buffer
	enc, err := New(&buf, abi.EncoderSpec{Format: format, Compression: compression}, testColumns, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var trace []int
	bw := abi.NewBatchWriter(testColumns, nil)
	for start := 0; start < len(rows); start += batchSize {
		bw.Reset()
		for _, r := range rows[start:min(start+batchSize, len(rows))] {
			for _, v := range r {
				bw.AppendValue(v)
			}
			bw.EndRow()
		}
		if _, err := enc.WriteBatch(bw.Bytes()); err != nil {
			t.Fatal(err)
		}
		trace = append(trace, buf.Len())
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), trace
}

// gzipMembers splits a gzip file into the decompressed content of each member.
func gzipMembers(t *testing.T, data []byte) [][]byte {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(data))
	zr, err := stdgzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	var members [][]byte
	for {
		zr.Multistream(false)
		m, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
		if err := zr.Reset(br); err == io.EOF {
			return members
		} else if err != nil {
			t.Fatal(err)
		}
	}
}

// Many blocks (4 KiB), a row of 1 MiB in the middle, every block codec: the standard readers
// (compress/gzip multistream, klauspost zstd, golang/snappy, pierrec/lz4) read the whole file.
func TestBlocksRoundTrip(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(21, 22)), 400, true)
	for _, format := range []string{FormatJSONL, FormatCSV} {
		for _, compression := range blockCompressions {
			for _, workers := range []int{1, 3} {
				t.Run(fmt.Sprintf("%s+%s/workers=%d", format, compression, workers), func(t *testing.T) {
					t.Parallel()
					data, enc := encodeFile(t, format, compression, rows, 37, BlockSize(4096), Workers(workers))
					checkOutput(t, format, compression, data, allOut(testColumns), rows)
					if enc.blocks == nil || enc.blocks.submitted < 20 {
						t.Fatalf("blocks: %+v", enc.blocks)
					}
				})
			}
		}
	}
}

// Members end at a record boundary, at the first one at or past the block size.
func TestBlocksCutAtRecords(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(23, 24)), 600, true)
	const size = 8192
	for _, format := range []string{FormatJSONL, FormatCSV} {
		data, _ := encodeFile(t, format, CompressionGzip, rows, 50, BlockSize(size), Workers(2))
		members := gzipMembers(t, data)
		if len(members) < 20 {
			t.Fatalf("%s: %d members", format, len(members))
		}
		whole := bytes.Join(members, nil)
		var n int
		for i, m := range members {
			n += len(m)
			if len(m) == 0 || m[len(m)-1] != '\n' {
				t.Fatalf("%s: member %d does not end a line", format, i)
			}
			if i < len(members)-1 {
				// every member reaches the size, and only its last record took it there
				if len(m) < size {
					t.Fatalf("%s: member %d has %d bytes, under %d", format, i, len(m), size)
				}
				if format == FormatJSONL {
					last := bytes.LastIndexByte(m[:len(m)-1], '\n')
					if last+1 >= size {
						t.Fatalf("%s: member %d should have ended at %d", format, i, last+1)
					}
				}
			}
		}
		if format == FormatJSONL {
			checkJSONL(t, whole, allOut(testColumns), rows)
		} else {
			checkCSV(t, whole, allOut(testColumns), rows)
		}
	}
	// BlockSize(0): one member, as before blocks.
	data, enc := encodeFile(t, FormatJSONL, CompressionGzip, rows, 50, BlockSize(0))
	if enc.blocks != nil || len(gzipMembers(t, data)) != 1 {
		t.Fatal("BlockSize(0) is not one stream")
	}
}

// The same batches and settings give the same bytes whatever GOMAXPROCS, the number of
// workers or the run (and, with blocks under 64 KiB, whatever the batches).
func TestBlocksDeterministic(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(25, 26)), 500, true)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, format := range []string{FormatJSONL, FormatCSV} {
		for _, compression := range blockCompressions {
			runtime.GOMAXPROCS(1)
			want, enc := encodeFile(t, format, compression, rows, 7, BlockSize(16<<10))
			if !enc.blocks.inline || enc.blocks.submitted < 10 {
				t.Fatalf("reference run: inline=%v blocks=%d", enc.blocks.inline, enc.blocks.submitted)
			}
			// what has reached the destination after each batch
			_, wantTrace := encodeTrace(t, format, compression, rows, 64, BlockSize(16<<10))
			if wantTrace[len(wantTrace)-2] == 0 {
				t.Fatalf("nothing written before Close: %v", wantTrace)
			}
			for _, procs := range []int{1, 2, 4} {
				runtime.GOMAXPROCS(procs)
				for _, w := range []int{0, 2, 8} {
					if _, trace := encodeTrace(t, format, compression, rows, 64, BlockSize(16<<10), Workers(w)); !slices.Equal(trace, wantTrace) {
						t.Fatalf("%s+%s GOMAXPROCS=%d workers=%d: bytes written after each batch %v, want %v",
							format, compression, procs, w, trace, wantTrace)
					}
				}
				batches, variants := []int{7, 64, 500}, [][]Option{nil, {Workers(1)}, {Workers(3)}, {Workers(8)}}
				if raceEnabled {
					batches, variants = []int{64}, [][]Option{nil, {Workers(3)}}
				}
				for _, batch := range batches {
					for _, opts := range variants {
						got, _ := encodeFile(t, format, compression, rows, batch, append(opts, BlockSize(16<<10))...)
						if !bytes.Equal(got, want) {
							t.Fatalf("%s+%s GOMAXPROCS=%d batch=%d opts=%d: %d bytes differ from the reference (%d bytes)",
								format, compression, procs, batch, len(opts), len(got), len(want))
						}
					}
				}
			}
		}
	}
	// The default block size, on a larger file: several 1 MiB blocks, and blocks of 64 KiB or
	// more also end with a batch. The same batches give the same bytes, and the same bytes
	// written after each batch: every row but less than 64 KiB of them.
	n := 12000
	if raceEnabled {
		n = 4000
	}
	big := makeRows(rand.New(rand.NewPCG(27, 28)), n, false)
	for _, batch := range []int{1000, 333} {
		runtime.GOMAXPROCS(1)
		want, wantTrace := encodeTrace(t, FormatJSONL, CompressionGzip, big, batch)
		members := gzipMembers(t, want)
		if len(members) < 3 {
			t.Fatalf("%d blocks", len(members))
		}
		for i, written := range wantTrace {
			end := min((i+1)*batch, len(big))
			plain, _ := encodeFile(t, FormatJSONL, "", big[:end], end)
			got := decompress(t, "gzip", want[:written])
			if !bytes.HasPrefix(plain, got) || len(plain)-len(got) >= batchCut {
				t.Fatalf("batch %d: %d bytes of rows reached the destination, of %d", i, len(got), len(plain))
			}
		}
		for _, procs := range []int{2, 4} {
			runtime.GOMAXPROCS(procs)
			got, trace := encodeTrace(t, FormatJSONL, CompressionGzip, big, batch)
			if !bytes.Equal(got, want) || !slices.Equal(trace, wantTrace) {
				t.Fatalf("default block size, batch %d, GOMAXPROCS=%d: bytes differ", batch, procs)
			}
		}
	}
}

// At most 2 x workers blocks are in flight: with compression held back, the producer stops
// in WriteBatch once that many are submitted, and no more block buffers are ever made.
func TestBlocksInFlightBounded(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(29, 30)), 400, false)
	const workers = 2
	var out bytes.Buffer
	enc, err := New(&out, abi.EncoderSpec{Format: FormatJSONL, Compression: CompressionGzip}, testColumns,
		BlockSize(2048), Workers(workers))
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var entered atomic.Int32
	enc.blocks.hook = func() { entered.Add(1); <-gate }
	done := make(chan struct{})
	go func() {
		defer close(done)
		encodeBatches(t, enc, testColumns, rows, 200)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for entered.Load() < 2*workers && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("the producer finished with compression held back")
	default:
	}
	if n := entered.Load(); n != 2*workers {
		t.Fatalf("%d blocks in flight, want %d", n, 2*workers)
	}
	if out.Len() != 0 {
		t.Fatal("bytes written before the first block was compressed")
	}
	close(gate)
	<-done
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	b := enc.blocks
	if b.peakInFlight > 2*workers || b.allocated > 2*workers {
		t.Fatalf("peak in flight %d, blocks allocated %d, want <= %d", b.peakInFlight, b.allocated, 2*workers)
	}
	if b.submitted < 50 {
		t.Fatalf("only %d blocks", b.submitted)
	}
	checkJSONL(t, decompress(t, "gzip", out.Bytes()), allOut(testColumns), rows)
}

// The live heap of a large jsonl+gzip file stays flat: blocks in flight, not the file.
func TestBlocksMemoryBounded(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("encodes ~100 MB")
	}
	batch := realisticBatch(rand.New(rand.NewPCG(31, 32)), 5000, 1000)
	var out countingWriter
	enc, err := New(&out, abi.EncoderSpec{Format: FormatJSONL, Compression: CompressionGzip}, abi.EventColumns,
		Workers(4))
	if err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	var total, peak uint64
	for i := 0; i < 20; i++ {
		if _, err := enc.WriteBatch(batch); err != nil {
			t.Fatal(err)
		}
		total += uint64(len(batch))
		runtime.GC()
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc-min(before, ms.HeapAlloc))
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("input %d MB, output %d MB, %d blocks, peak live heap growth %d MB (8 blocks of 1 MiB in flight at most)",
		total>>20, out.n>>20, enc.blocks.submitted, peak>>20)
	// 8 blocks in flight (in + out) + the block being filled + 4 gzip compressors: ~25 MB.
	if peak > 40<<20 {
		t.Fatalf("heap grew by %d MB", peak>>20)
	}
}

type failWriter struct {
	n, limit int
}

var errWrite = errors.New("upload failed")

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n+len(p) > f.limit {
		return 0, errWrite
	}
	f.n += len(p)
	return len(p), nil
}

// waitGoroutines waits until the number of goroutines is back to n (the blocks' goroutines
// exit once their block is compressed).
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	for i := 0; runtime.NumGoroutine() > n; i++ {
		if i == 500 {
			t.Fatalf("%d goroutines, want %d", runtime.NumGoroutine(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A write error of the destination comes back from WriteBatch or Close, sticks, and leaves
// no goroutine behind.
func TestBlocksWriteError(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(33, 34)), 300, false)
	base := runtime.NumGoroutine()
	for _, workers := range []int{1, 4} {
		for _, limit := range []int{0, 5000} {
			w := &failWriter{limit: limit}
			enc, err := New(w, abi.EncoderSpec{Format: FormatCSV, Compression: CompressionZstd}, testColumns,
				BlockSize(2048), Workers(workers))
			if err != nil {
				t.Fatal(err)
			}
			bw := abi.NewBatchWriter(testColumns, nil)
			var werr error
			for start := 0; start < len(rows) && werr == nil; start += 30 {
				bw.Reset()
				for _, r := range rows[start:min(start+30, len(rows))] {
					for _, v := range r {
						bw.AppendValue(v)
					}
					bw.EndRow()
				}
				_, werr = enc.WriteBatch(bw.Bytes())
			}
			if werr == nil {
				t.Fatalf("workers=%d limit=%d: WriteBatch never failed", workers, limit)
			}
			if !errors.Is(werr, errWrite) {
				t.Fatalf("WriteBatch: %v", werr)
			}
			if _, err := enc.WriteBatch(bw.Bytes()); !errors.Is(err, errWrite) {
				t.Fatalf("error did not stick: %v", err)
			}
			if err := enc.Close(); !errors.Is(err, errWrite) {
				t.Fatalf("Close: %v", err)
			}
			if err := enc.Close(); !errors.Is(err, errWrite) {
				t.Fatalf("second Close: %v", err)
			}
			if w.n > limit {
				t.Fatal("wrote past the failure")
			}
			waitGoroutines(t, base)
		}
	}
	// A failure at Close (everything fits in the blocks in flight until then).
	w := &failWriter{limit: 0}
	enc, err := New(w, abi.EncoderSpec{Format: FormatJSONL, Compression: CompressionGzip}, testColumns, Workers(4))
	if err != nil {
		t.Fatal(err)
	}
	encodeBatches(t, enc, testColumns, rows[:10], 10)
	if err := enc.Close(); !errors.Is(err, errWrite) {
		t.Fatalf("Close: %v", err)
	}
	waitGoroutines(t, base)
}

// A bad batch after blocks were submitted: Close returns the batch's error, writes nothing
// more, and waits for the blocks in flight.
func TestBlocksBatchErrorThenClose(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(35, 36)), 200, false)
	base := runtime.NumGoroutine()
	var out bytes.Buffer
	enc, err := New(&out, abi.EncoderSpec{Format: FormatJSONL, Compression: CompressionGzip}, testColumns,
		BlockSize(1024), Workers(4))
	if err != nil {
		t.Fatal(err)
	}
	encodeBatches(t, enc, testColumns, rows, 50)
	if _, err := enc.WriteBatch([]byte("SLB0junk")); !errors.Is(err, abi.ErrMalformed) {
		t.Fatal(err)
	}
	// a truncated batch: rows are encoded, then the error sticks
	bw := abi.NewBatchWriter(testColumns, nil)
	for _, r := range rows[:20] {
		for _, v := range r {
			bw.AppendValue(v)
		}
		bw.EndRow()
	}
	b := bw.Bytes()
	if _, err := enc.WriteBatch(b[:len(b)-3]); !errors.Is(err, abi.ErrMalformed) {
		t.Fatal(err)
	}
	n := out.Len()
	if err := enc.Close(); !errors.Is(err, abi.ErrMalformed) {
		t.Fatalf("Close: %v", err)
	}
	if out.Len() != n {
		t.Fatal("Close wrote after the error")
	}
	if len(enc.blocks.queue) != 0 {
		t.Fatal("blocks still queued")
	}
	waitGoroutines(t, base)
}

// An empty file is one valid, empty stream for every block codec; Close is idempotent.
func TestBlocksEmptyAndClose(t *testing.T) {
	for _, format := range []string{FormatJSONL, FormatCSV} {
		for _, compression := range blockCompressions {
			for _, workers := range []int{1, 2} {
				w := &closeTracker{}
				enc, err := New(w, abi.EncoderSpec{Format: format, Compression: compression}, testColumns, Workers(workers))
				if err != nil {
					t.Fatal(err)
				}
				if err := enc.Close(); err != nil {
					t.Fatal(err)
				}
				// one empty stream (the snappy framing format writes nothing for no data)
				if w.Len() == 0 && compression != CompressionSnappy {
					t.Fatalf("%s+%s: empty output", format, compression)
				}
				n := w.Len()
				if err := enc.Close(); err != nil || w.Len() != n || w.closed {
					t.Fatalf("second Close: %v, %d -> %d bytes, closed %v", err, n, w.Len(), w.closed)
				}
				if _, err := enc.WriteBatch(nil); err == nil {
					t.Fatal("WriteBatch after Close")
				}
				checkOutput(t, format, compression, w.Bytes(), allOut(testColumns), nil)
			}
		}
	}
}

// The command-line tools read the concatenated streams too (skipped when not installed).
func TestBlocksCommandLineReaders(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(37, 38)), 300, false)
	want, _ := encodeFile(t, FormatJSONL, "", rows, 50)
	for _, tc := range []struct{ compression, tool string }{
		{CompressionGzip, "gzip"}, {CompressionZstd, "zstd"}, {CompressionLZ4, "lz4"},
	} {
		path, err := exec.LookPath(tc.tool)
		if err != nil {
			t.Logf("%s not installed", tc.tool)
			continue
		}
		data, enc := encodeFile(t, FormatJSONL, tc.compression, rows, 50, BlockSize(4096), Workers(2))
		if enc.blocks.submitted < 10 {
			t.Fatalf("%d blocks", enc.blocks.submitted)
		}
		f := t.TempDir() + "/f"
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Command(path, "-dc", f).Output()
		if err != nil {
			t.Fatalf("%s -dc: %v", tc.tool, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s -dc: %d bytes, want %d", tc.tool, len(got), len(want))
		}
	}
}

// Encoders run at the same time share the compressor pools.
func TestBlocksConcurrentEncoders(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(39, 40)), 200, false)
	want, _ := encodeFile(t, FormatJSONL, CompressionZstd, rows, 40, BlockSize(2048), Workers(1))
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			got, _ := encodeFile(t, FormatJSONL, CompressionZstd, rows, 40+i, BlockSize(2048), Workers(1+i%3))
			if !bytes.Equal(got, want) {
				t.Errorf("encoder %d: bytes differ", i)
			}
		})
	}
	wg.Wait()
}

// BenchmarkParallelEncode compares, side by side, one file of 8 batches (80,000 events,
// ~50 MB of SLB1) written as one serial stream (old: BlockSize(0)) and as parallel blocks
// (new: the defaults, GOMAXPROCS workers). Run with -cpu 1,2,4; bench/parallel_encode.sh
// prints the new/old ratios.
func BenchmarkParallelEncode(b *testing.B) {
	batch := benchBatch()
	const batches = 8
	for _, tc := range []struct{ format, compression string }{
		{"jsonl", "gzip"}, {"jsonl", "zstd"}, {"csv", "gzip"},
	} {
		for _, v := range []struct {
			name string
			opts []Option
		}{{"old", []Option{BlockSize(0)}}, {"new", nil}} {
			b.Run(tc.format+"+"+tc.compression+"/"+v.name, func(b *testing.B) {
				b.SetBytes(int64(batches * len(batch)))
				b.ReportAllocs()
				var out countingWriter
				for b.Loop() {
					enc, err := New(&out, abi.EncoderSpec{Format: tc.format, Compression: tc.compression},
						abi.EventColumns, v.opts...)
					if err != nil {
						b.Fatal(err)
					}
					for range batches {
						if _, err := enc.WriteBatch(batch); err != nil {
							b.Fatal(err)
						}
					}
					if err := enc.Close(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(out.n)/float64(b.N)/float64(batches*len(batch)), "out/in")
			})
		}
	}
}
