package encode

import (
	"fmt"
	"io"
	"slices"
	"sync"

	kzstd "github.com/klauspost/compress/zstd"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/brotli"
	"github.com/parquet-go/parquet-go/compress/gzip"
	"github.com/parquet-go/parquet-go/compress/lz4"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/sluicehq/sluice/abi"
)

// orderedGroup is a parquet group whose fields keep the output column order (parquet.Group
// is a map and sorts its fields by name).
type orderedGroup struct {
	parquet.Group
	order []string
}

func (g orderedGroup) Fields() []parquet.Field {
	fields := g.Group.Fields()
	slices.SortFunc(fields, func(a, b parquet.Field) int {
		return slices.Index(g.order, a.Name()) - slices.Index(g.order, b.Name())
	})
	return fields
}

// parquetNode maps a batch column kind to a parquet leaf.
func parquetNode(c abi.Column) (parquet.Node, error) {
	var n parquet.Node
	switch c.Kind {
	case abi.KindString, abi.KindJSON:
		// JSON text is stored as a UTF8 string, as PostHog's exports do: readers that do not
		// know the JSON logical type still see text.
		n = parquet.String()
	case abi.KindInt64:
		n = parquet.Int(64)
	case abi.KindTimestamp:
		n = parquet.TimestampAdjusted(parquet.Microsecond, true)
	case abi.KindUUID:
		n = parquet.UUID()
	case abi.KindFloat64:
		n = parquet.Leaf(parquet.DoubleType)
	case abi.KindBool:
		n = parquet.Leaf(parquet.BooleanType)
	default:
		return nil, fmt.Errorf("%w: column %q has kind %s, which parquet output does not support",
			ErrSchema, c.Name, c.Kind)
	}
	if c.Nullable {
		n = parquet.Optional(n)
	}
	return n, nil
}

// parquetSchema builds the flat parquet schema of the output columns, in output order.
func parquetSchema(cols []outCol) (*parquet.Schema, error) {
	g := orderedGroup{Group: parquet.Group{}}
	for _, c := range cols {
		col := c.col
		if c.uuidText {
			col.Kind = abi.KindString
		}
		n, err := parquetNode(col)
		if err != nil {
			return nil, err
		}
		g.Group[c.name] = n
		g.order = append(g.order, c.name)
	}
	return parquet.NewSchema("event", g), nil
}

func parquetCodec(compression string, o options) (compress.Codec, error) {
	switch compression {
	case CompressionNone:
		return &parquet.Uncompressed, nil
	case CompressionGzip:
		l := gzip.DefaultCompression
		if o.levelSet {
			if o.level < gzip.BestSpeed || o.level > gzip.BestCompression {
				return nil, fmt.Errorf("encode: gzip level %d (want 1-9)", o.level)
			}
			l = o.level
		}
		return &gzip.Codec{Level: l}, nil
	case CompressionZstd:
		l := zstd.DefaultLevel
		if o.levelSet {
			l = zstd.Level(o.level)
		}
		if l < zstd.SpeedFastest || l > zstd.SpeedBestCompression {
			return nil, fmt.Errorf("encode: zstd level %d (want 1-4)", l)
		}
		return zstdCodecs[l], nil
	case CompressionBrotli:
		q := defaultBrotliLevel
		if o.levelSet {
			if o.level < 0 || o.level > 11 {
				return nil, fmt.Errorf("encode: brotli level %d (want 0-11)", o.level)
			}
			q = o.level
		}
		return &brotli.Codec{Quality: q, LGWin: brotli.DefaultLGWin}, nil
	case CompressionSnappy:
		return &snappy.Codec{}, nil
	case CompressionLZ4:
		l := lz4.DefaultLevel
		if o.levelSet {
			if o.level < 0 || o.level > 9 {
				return nil, fmt.Errorf("encode: lz4 level %d (want 0-9)", o.level)
			}
			if o.level > 0 {
				l = lz4.Level(1 << (8 + o.level)) // lz4.Level1 .. lz4.Level9
			}
		}
		return &lz4.Codec{Level: l}, nil
	}
	return nil, fmt.Errorf("%w compression %q", ErrUnsupported, compression)
}

// zstdPageCodec is parquet-go's ZSTD codec with a small window and encoders shared by every
// file: parquet-go's own codec keeps an 8 MiB-window encoder (32 MiB of history) per codec
// value, which dominated the heap of a writer. Pages are at most a few hundred KiB, so a
// 1 MiB window loses nothing.
type zstdPageCodec struct {
	zstd.Codec // String, CompressionCodec, Decode
	level      kzstd.EncoderLevel
	encoders   sync.Pool
}

