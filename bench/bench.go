// Package bench measures Sluice's export hot path: the same export of synthetic events
// (internal/demo) run (a) through the first-party S3 plugin in host/runtime, with the
// default limits, and (b) through the same host-native pipeline called directly from Go
// (encode.New writing into an objstore upload). Both paths use the same SLB1 batches, the
// same encoder spec and the same object key, so the ratio wasm/native isolates what the
// sandbox costs.
//
// The Go benchmarks live in bench_test.go; cmd/sluice-bench prints a side-by-side table
// from one process (the machine is shared and noisy: only ratios measured in one run mean
// anything). See README.md and docs/performance.md.
package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
	"github.com/sluicehq/sluice/host/objstore"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/internal/demo"
)

// Interval is the run interval of every benchmark export (the plugin names files after it).
var (
	IntervalStart = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	IntervalEnd   = IntervalStart.Add(time.Hour)
)

// Format is one file format and compression, as the s3 plugin's config names them.
type Format struct {
	Name        string // "jsonl+gzip"
	FileFormat  string // plugin config file_format: JSONLines | Parquet
	Compression string // plugin config compression
}

// Formats are the two measured pairs.
var Formats = []Format{
	{Name: "jsonl+gzip", FileFormat: "JSONLines", Compression: "gzip"},
	{Name: "parquet+zstd", FileFormat: "Parquet", Compression: "zstd"},
}

// FormatByName returns the Format called name.
func FormatByName(name string) (Format, error) {
	for _, f := range Formats {
		if f.Name == name {
			return f, nil
		}
	}
	return Format{}, fmt.Errorf("bench: unknown format %q (want jsonl+gzip or parquet+zstd)", name)
}

// The s3 plugin's choices, mirrored here for the native path (plugins/s3/config.go). The
// test TestWASMMatchesNative fails if they drift: it compares keys, bytes and rows.
var (
	pluginFormat   = map[string]string{"JSONLines": encode.FormatJSONL, "Parquet": encode.FormatParquet}
	pluginExt      = map[string]string{"JSONLines": "jsonl", "Parquet": "parquet"}
	pluginCompExt  = map[string]string{"gzip": "gz", "zstd": "zst", "none": ""}
	pluginColumns  = []string{"uuid", "event", "distinct_id", "person_id", "properties", "person_properties", "elements_chain", "timestamp", "created_at", "_inserted_at"}
	pluginRenamed  = map[string]string{"_inserted_at": "inserted_at"}
	pluginCTypes   = map[string]string{"JSONLines": "application/jsonl", "Parquet": "application/vnd.apache.parquet"}
	isoLayout      = "2006-01-02T15:04:05-07:00"
	benchBucket    = "sluice-bench"
	benchRunID     = "bench-run"
	benchExportID  = "bench-export"
	errNoPluginMsg = "bin/plugins/s3.wasm not found (run `make plugins` at the repository root, or set SLUICE_BENCH_WASM)"
)

// Spec is the encoder spec the s3 plugin asks for with this format (default columns).
func (f Format) Spec() abi.EncoderSpec {
	spec := abi.EncoderSpec{Format: pluginFormat[f.FileFormat]}
	if f.Compression != "none" {
		spec.Compression = f.Compression
	}
	for _, out := range pluginColumns {
		sel := abi.ColumnSelect{Name: out}
		if src, ok := pluginRenamed[out]; ok {
			sel = abi.ColumnSelect{Name: src, As: out}
		}
		spec.Columns = append(spec.Columns, sel)
	}
	return spec
}

// Key is the object key the s3 plugin writes for the benchmark interval (empty prefix,
// no file splitting).
func (f Format) Key() string {
	k := IntervalStart.Format(isoLayout) + "-" + IntervalEnd.Format(isoLayout) + "." + pluginExt[f.FileFormat]
	if e := pluginCompExt[f.Compression]; e != "" {
		k += "." + e
	}
	return k
}

// Config is the s3 plugin's (non-secret) config for this format.
func (f Format) Config() map[string]any {
	return map[string]any{"bucket_name": benchBucket, "file_format": f.FileFormat, "compression": f.Compression,
		"prefix": "", "max_file_size_mb": 0}
}

