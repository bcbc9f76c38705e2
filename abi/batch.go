package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// Kind is the type of a batch column.
type Kind uint8

// Column kinds. Values 1-63 are defined by ABI v1.x; the high bit of the type byte marks a
// nullable column.
const (
	KindString    Kind = 1 // uvarint length + UTF-8 bytes
	KindJSON      Kind = 2 // uvarint length + the text of one JSON value
	KindInt64     Kind = 3 // zigzag varint
	KindTimestamp Kind = 4 // zigzag varint of microseconds since 1970-01-01T00:00:00Z
	KindUUID      Kind = 5 // 16 bytes, RFC 4122 byte order
	KindFloat64   Kind = 6 // 8 bytes, IEEE 754, little endian
	KindBool      Kind = 7 // 1 byte, 0 or 1
)

const nullableBit = 0x80

var kindNames = map[Kind]string{KindString: "string", KindJSON: "json", KindInt64: "int64",
	KindTimestamp: "timestamp", KindUUID: "uuid", KindFloat64: "float64", KindBool: "bool"}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind_%d", uint8(k))
}

// MarshalText writes the kind's name, for JSON documents.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for kk, n := range kindNames {
		if n == string(b) {
			*k = kk
			return nil
		}
	}
	return fmt.Errorf("abi: unknown column kind %q", b)
}

// Column is one column of a batch schema.
type Column struct {
	Name     string `json:"name"`
	Kind     Kind   `json:"kind"`
	Nullable bool   `json:"nullable,omitempty"`
}

// The standard event columns, in the order the host sends them. Sources may append extra
// columns after these.
var EventColumns = []Column{
	{Name: "uuid", Kind: KindUUID},
	{Name: "event", Kind: KindString},
	{Name: "distinct_id", Kind: KindString},
	{Name: "person_id", Kind: KindUUID, Nullable: true},
	{Name: "team_id", Kind: KindInt64},
	{Name: "properties", Kind: KindJSON},
	{Name: "person_properties", Kind: KindJSON, Nullable: true},
	{Name: "elements_chain", Kind: KindString},
	{Name: "timestamp", Kind: KindTimestamp},
	{Name: "created_at", Kind: KindTimestamp, Nullable: true},
	{Name: "inserted_at", Kind: KindTimestamp},
}

// Magic opens every batch: "SLB1".
var Magic = [4]byte{'S', 'L', 'B', '1'}

// Limits a decoder enforces on the header.
const (
	MaxColumns       = 1024
	MaxColumnNameLen = 256
	headerFixedLen   = 12 // magic, u32 record count, u32 flags
)

// Value is one cell. Which field is meaningful depends on the column kind: Bytes for
// string, json and uuid (it aliases the batch buffer when decoded); Int for int64,
// timestamp (microseconds) and bool (0/1); Float for float64.
type Value struct {
	Null  bool
	Bytes []byte
	Int   int64
	Float float64
}

// Time returns a timestamp value as a UTC time.
func (v Value) Time() time.Time { return time.UnixMicro(v.Int).UTC() }

// Micros converts a time to the batch's timestamp unit.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// BatchWriter builds one batch in memory. Values are appended column by column, row by
// row; EndRow closes a row. It is not safe for concurrent use.
type BatchWriter struct {
	cols []Column
	buf  []byte
	col  int
	rows uint32
}

// NewBatchWriter starts a batch with the given schema, reusing buf's storage.
func NewBatchWriter(cols []Column, buf []byte) *BatchWriter {
	w := &BatchWriter{cols: cols, buf: buf}
	w.Reset()
	return w
}

// Reset empties the batch and keeps the schema and storage.
func (w *BatchWriter) Reset() {
	w.buf = append(w.buf[:0], Magic[:]...)
	w.buf = append(w.buf, 0, 0, 0, 0, 0, 0, 0, 0)
	w.buf = binary.AppendUvarint(w.buf, uint64(len(w.cols)))
	for _, c := range w.cols {
		w.buf = binary.AppendUvarint(w.buf, uint64(len(c.Name)))
		w.buf = append(w.buf, c.Name...)
		t := byte(c.Kind)
		if c.Nullable {
			t |= nullableBit
		}
		w.buf = append(w.buf, t)
	}
	w.col, w.rows = 0, 0
}

// Columns returns the schema.
func (w *BatchWriter) Columns() []Column { return w.cols }

// Records is the number of complete rows.
func (w *BatchWriter) Records() int { return int(w.rows) }

// Len is the encoded size so far.
func (w *BatchWriter) Len() int { return len(w.buf) }

func (w *BatchWriter) next(k Kind) Column {
	if w.col >= len(w.cols) {
		panic("abi: more values than columns in a row")
	}
	c := w.cols[w.col]
	if c.Kind != k && !(c.Kind == KindJSON && k == KindString) {
		panic(fmt.Sprintf("abi: column %q is %s, got %s", c.Name, c.Kind, k))
	}
	w.col++
	if c.Nullable {
		w.buf = append(w.buf, 1)
	}
	return c
}