var zstdCodecs = func() (c [kzstd.SpeedBestCompression + 1]*zstdPageCodec) {
	for l := kzstd.SpeedFastest; l <= kzstd.SpeedBestCompression; l++ {
		c[l] = &zstdPageCodec{level: l}
	}
	return c
}()

func (c *zstdPageCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*kzstd.Encoder)
	if e == nil {
		var err error
		e, err = kzstd.NewWriter(nil, kzstd.WithEncoderLevel(c.level), kzstd.WithEncoderConcurrency(1),
			kzstd.WithWindowSize(1<<20), kzstd.WithZeroFrames(true), kzstd.WithEncoderCRC(false),
			kzstd.WithLowerEncoderMem(true))
		if err != nil {
			return dst, err
		}
	}
	dst = e.EncodeAll(src, dst[:0])
	c.encoders.Put(e)
	return dst, nil
}

// parquetEncoder buffers rows into the current row group and flushes it once it holds
// rowGroupRows rows or rowGroupBytes bytes of values, so memory is bounded by one row group
// (its column pages, compressed) plus one page buffer per column.
type parquetEncoder struct {
	w       *parquet.Writer
	cols    []outCol
	rows    []parquet.Row // a block of rows handed to WriteRows at once
	n       int           // rows filled in the block
	defs    []int         // definition level of a present value, per output column
	maxRows int
	maxB    int64
	rgRows  int
	rgBytes int64
}

const parquetBlock = 256

func newParquetEncoder(w io.Writer, cols []outCol, compression string, o options) (*parquetEncoder, error) {
	schema, err := parquetSchema(cols)
	if err != nil {
		return nil, err
	}
	codec, err := parquetCodec(compression, o)
	if err != nil {
		return nil, err
	}
	e := &parquetEncoder{
		cols:    cols,
		maxRows: o.rowGroupRows,
		maxB:    o.rowGroupBytes,
		rows:    make([]parquet.Row, parquetBlock),
		defs:    make([]int, len(cols)),
	}
	for i := range e.rows {
		e.rows[i] = make(parquet.Row, len(cols))
	}
	for i, c := range cols {
		if c.col.Nullable {
			e.defs[i] = 1
		}
	}
	e.w = parquet.NewWriter(w, schema,
		parquet.Compression(codec),
		parquet.MaxRowsPerRowGroup(int64(o.rowGroupRows)),
		parquet.CreatedBy("sluice", "", ""),
	)
	return e, nil
}

func (e *parquetEncoder) writeRow(vals []abi.Value) error {
	row := e.rows[e.n]
	var size int64
	for i := range e.cols {
		c := &e.cols[i]
		v := &vals[c.src]
		var pv parquet.Value
		if v.Null {
			row[i] = parquet.NullValue().Level(0, 0, i)
			continue
		}
		switch c.col.Kind {
		case abi.KindString, abi.KindJSON:
			pv = parquet.ByteArrayValue(v.Bytes)
			size += int64(len(v.Bytes)) + 4
		case abi.KindInt64, abi.KindTimestamp:
			pv = parquet.Int64Value(v.Int)
			size += 8
		case abi.KindUUID:
			if c.uuidText {
				// A fresh slice: the block's values are written after this row.
				pv = parquet.ByteArrayValue(appendUUID(make([]byte, 0, 36), v.Bytes))
				size += 40
				break
			}
			pv = parquet.FixedLenByteArrayValue(v.Bytes)
			size += 16
		case abi.KindFloat64:
			pv = parquet.DoubleValue(v.Float)
			size += 8
		case abi.KindBool:
			pv = parquet.BooleanValue(v.Int != 0)
			size++
		}
		row[i] = pv.Level(0, e.defs[i], i)
	}
	e.n++
	e.rgRows++
	e.rgBytes += size
	// Values alias the batch, so a block never outlives the batch: flushed when full, when
	// the row group is due, and at the end of every batch.
	if e.n == len(e.rows) || e.rgRows >= e.maxRows || e.rgBytes >= e.maxB {
		return e.flushBlock()
	}
	return nil
}

func (e *parquetEncoder) flushBlock() error {
	if e.n > 0 {
		_, err := e.w.WriteRows(e.rows[:e.n])
		for _, r := range e.rows[:e.n] {
			clear(r) // drop references to the batch
		}
		e.n = 0
		if err != nil {
			return err
		}
	}
	if e.rgRows >= e.maxRows || e.rgBytes >= e.maxB {
		if err := e.w.Flush(); err != nil {
			return err
		}
		e.rgRows, e.rgBytes = 0, 0
	}
	return nil
}

func (e *parquetEncoder) endBatch() error { return e.flushBlock() }

func (e *parquetEncoder) close() error {
	if err := e.flushBlock(); err != nil {
		return err
	}
	return e.w.Close()
}