// Data is a sequence of SLB1 batches of events, the input of one export. To keep memory
// bounded for large runs, only Distinct batches are built and the sequence cycles through
// them (each batch carries distinct events; cycling repeats them).
type Data struct {
	Events   int      // rows in the whole sequence
	Bytes    int64    // uncompressed SLB1 bytes in the whole sequence: the MB/s numerator
	distinct [][]byte // full batches of batchRows rows
	rows     int      // rows per full batch
	tail     []byte   // the last, partial batch (nil if Events is a multiple of rows)
	tailRows int
}

// NewData builds batches of batchRows demo events (about 500 bytes each in SLB1) for an
// export of events rows, cycling through at most distinct different batches.
func NewData(events, batchRows, distinct int) *Data {
	if batchRows <= 0 {
		batchRows = 10_000
	}
	if distinct <= 0 {
		distinct = 1
	}
	full := events / batchRows
	d := &Data{Events: events, rows: batchRows}
	build := func(i, n int) []byte {
		// Each batch covers its own slice of the interval, as a source would stream them.
		span := IntervalEnd.Sub(IntervalStart) / time.Duration(max(full+1, 1))
		start := IntervalStart.Add(span * time.Duration(i))
		evs := demo.Events(n, start, start.Add(span), uint64(i)+1)
		w := abi.NewBatchWriter(abi.EventColumns, make([]byte, 0, n*600))
		for j := range evs {
			w.AppendEvent(&evs[j])
			w.EndRow()
		}
		return w.Bytes()
	}
	for i := 0; i < min(full, distinct); i++ {
		d.distinct = append(d.distinct, build(i, batchRows))
	}
	for i := 0; i < full; i++ {
		d.Bytes += int64(len(d.distinct[i%len(d.distinct)]))
	}
	if rest := events - full*batchRows; rest > 0 {
		d.tail, d.tailRows = build(full, rest), rest
		d.Bytes += int64(len(d.tail))
	}
	return d
}

// Each calls fn with every batch of the sequence, in order, and its row count.
func (d *Data) Each(fn func(batch []byte, rows int) error) error {
	full := d.Events / d.rows
	for i := 0; i < full; i++ {
		if err := fn(d.distinct[i%len(d.distinct)], d.rows); err != nil {
			return err
		}
	}
	if d.tail != nil {
		return fn(d.tail, d.tailRows)
	}
	return nil
}

// ResidentBytes is the memory the prepared batches hold.
func (d *Data) ResidentBytes() int64 {
	n := int64(len(d.tail))
	for _, b := range d.distinct {
		n += int64(len(b))
	}
	return n
}

// Result is one export.
type Result struct {
	Key      string
	Records  int64
	Written  int64 // bytes of the object(s), after encoding and compression
	Duration time.Duration
}

// MBps is the throughput in MB/s (10^6 bytes) of uncompressed batch bytes.
func (r Result) MBps(in int64) float64 { return float64(in) / 1e6 / r.Duration.Seconds() }

// RunNative runs the export directly from Go: encode.New writing into an objstore upload,
// the same batches, spec and key as the plugin.
func RunNative(ctx context.Context, store objstore.Store, f Format, d *Data) (Result, error) {
	t0 := time.Now()
	key := f.Key()
	u, err := store.Create(ctx, key, objstore.ObjectOptions{ContentType: pluginCTypes[f.FileFormat]})
	if err != nil {
		return Result{}, err
	}
	defer u.Abort(context.WithoutCancel(ctx)) // a no-op after Commit
	enc, err := encode.New(u, f.Spec(), abi.EventColumns)
	if err != nil {
		return Result{}, err
	}
	var recs int64
	if err := d.Each(func(b []byte, _ int) error {
		n, err := enc.WriteBatch(b)
		recs += int64(n)
		return err
	}); err != nil {
		return Result{}, err
	}
	if err := enc.Close(); err != nil {
		return Result{}, err
	}
	info, err := u.Commit(ctx)
	if err != nil {
		return Result{}, err
	}
	return Result{Key: info.Key, Records: recs, Written: info.Bytes, Duration: time.Since(t0)}, nil
}

