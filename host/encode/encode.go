// Package encode holds the host's streaming encoders: they turn SLB1 batches (see package abi)
// into the bytes of a JSON Lines, CSV or Parquet file, optionally compressed, written into an
// io.Writer (an upload handle). A plugin drives them through the encoder capability; the
// byte-heavy work runs here, natively.
//
// One Encoder writes one file. Every batch given to it must carry the schema given to New.
// Memory stays bounded whatever the number of batches: JSON Lines and CSV keep one output
// buffer (about 64 KiB, more only while a single row is larger), or, compressed as parallel
// blocks (gzip, zstd, snappy, lz4: blocks.go), at most 2 x Workers blocks of about BlockSize
// in flight; Parquet flushes a row group every RowGroupRows rows or RowGroupBytes bytes of
// input. See docs/encoders.md.
package encode

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/sluicehq/sluice/abi"
)

// Formats.
const (
	FormatJSONL   = "jsonl"
	FormatParquet = "parquet"
	FormatCSV     = "csv"
)

// Compressions. "" is no compression; "none" is accepted as its spelling (abi/SPEC.md
// section 6, EncoderSpec.compression) and read as "".
const (
	CompressionNone     = ""
	CompressionNoneName = "none"
	CompressionGzip     = "gzip"
	CompressionZstd     = "zstd"
	CompressionBrotli   = "brotli"
	CompressionSnappy   = "snappy"
	CompressionLZ4      = "lz4"
)

// Defaults of the options.
const (
	DefaultRowGroupRows  = 128 * 1024
	DefaultRowGroupBytes = 64 << 20
)

// ErrUnsupported is wrapped by the errors of ValidatePair.
var ErrUnsupported = errors.New("encode: unsupported")

// ErrSchema is wrapped by schema errors: unknown or duplicate columns, a batch whose schema
// is not the one given to New.
var ErrSchema = errors.New("encode: schema mismatch")

var formats = []string{FormatJSONL, FormatParquet, FormatCSV}

var compressions = []string{CompressionNone, CompressionGzip, CompressionZstd,
	CompressionBrotli, CompressionSnappy, CompressionLZ4}

// Formats lists the supported formats.
func Formats() []string { return slices.Clone(formats) }

// Compressions lists the supported compressions ("" is none).
func Compressions() []string { return slices.Clone(compressions) }

// ValidatePair reports whether a format and compression can be combined. Every format takes
// every compression: for jsonl and csv it is a stream compression around the whole file
// (gzip member, zstd frame, brotli stream, snappy framing format, lz4 frame); for parquet it
// is the codec of the pages inside the file (GZIP, ZSTD, BROTLI, SNAPPY, LZ4_RAW), and the
// file itself stays a plain .parquet.
func ValidatePair(format, compression string) error {
	compression = canonCompression(compression)
	if !slices.Contains(formats, format) {
		return fmt.Errorf("%w format %q (want one of jsonl, parquet, csv)", ErrUnsupported, format)
	}
	if !slices.Contains(compressions, compression) {
		return fmt.Errorf("%w compression %q (want none or one of gzip, zstd, brotli, snappy, lz4)",
			ErrUnsupported, compression)
	}
	return nil
}

// canonCompression reads "none" as no compression ("").
func canonCompression(c string) string {
	if c == CompressionNoneName {
		return CompressionNone
	}
	return c
}

// Extension returns the file name suffix of a format and compression: ".jsonl.gz",
// ".csv.zst", ".parquet" (parquet compresses inside the file). The compression suffixes are
// PostHog's: gz, br, zst, lz4, sz. An unsupported pair gives "".
func Extension(format, compression string) string {
	compression = canonCompression(compression)
	if ValidatePair(format, compression) != nil {
		return ""
	}
	if format == FormatParquet {
		return ".parquet"
	}
	return "." + format + compressionSuffix[compression]
}

var compressionSuffix = map[string]string{
	CompressionNone: "", CompressionGzip: ".gz", CompressionZstd: ".zst", CompressionBrotli: ".br",
	CompressionSnappy: ".sz", CompressionLZ4: ".lz4",
}

// ContentType returns the media type of a format's bytes (before any stream compression).
func ContentType(format string) string {
	switch format {
	case FormatJSONL:
		return "application/jsonl"
	case FormatCSV:
		return "text/csv"
	case FormatParquet:
		return "application/vnd.apache.parquet"
	}
	return "application/octet-stream"
}

// ContentEncoding returns the HTTP Content-Encoding of a stream compression, or "" when the
// compression is none, internal to the format (parquet), or has no registered token.
func ContentEncoding(format, compression string) string {
	if format == FormatParquet {
		return ""
	}
	switch compression {
	case CompressionGzip:
		return "gzip"
	case CompressionZstd:
		return "zstd"
	case CompressionBrotli:
		return "br"
	}
	return ""
}

