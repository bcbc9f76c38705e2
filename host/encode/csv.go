package encode

import (
	"bufio"
	"encoding/csv"
	"io"
	"math"
	"strconv"
	"unsafe"

	"github.com/sluicehq/sluice/abi"
)

// csvEncoder writes a header row then one record per row, quoted per RFC 4180 by
// encoding/csv, lines ending in LF. Nulls are empty fields.
type csvEncoder struct {
	bw      *bufio.Writer
	w       *csv.Writer
	blocks  *blockStream // block compression: cut after the row that reaches the block size
	cols    []outCol
	fields  []string
	scratch []byte
}

func newCSVEncoder(w io.Writer, cols []outCol, blocks *blockStream) (*csvEncoder, error) {
	// csv.NewWriter reuses a *bufio.Writer of at least 4 KiB as its own buffer.
	bw := bufio.NewWriterSize(w, flushAt)
	e := &csvEncoder{bw: bw, w: csv.NewWriter(bw), blocks: blocks, cols: cols, fields: make([]string, len(cols))}
	for i, c := range cols {
		e.fields[i] = c.name
	}
	if err := e.w.Write(e.fields); err != nil {
		return nil, err
	}
	return e, nil
}

// bytesString views b as a string without copying. The strings given to csv.Writer.Write
// do not outlive the call, and neither the batch nor the scratch buffer change during it.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (e *csvEncoder) writeRow(vals []abi.Value) error {
	s := e.scratch[:0]
	// First pass formats the non-text values into scratch and records their ends; the
	// strings are taken in a second pass, once scratch no longer moves.
	var ends [64]int
	ends2 := ends[:0]
	if len(e.cols) > len(ends) {
		ends2 = make([]int, 0, len(e.cols))
	}
	for i := range e.cols {
		c := &e.cols[i]
		v := &vals[c.src]
		if !v.Null {
			switch c.col.Kind {
			case abi.KindInt64:
				s = strconv.AppendInt(s, v.Int, 10)
			case abi.KindTimestamp:
				s = appendTimestamp(s, v.Int)
			case abi.KindUUID:
				s = appendUUID(s, v.Bytes)
			case abi.KindFloat64:
				s = appendCSVFloat(s, v.Float)
			case abi.KindBool:
				if v.Int != 0 {
					s = append(s, "true"...)
				} else {
					s = append(s, "false"...)
				}
			}
		}
		ends2 = append(ends2, len(s))
	}
	e.scratch = s
	start := 0
	for i := range e.cols {
		c := &e.cols[i]
		v := &vals[c.src]
		switch {
		case v.Null:
			e.fields[i] = ""
		case c.col.Kind == abi.KindString || c.col.Kind == abi.KindJSON:
			e.fields[i] = bytesString(v.Bytes)
		default:
			e.fields[i] = bytesString(s[start:ends2[i]])
		}
		start = ends2[i]
	}
	err := e.w.Write(e.fields)
	clear(e.fields)
	if err == nil && e.blocks != nil && e.blocks.pending()+e.bw.Buffered() >= e.blocks.size {
		// The block so far is what bufio passed on plus what it holds: independent of when
		// it flushed, and of the batches.
		e.w.Flush()
		if err = e.w.Error(); err == nil {
			err = e.blocks.cut()
		}
	}
	return err
}

func appendCSVFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

func (e *csvEncoder) endBatch() error {
	e.w.Flush()
	if cap(e.scratch) > maxKeptBuffer {
		e.scratch = nil
	}
	if err := e.w.Error(); err != nil {
		return err
	}
	if e.blocks != nil {
		// As for jsonl: the destination holds every row but less than batchCut bytes.
		if e.blocks.pending() >= batchCut {
			if err := e.blocks.cut(); err != nil {
				return err
			}
		}
		return e.blocks.drain()
	}
	return nil
}

func (e *csvEncoder) close() error {
	e.w.Flush()
	return e.w.Error()
}