// WASM is the s3 plugin loaded in a host runtime with the default limits (256 MiB memory,
// 60 s per call with WithCloseOnContextDone, pool of 4, recycle budget 128 MiB).
type WASM struct {
	RT     *runtime.Runtime
	Plugin *runtime.Plugin
}

// PluginPath finds the s3 plugin: $SLUICE_BENCH_WASM, or bin/plugins/s3.wasm in the working
// directory or one of its parents. It returns an error saying how to build it when missing.
func PluginPath() (string, error) {
	if p := os.Getenv("SLUICE_BENCH_WASM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("SLUICE_BENCH_WASM: %w", err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "bin", "plugins", "s3.wasm")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return "", errors.New(errNoPluginMsg)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New(errNoPluginMsg)
		}
		dir = parent
	}
}

// LoadWASM compiles and loads the plugin at path with the object capability granted
// (compilation is not part of any timing).
func LoadWASM(ctx context.Context, path string) (*WASM, error) {
	return loadWASM(ctx, path, abi.CapObject)
}

// loadWASM compiles and loads the plugin at path with the capabilities caps.
func loadWASM(ctx context.Context, path string, caps ...string) (*WASM, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// A compilation cache shared by runs (and test packages): compiling is not measured,
	// and under -race it takes tens of seconds.
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")})
	if err != nil {
		return nil, err
	}
	p, err := rt.Load(ctx, wasm, caps, runtime.Limits{})
	if err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return &WASM{RT: rt, Plugin: p}, nil
}

// Close releases the runtime.
func (w *WASM) Close(ctx context.Context) error { return w.RT.Close(ctx) }

// Run runs the export through the plugin: Open with the object and encode capabilities
// bound to store, WriteBatch per batch, Finish, Close.
func (w *WASM) Run(ctx context.Context, store objstore.Store, f Format, d *Data) (Result, error) {
	return w.RunWith(ctx, Bindings(ctx, store), f, d)
}

// RunWith is Run with the capabilities bound by the caller (bench/cmd/sluice-guard's
// deliberately slowed variant).
func (w *WASM) RunWith(ctx context.Context, bind runtime.Bindings, f Format, d *Data) (Result, error) {
	t0 := time.Now()
	req := abi.OpenRequest{RunID: benchRunID, ExportID: benchExportID, ExportName: "bench",
		IntervalStart: IntervalStart, IntervalEnd: IntervalEnd, Attempt: 1,
		Config: f.Config(), Columns: abi.EventColumns}
	s, err := w.Plugin.Open(ctx, req, bind)
	if err != nil {
		return Result{}, err
	}
	defer s.Close(ctx)
	if err := d.Each(func(b []byte, rows int) error { return s.WriteBatch(ctx, b, rows) }); err != nil {
		return Result{}, err
	}
	res, err := s.Finish(ctx)
	if err != nil {
		return Result{}, err
	}
	if err := s.Close(ctx); err != nil {
		return Result{}, err
	}
	r := Result{Records: res.Records, Written: res.Bytes, Duration: time.Since(t0)}
	if len(res.Outputs) == 1 {
		r.Key = res.Outputs[0].Name
	}
	return r, nil
}

// Bindings binds the object capability to store and the encode capability to encode.New,
// as the host does (host/control/capabilities.go), minus logging and metrics.
//
// Uploads are bound to runCtx, the run's context, not to the context the runtime passes to
// ObjectStore.Create: that one is the guest call's (a per-call deadline, cancelled when
// the call returns), and an S3 upload uploads parts in the background for as long as the
// upload lives, across calls (opened in one write_batch, committed in finish).
func Bindings(runCtx context.Context, store objstore.Store) runtime.Bindings {
	return runtime.Bindings{
		Objects: objectStore{s: store, runCtx: runCtx},
		Encoders: func(w io.Writer, spec abi.EncoderSpec, cols []abi.Column) (runtime.BatchEncoder, error) {
			return encode.New(w, spec, cols)
		},
	}
}