// Option tunes an Encoder.
type Option func(*options)

type options struct {
	level         int
	levelSet      bool
	rowGroupRows  int
	rowGroupBytes int64
	blockSize     int // <= 0: one serial stream
	workers       int // <= 0: GOMAXPROCS
	apiKey        string
}

// APIKey sets the "api_key" of a posthog_batch envelope (default empty).
func APIKey(key string) Option {
	return func(o *options) { o.apiKey = key }
}

// Level sets the compression level, in the codec's own scale: gzip 1-9, zstd 1-4 (fastest,
// default, better, best), brotli 0-11, lz4 0 (fast) or 1-9 (HC levels); snappy has none.
// Without it: gzip 5, zstd 1 (fastest), brotli 4, lz4 fast.
func Level(level int) Option {
	return func(o *options) { o.level, o.levelSet = level, true }
}

// RowGroupRows sets how many rows a Parquet row group holds at most (default 131072).
func RowGroupRows(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.rowGroupRows = n
		}
	}
}

// RowGroupBytes sets how many bytes of input values a Parquet row group holds at most before
// it is flushed (default 64 MiB).
func RowGroupBytes(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.rowGroupBytes = n
		}
	}
}

// BlockSize sets the uncompressed size at which JSON Lines and CSV output compressed with
// gzip, zstd, snappy or lz4 is cut into independently compressed blocks (default
// DefaultBlockSize, 1 MiB; a block ends at the first record boundary at or past it, or at the
// end of a batch once it holds 64 KiB). The bytes of the file depend on it. n <= 0 writes one
// serial stream, as before blocks existed. Brotli, parquet and uncompressed output ignore it.
func BlockSize(n int) Option {
	return func(o *options) { o.blockSize = n }
}

// Workers sets how many goroutines compress blocks at once for one file (default
// GOMAXPROCS at New); at most twice as many blocks are in flight. It does not change the
// bytes of the file.
func Workers(n int) Option {
	return func(o *options) { o.workers = n }
}

// outCol is one output column: which batch column feeds it and under which name.
type outCol struct {
	src      int
	name     string
	col      abi.Column // the batch column, Name as in the batch
	uuidText bool       // cast "string" of a uuid column: Parquet writes the canonical text
}

// rowEncoder is the per-format part of an Encoder.
type rowEncoder interface {
	writeRow(vals []abi.Value) error
	endBatch() error // called after every batch
	close() error    // footer; flushes into the (compressed) stream
}

// Encoder writes one file. It is not safe for concurrent use.
type Encoder struct {
	cols    []abi.Column
	out     []outCol
	stream  *compressStream // serial stream compression; nil for parquet and for no compression
	blocks  *blockStream    // block-parallel stream compression, or nil
	rows    rowEncoder
	reader  abi.BatchReader
	vals    []abi.Value
	where   int    // index of the spec's Where column, or -1: every row
	equals  string // the value Where keeps
	records int64
	closed  bool
	err     error
}

