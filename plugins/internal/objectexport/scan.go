package objectexport

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/abi"
)

// errShort reports a batch that ends inside a value.
var errShort = fmt.Errorf("%w: batch truncated", abi.ErrMalformed)

// eventNames calls fn with the value of string column col of every row of an SLB1 batch
// (SPEC section 8; rows where it is null are skipped), skipping the other values without decoding them: the plugin only
// needs to know which event names a batch holds, and a guest pays for every instruction
// (abi.BatchReader, which decodes each value, costs several times more here).
func eventNames(batch []byte, col int, fn func(name []byte)) error {
	if len(batch) < 12 || string(batch[:4]) != "SLB1" {
		return fmt.Errorf("%w: not an SLB1 batch", abi.ErrMalformed)
	}
	count := binary.LittleEndian.Uint32(batch[4:8])
	off := 12
	uvarint := func() (uint64, error) {
		x, n := binary.Uvarint(batch[off:])
		if n <= 0 {
			return 0, fmt.Errorf("%w: bad varint at offset %d", abi.ErrMalformed, off)
		}
		off += n
		return x, nil
	}
	ncols, err := uvarint()
	if err != nil {
		return err
	}
	if ncols == 0 || ncols > 1024 || col < 0 || uint64(col) >= ncols {
		return fmt.Errorf("%w: %d columns, column %d wanted", abi.ErrMalformed, ncols, col)
	}
	types := make([]byte, ncols)
	for i := range types {
		n, err := uvarint()
		if err != nil {
			return err
		}
		if n > uint64(len(batch)-off) || uint64(len(batch)-off)-n < 1 {
			return errShort
		}
		off += int(n)
		types[i] = batch[off]
		off++
	}
	if types[col]&0x7f != byte(abi.KindString) {
		return errors.New("objectexport: the event column is not a string column")
	}
	// The row loop is written for a guest, where every call and bounds check costs: varints
	// are skipped inline, and only the event column's bytes are handed out.
	n := len(batch)
	for range count {
		for i, t := range types {
			if t&0x80 != 0 { // nullable: a presence byte
				if off >= n {
					return errShort
				}
				present := batch[off]
				off++
				if present == 0 {
					continue
				}
			}
			switch abi.Kind(t & 0x7f) {
			case abi.KindString, abi.KindJSON:
				var l uint64
				for shift := uint(0); ; shift += 7 {
					if off >= n || shift > 63 {
						return errShort
					}
					c := batch[off]
					off++
					l |= uint64(c&0x7f) << shift
					if c < 0x80 {
						break
					}
				}
				if l > uint64(n-off) {
					return errShort
				}
				if i == col {
					fn(batch[off : off+int(l)])
				}
				off += int(l)
			case abi.KindInt64, abi.KindTimestamp:
				for {
					if off >= n {
						return errShort
					}
					c := batch[off]
					off++
					if c < 0x80 {
						break
					}
				}
			case abi.KindUUID:
				off += 16
			case abi.KindFloat64:
				off += 8
			case abi.KindBool:
				off++
			default:
				return fmt.Errorf("%w: unknown kind %d", abi.ErrMalformed, t&0x7f)
			}
			if off > n {
				return errShort
			}
		}
	}
	if off != len(batch) {
		return fmt.Errorf("%w: %d trailing bytes", abi.ErrMalformed, len(batch)-off)
	}
	return nil
}