type objectStore struct {
	s      objstore.Store
	runCtx context.Context
}

func (o objectStore) Create(_ context.Context, key string, opts runtime.ObjectOptions) (runtime.Upload, error) {
	u, err := o.s.Create(o.runCtx, key, objstore.ObjectOptions{ContentType: opts.ContentType,
		ContentEncoding: opts.ContentEncoding, Metadata: opts.Metadata})
	if err != nil {
		return nil, err
	}
	return upload{u}, nil
}

type upload struct{ u objstore.Upload }

func (u upload) Write(p []byte) (int, error) { return u.u.Write(p) }
func (u upload) Written() int64              { return u.u.Written() }
func (u upload) Abort(ctx context.Context) error {
	return u.u.Abort(ctx)
}
func (u upload) Commit(ctx context.Context) (runtime.ObjectInfo, error) {
	info, err := u.u.Commit(ctx)
	return runtime.ObjectInfo{Key: info.Key, Bytes: info.Bytes, ETag: info.ETag}, err
}

// Discard is an objstore.Store whose uploads count bytes and keep none: it isolates the
// encoders and the plugin from storage.
type Discard struct{}

// Create starts a counting upload.
func (Discard) Create(_ context.Context, key string, _ objstore.ObjectOptions) (objstore.Upload, error) {
	if err := objstore.ValidateKey(key); err != nil {
		return nil, err
	}
	return &discardUpload{key: key}, nil
}

// Check always succeeds.
func (Discard) Check(context.Context) error { return nil }

type discardUpload struct {
	key string
	n   int64
}

func (u *discardUpload) Write(p []byte) (int, error) { u.n += int64(len(p)); return len(p), nil }
func (u *discardUpload) Written() int64              { return u.n }
func (u *discardUpload) Abort(context.Context) error { return nil }
func (u *discardUpload) Commit(context.Context) (objstore.ObjectInfo, error) {
	return objstore.ObjectInfo{Key: u.key, Bytes: u.n}, nil
}

// RunNoEncode runs the export through the plugin with the discard sink and encoders that
// do nothing (they count rows from the batch header): what is left is the cost of the
// sandbox itself — Open, Finish and Close, one guest call per batch, the host functions
// the plugin calls (upload_open, encoder_open, encoder_write, upload_commit) and their
// JSON documents.
func (w *WASM) RunNoEncode(ctx context.Context, d *Data) (Result, error) {
	t0 := time.Now()
	f := Formats[0]
	req := abi.OpenRequest{RunID: benchRunID, ExportID: benchExportID, ExportName: "bench",
		IntervalStart: IntervalStart, IntervalEnd: IntervalEnd, Attempt: 1,
		Config: f.Config(), Columns: abi.EventColumns}
	b := Bindings(ctx, Discard{})
	b.Encoders = func(io.Writer, abi.EncoderSpec, []abi.Column) (runtime.BatchEncoder, error) {
		return noEncoder{}, nil
	}
	s, err := w.Plugin.Open(ctx, req, b)
	if err != nil {
		return Result{}, err
	}
	defer s.Close(ctx)
	if err := d.Each(func(b []byte, rows int) error { return s.WriteBatch(ctx, b, rows) }); err != nil {
		return Result{}, err
	}
	res, err := s.Finish(ctx)
	if err != nil {
		return Result{}, err
	}
	if err := s.Close(ctx); err != nil {
		return Result{}, err
	}
	return Result{Records: res.Records, Written: res.Bytes, Duration: time.Since(t0)}, nil
}

// Batches is the number of WriteBatch calls of one export.
func (d *Data) Batches() int {
	n := d.Events / d.rows
	if d.tail != nil {
		n++
	}
	return n
}

type noEncoder struct{}

func (noEncoder) WriteBatch(b []byte) (int, error) {
	if len(b) < 12 {
		return 0, errors.New("bench: short batch")
	}
	return int(binary.LittleEndian.Uint32(b[4:8])), nil
}
func (noEncoder) Close() error { return nil }