// AppendNull appends a null to a nullable column.
func (w *BatchWriter) AppendNull() {
	if w.col >= len(w.cols) || !w.cols[w.col].Nullable {
		panic("abi: null in a column that is not nullable")
	}
	w.col++
	w.buf = append(w.buf, 0)
}

// AppendString appends a string or JSON value.
func (w *BatchWriter) AppendString(s string) {
	w.next(KindString)
	w.buf = binary.AppendUvarint(w.buf, uint64(len(s)))
	w.buf = append(w.buf, s...)
}

// AppendBytes appends a string or JSON value held in bytes.
func (w *BatchWriter) AppendBytes(b []byte) {
	w.next(KindString)
	w.buf = binary.AppendUvarint(w.buf, uint64(len(b)))
	w.buf = append(w.buf, b...)
}

// AppendInt appends an int64.
func (w *BatchWriter) AppendInt(v int64) {
	w.next(KindInt64)
	w.buf = binary.AppendVarint(w.buf, v)
}

// AppendTimestamp appends microseconds since the Unix epoch.
func (w *BatchWriter) AppendTimestamp(micros int64) {
	w.next(KindTimestamp)
	w.buf = binary.AppendVarint(w.buf, micros)
}

// AppendTime appends a time as a timestamp.
func (w *BatchWriter) AppendTime(t time.Time) { w.AppendTimestamp(t.UnixMicro()) }

// AppendUUID appends 16 bytes.
func (w *BatchWriter) AppendUUID(u [16]byte) {
	w.next(KindUUID)
	w.buf = append(w.buf, u[:]...)
}

// AppendFloat appends a float64.
func (w *BatchWriter) AppendFloat(f float64) {
	w.next(KindFloat64)
	w.buf = binary.LittleEndian.AppendUint64(w.buf, math.Float64bits(f))
}

// AppendBool appends a bool.
func (w *BatchWriter) AppendBool(b bool) {
	w.next(KindBool)
	if b {
		w.buf = append(w.buf, 1)
	} else {
		w.buf = append(w.buf, 0)
	}
}

// AppendValue appends a Value according to the current column's kind.
func (w *BatchWriter) AppendValue(v Value) {
	if w.col >= len(w.cols) {
		panic("abi: more values than columns in a row")
	}
	if v.Null {
		w.AppendNull()
		return
	}
	switch w.cols[w.col].Kind {
	case KindString, KindJSON:
		w.AppendBytes(v.Bytes)
	case KindInt64:
		w.AppendInt(v.Int)
	case KindTimestamp:
		w.AppendTimestamp(v.Int)
	case KindUUID:
		var u [16]byte
		copy(u[:], v.Bytes)
		w.AppendUUID(u)
	case KindFloat64:
		w.AppendFloat(v.Float)
	case KindBool:
		w.AppendBool(v.Int != 0)
	}
}

// EndRow closes the current row; every column must have had a value.
func (w *BatchWriter) EndRow() {
	if w.col != len(w.cols) {
		panic(fmt.Sprintf("abi: row ended after %d of %d columns", w.col, len(w.cols)))
	}
	w.col = 0
	w.rows++
}