// New returns an encoder writing spec.Format, compressed with spec.Compression, into w. cols
// is the schema of the batches that will follow; spec.Columns selects and renames columns
// (empty: all, own names). Unknown or duplicate output columns are an error.
func New(w io.Writer, spec abi.EncoderSpec, cols []abi.Column, opts ...Option) (*Encoder, error) {
	format := spec.Format
	if format == FormatPostHogBatch {
		if len(spec.Columns) > 0 {
			return nil, fmt.Errorf("%w: format %s takes no columns selection", ErrUnsupported, format)
		}
		format = FormatJSONL // the same compressions
	}
	spec.Compression = canonCompression(spec.Compression)
	if err := ValidatePair(format, spec.Compression); err != nil {
		return nil, err
	}
	o := options{rowGroupRows: DefaultRowGroupRows, rowGroupBytes: DefaultRowGroupBytes,
		blockSize: DefaultBlockSize}
	for _, opt := range opts {
		opt(&o)
	}
	out, err := selectColumns(cols, spec.Columns)
	if err != nil {
		return nil, err
	}
	e := &Encoder{cols: slices.Clone(cols), out: out, vals: make([]abi.Value, len(cols)), where: -1}
	if w := spec.Where; w != nil {
		e.where = slices.IndexFunc(cols, func(c abi.Column) bool { return c.Name == w.Column })
		if e.where < 0 || cols[e.where].Kind != abi.KindString {
			return nil, fmt.Errorf("%w: where: no string column %q", ErrSchema, w.Column)
		}
		e.equals = w.Equals
	}
	if spec.Format == FormatParquet {
		e.rows, err = newParquetEncoder(w, out, spec.Compression, o)
		if err != nil {
			return nil, err
		}
		return e, nil
	}
	dst := w
	switch {
	case spec.Compression == CompressionNone:
	case o.blockSize > 0 && blockable(spec.Compression):
		e.blocks, err = newBlockStream(w, spec.Compression, o)
		if err != nil {
			return nil, err
		}
		dst = e.blocks
	default:
		e.stream, err = newCompressStream(w, spec.Compression, o)
		if err != nil {
			return nil, err
		}
		dst = e.stream
	}
	switch spec.Format {
	case FormatJSONL:
		e.rows = newJSONLEncoder(dst, out, e.blocks)
	case FormatPostHogBatch:
		e.rows, err = newPostHogEncoder(dst, cols, o.apiKey, e.blocks)
	case FormatCSV:
		e.rows, err = newCSVEncoder(dst, out, e.blocks)
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

func selectColumns(cols []abi.Column, sel []abi.ColumnSelect) ([]outCol, error) {
	if len(cols) == 0 {
		return nil, fmt.Errorf("%w: no columns", ErrSchema)
	}
	var out []outCol
	if len(sel) == 0 {
		for i, c := range cols {
			out = append(out, outCol{src: i, name: c.Name, col: c})
		}
	} else {
		for _, s := range sel {
			i := slices.IndexFunc(cols, func(c abi.Column) bool { return c.Name == s.Name })
			if i < 0 {
				return nil, fmt.Errorf("%w: unknown column %q", ErrSchema, s.Name)
			}
			name := s.As
			if name == "" {
				name = s.Name
			}
			switch {
			case s.Cast == "":
			case s.Cast == "string" && (cols[i].Kind == abi.KindUUID || cols[i].Kind == abi.KindString || cols[i].Kind == abi.KindJSON):
			default:
				return nil, fmt.Errorf("%w: column %q of kind %s: cast %q (want \"string\", on uuid, string or json columns)", ErrUnsupported, s.Name, cols[i].Kind, s.Cast)
			}
			out = append(out, outCol{src: i, name: name, col: cols[i], uuidText: s.Cast == "string" && cols[i].Kind == abi.KindUUID})
		}
	}
	seen := make(map[string]bool, len(out))
	for _, c := range out {
		if seen[c.name] {
			return nil, fmt.Errorf("%w: output column %q appears twice", ErrSchema, c.name)
		}
		seen[c.name] = true
	}
	return out, nil
}

// Columns returns the output column names, in order.
func (e *Encoder) Columns() []string {
	names := make([]string, len(e.out))
	for i, c := range e.out {
		names[i] = c.name
	}
	return names
}

// Records is the number of rows encoded so far.
func (e *Encoder) Records() int64 { return e.records }

// WriteBatch decodes one SLB1 batch and encodes its rows. The batch is not retained. After an
// error the encoder is unusable (the file is incomplete) and every later call returns it.
func (e *Encoder) WriteBatch(batch []byte) (records int, err error) {
	if e.err != nil {
		return 0, e.err
	}
	if e.closed {
		return 0, errors.New("encode: WriteBatch after Close")
	}
	if err := e.reader.Reset(batch); err != nil {
		return 0, err
	}
	if !slices.Equal(e.reader.Columns(), e.cols) {
		return 0, fmt.Errorf("%w: the batch's columns differ from the encoder's", ErrSchema)
	}
	for {
		err := e.reader.Next(e.vals)
		if err == io.EOF {
			break
		}
		if err == nil && e.where >= 0 {
			if v := e.vals[e.where]; v.Null || string(v.Bytes) != e.equals {
				continue
			}
		}
		if err == nil {
			err = e.rows.writeRow(e.vals)
		}
		if err != nil {
			e.err = err
			return records, err
		}
		records++
		e.records++
	}
	if err := e.rows.endBatch(); err != nil {
		e.err = err
		return records, err
	}
	return records, nil
}

// Close writes the format's footer and flushes the compressor; with block compression it
// waits for every block and writes the rest in order. It does not close w. After an error
// it returns that error (and still waits for the blocks in flight, writing none of them);
// a second Close returns what the first did.
func (e *Encoder) Close() error {
	if e.closed {
		return e.err
	}
	e.closed = true
	if e.err != nil {
		if e.blocks != nil {
			e.blocks.abort()
		}
		return e.err
	}
	if err := e.rows.close(); err != nil {
		e.err = err
		if e.blocks != nil {
			e.blocks.abort()
		}
		return err
	}
	if e.blocks != nil {
		if err := e.blocks.close(); err != nil {
			e.err = err
			return err
		}
	}
	if e.stream != nil {
		if err := e.stream.Close(); err != nil {
			e.err = err
			return err
		}
	}
	return nil
}
