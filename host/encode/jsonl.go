package encode

import (
	"io"
	"math"
	"strconv"

	"github.com/sluicehq/sluice/abi"
)

// flushAt is the size at which the output buffer is handed to the writer below.
const flushAt = 64 << 10

// maxKeptBuffer bounds the output buffer kept between rows after a huge row grew it.
const maxKeptBuffer = 4 << 20

// outBuf is an append buffer flushed to w once it holds flushAt bytes: one copy per byte
// instead of bufio's two, and rows are built with append-style formatting. With blocks set,
// buf is the block being filled: handed over whole (no copy) once it reaches the block size.
type outBuf struct {
	w      io.Writer
	blocks *blockStream
	limit  int
	buf    []byte
}

func (o *outBuf) maybeFlush() error {
	if len(o.buf) < o.limit {
		return nil
	}
	return o.flush()
}

func (o *outBuf) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	if o.blocks != nil {
		var err error
		o.buf, err = o.blocks.submit(o.buf)
		return err
	}
	_, err := o.w.Write(o.buf)
	if cap(o.buf) > maxKeptBuffer {
		o.buf = make([]byte, 0, 2*flushAt)
	} else {
		o.buf = o.buf[:0]
	}
	return err
}

// jsonlEncoder writes one JSON object per line, keys in output column order.
type jsonlEncoder struct {
	out  outBuf
	cols []outCol
	keys [][]byte // `{"name":` for the first column, `,"name":` for the others
	tmp  []byte
}

func newJSONLEncoder(w io.Writer, cols []outCol, blocks *blockStream) *jsonlEncoder {
	e := &jsonlEncoder{out: outBuf{w: w, limit: flushAt, buf: make([]byte, 0, 2*flushAt)}, cols: cols}
	if blocks != nil {
		// Blocks end at the first row boundary at or past the block size, or at the end of a
		// batch once they hold batchCut bytes (endBatch): never where timing decides.
		e.out = outBuf{blocks: blocks, limit: blocks.size, buf: blocks.cur}
		blocks.cur = nil
	}
	for i, c := range cols {
		k := []byte{','}
		if i == 0 {
			k[0] = '{'
		}
		k = appendJSONString(k, []byte(c.name))
		e.keys = append(e.keys, append(k, ':'))
	}
	return e
}

func (e *jsonlEncoder) writeRow(vals []abi.Value) error {
	b := e.out.buf
	for i := range e.cols {
		c := &e.cols[i]
		b = append(b, e.keys[i]...)
		b = e.appendValue(b, c.col.Kind, &vals[c.src])
	}
	b = append(b, '}', '\n')
	e.out.buf = b
	return e.out.maybeFlush()
}

func (e *jsonlEncoder) appendValue(b []byte, k abi.Kind, v *abi.Value) []byte {
	if v.Null {
		return append(b, "null"...)
	}
	switch k {
	case abi.KindString:
		return appendJSONString(b, v.Bytes)
	case abi.KindJSON:
		return e.appendJSONText(b, v.Bytes)
	case abi.KindInt64:
		return strconv.AppendInt(b, v.Int, 10)
	case abi.KindTimestamp:
		b = append(b, '"')
		b = appendTimestamp(b, v.Int)
		return append(b, '"')
	case abi.KindUUID:
		b = append(b, '"')
		b = appendUUID(b, v.Bytes)
		return append(b, '"')
	case abi.KindFloat64:
		return appendJSONFloat(b, v.Float)
	case abi.KindBool:
		if v.Int != 0 {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	}
	return append(b, "null"...)
}

// appendJSONText embeds a json-kind value. Valid JSON on one line is copied as is; valid JSON
// that spans lines is compacted; anything else (including empty text and invalid UTF-8) is
// emitted as a JSON string holding the text, so the line stays valid JSON.
func (e *jsonlEncoder) appendJSONText(b []byte, text []byte) []byte {
	switch checkJSON(text) {
	case jsonOK:
		return append(b, text...)
	case jsonMultiline:
		var err error
		e.tmp, err = compactJSON(e.tmp[:0], text)
		if err == nil {
			return append(b, e.tmp...)
		}
	}
	return appendJSONString(b, text)
}

func (e *jsonlEncoder) endBatch() error {
	if e.out.blocks != nil {
		// What the destination holds after a batch: every row but less than batchCut bytes.
		if len(e.out.buf) >= batchCut {
			if err := e.out.flush(); err != nil {
				return err
			}
		}
		return e.out.blocks.drain()
	}
	return e.out.flush()
}

func (e *jsonlEncoder) close() error { return e.out.flush() }

// appendJSONFloat formats like encoding/json; NaN and infinities, which JSON cannot hold,
// become null (as JavaScript's JSON.stringify does).
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	fmt := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmt = 'e'
	}
	b = strconv.AppendFloat(b, f, fmt, -1, 64)
	if fmt == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