// Bytes returns the encoded batch. It aliases the writer's storage until the next Reset.
func (w *BatchWriter) Bytes() []byte {
	if w.col != 0 {
		panic("abi: Bytes called in the middle of a row")
	}
	binary.LittleEndian.PutUint32(w.buf[4:8], w.rows)
	return w.buf
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("abi: malformed batch")

// BatchReader decodes a batch. Values it returns alias the input buffer.
type BatchReader struct {
	b       []byte
	off     int
	cols    []Column
	records int
	read    int
}

// NewBatchReader parses the header of a batch.
func NewBatchReader(b []byte) (*BatchReader, error) {
	r := &BatchReader{}
	return r, r.Reset(b)
}

// Reset starts reading another batch, reusing the reader's storage.
func (r *BatchReader) Reset(b []byte) error {
	*r = BatchReader{b: b, cols: r.cols[:0]}
	if len(b) < headerFixedLen || [4]byte(b[:4]) != Magic {
		return fmt.Errorf("%w: missing SLB1 header", ErrMalformed)
	}
	r.records = int(binary.LittleEndian.Uint32(b[4:8]))
	if flags := binary.LittleEndian.Uint32(b[8:12]); flags != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	r.off = headerFixedLen
	n, err := r.uvarint()
	if err != nil {
		return err
	}
	if n == 0 || n > MaxColumns {
		return fmt.Errorf("%w: %d columns (want 1..%d)", ErrMalformed, n, MaxColumns)
	}
	for i := uint64(0); i < n; i++ {
		name, err := r.bytes(MaxColumnNameLen)
		if err != nil {
			return fmt.Errorf("column %d name: %w", i, err)
		}
		if len(name) == 0 || !utf8.Valid(name) {
			return fmt.Errorf("%w: column %d has an empty or invalid name", ErrMalformed, i)
		}
		if r.off >= len(r.b) {
			return fmt.Errorf("%w: column %d type missing", ErrMalformed, i)
		}
		t := r.b[r.off]
		r.off++
		k := Kind(t &^ nullableBit)
		if _, ok := kindNames[k]; !ok {
			return fmt.Errorf("%w: column %q has unknown kind %d", ErrMalformed, name, k)
		}
		r.cols = append(r.cols, Column{Name: string(name), Kind: k, Nullable: t&nullableBit != 0})
	}
	// Every row takes at least one byte per column: a cheap bound against absurd counts.
	if r.records > (len(r.b)-r.off)/len(r.cols)+1 && r.records > 0 {
		return fmt.Errorf("%w: %d records cannot fit in %d bytes", ErrMalformed, r.records, len(r.b)-r.off)
	}
	return nil
}

// Columns returns the schema.
func (r *BatchReader) Columns() []Column { return r.cols }

// Records is the record count the header declares.
func (r *BatchReader) Records() int { return r.records }

// Next decodes the next row into vals (len(vals) must be len(Columns())). It returns
// io.EOF after the last row.
func (r *BatchReader) Next(vals []Value) error {
	if r.read == r.records {
		if r.off != len(r.b) {
			return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b)-r.off)
		}
		return io.EOF
	}
	if len(vals) < len(r.cols) {
		return fmt.Errorf("abi: Next needs %d values, got %d", len(r.cols), len(vals))
	}
	for i, c := range r.cols {
		v := &vals[i]
		*v = Value{}
		if c.Nullable {
			if r.off >= len(r.b) {
				return r.short(c)
			}
			p := r.b[r.off]
			r.off++
			if p > 1 {
				return fmt.Errorf("%w: bad null marker %d in column %q", ErrMalformed, p, c.Name)
			}
			if p == 0 {
				v.Null = true
				continue
			}
		}
		switch c.Kind {
		case KindString, KindJSON:
			b, err := r.bytes(len(r.b))
			if err != nil {
				return fmt.Errorf("column %q: %w", c.Name, err)
			}
			v.Bytes = b
		case KindInt64, KindTimestamp:
			x, n := binary.Varint(r.b[r.off:])
			if n <= 0 {
				return r.short(c)
			}
			r.off += n
			v.Int = x
		case KindUUID:
			if len(r.b)-r.off < 16 {
				return r.short(c)
			}
			v.Bytes = r.b[r.off : r.off+16 : r.off+16]
			r.off += 16
		case KindFloat64:
			if len(r.b)-r.off < 8 {
				return r.short(c)
			}
			v.Float = math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.off:]))
			r.off += 8
		case KindBool:
			if r.off >= len(r.b) || r.b[r.off] > 1 {
				return fmt.Errorf("%w: bad bool in column %q", ErrMalformed, c.Name)
			}
			v.Int = int64(r.b[r.off])
			r.off++
		}
	}
	r.read++
	return nil
}

func (r *BatchReader) short(c Column) error {
	return fmt.Errorf("%w: record %d truncated in column %q", ErrMalformed, r.read, c.Name)
}

func (r *BatchReader) uvarint() (uint64, error) {
	x, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad varint at offset %d", ErrMalformed, r.off)
	}
	r.off += n
	return x, nil
}

func (r *BatchReader) bytes(max int) ([]byte, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(max) || n > uint64(len(r.b)-r.off) {
		return nil, fmt.Errorf("%w: length %d at offset %d exceeds the batch", ErrMalformed, n, r.off)
	}
	b := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return b, nil
}

// RowOffsets returns the byte offset of each row of a batch and, last, the batch's length:
// len(result) = Records()+1. Row i is b[off[i]:off[i+1]]. It decodes the whole batch.
func RowOffsets(b []byte) ([]int, error) {
	r, err := NewBatchReader(b)
	if err != nil {
		return nil, err
	}
	offs := make([]int, 0, r.records+1)
	vals := make([]Value, len(r.cols))
	for {
		offs = append(offs, r.off)
		if err := r.Next(vals); err == io.EOF {
			return offs, nil
		} else if err != nil {
			return nil, err
		}
	}
}

// SliceBatch builds the batch of rows [start, start+count) of b, given b's row offsets
// (RowOffsets): b's header with the count replaced, then those rows' bytes.
func SliceBatch(b []byte, offs []int, start, count int) ([]byte, error) {
	if start < 0 || count < 0 || start+count > len(offs)-1 {
		return nil, fmt.Errorf("abi: rows [%d, %d) outside a batch of %d rows", start, start+count, len(offs)-1)
	}
	head := b[:offs[0]]
	out := make([]byte, 0, len(head)+offs[start+count]-offs[start])
	out = append(out, head...)
	binary.LittleEndian.PutUint32(out[4:8], uint32(count))
	return append(out, b[offs[start]:offs[start+count]]...), nil
}
