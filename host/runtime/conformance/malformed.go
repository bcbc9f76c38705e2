package conformance

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// Malformed is a batch that breaks one must-reject rule of SPEC section 8 and still passes
// the host's own check before sluice_write_batch (magic and record count).
type Malformed struct {
	Name    string
	Batch   []byte
	Records int
}

// MalformedBatches returns one broken event batch per must-reject rule a plugin's decoder
// meets after the host's check, each built from a valid batch of 3 events.
func MalformedBatches() []Malformed {
	evs := Events(3, 200, 77)
	good := Batch(evs)
	hdr := len(Batch(nil)) // magic, count, flags, the columns
	// Row 0 starts with the uuid (16 bytes), then event and distinct_id (uvarint length +
	// bytes), then person_id's presence byte.
	eventLen := hdr + 16
	presence := eventLen + 1 + len(evs[0].Event) + 1 + len(evs[0].DistinctID)
	// The first column's kind byte: after ncols (1 byte) and the name's length and bytes.
	kind := 12 + 1 + 1 + len(abi.EventColumns[0].Name)
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	splice := func(at, drop int, ins ...byte) []byte {
		return edit(func(b []byte) []byte { return append(append(b[:at:at], ins...), good[at+drop:]...) })
	}
	return []Malformed{
		{"truncated in the last row", good[:len(good)-5], 3},
		{"trailing bytes after the last row", append(bytes.Clone(good), 0), 3},
		{"non-zero flags", edit(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 1); return b }), 3},
		{"unknown column kind", edit(func(b []byte) []byte { b[kind] = 0x3f; return b }), 3},
		{"presence byte 2", edit(func(b []byte) []byte { b[presence] = 2; return b }), 3},
		{"string length past the end", splice(eventLen, 1, 0xff, 0xff, 0xff, 0x7f), 3},
		{"varint longer than 10 bytes", splice(eventLen, 1, bytes.Repeat([]byte{0xff}, 11)...), 3},
		{"count that cannot fit", edit(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[4:], 100000); return b }), 100000},
		{"no columns", edit(func(b []byte) []byte { return append(b[:12:12], 0) }), 3},
	}
}

// importedNames lists the sluice_v1 functions a module imports, read from its import section.
func importedNames(wasm []byte) (map[string]bool, error) {
	errBad := errors.New("malformed module")
	if len(wasm) < 8 {
		return nil, errBad
	}
	p := wasm[8:]
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	name := func() (string, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(p)) {
			return "", false
		}
		s := string(p[:n])
		p = p[n:]
		return s, true
	}
	limits := func() bool {
		if len(p) == 0 {
			return false
		}
		flags := p[0]
		p = p[1:]
		if _, ok := uv(); !ok {
			return false
		}
		if flags&1 != 0 {
			_, ok := uv()
			return ok
		}
		return true
	}
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		size, ok := uv()
		if !ok || size > uint64(len(p)) {
			return nil, errBad
		}
		if id != 2 {
			p = p[size:]
			continue
		}
		p = p[:size]
		count, ok := uv()
		if !ok {
			return nil, errBad
		}
		out := map[string]bool{}
		for range count {
			mod, ok1 := name()
			field, ok2 := name()
			if !ok1 || !ok2 || len(p) == 0 {
				return nil, errBad
			}
			kind := p[0]
			p = p[1:]
			switch kind {
			case 0: // function: type index
				ok = func() bool { _, ok := uv(); return ok }()
			case 1: // table: reftype, limits
				ok = len(p) > 0
				if ok {
					p = p[1:]
					ok = limits()
				}
			case 2: // memory
				ok = limits()
			case 3: // global: valtype, mutability
				ok = len(p) >= 2
				if ok {
					p = p[2:]
				}
			default:
				ok = false
			}
			if !ok {
				return nil, errBad
			}
			if mod == abi.ImportModule && kind == 0 {
				out[field] = true
			}
		}
		return out, nil
	}
	return map[string]bool{}, nil
}

// malformedSteps sends each malformed batch, after a valid one, to a fresh run of a plugin
// that reads records (itself, with batch_read, or through host encoders) and expects a
// clean error from sluice_write_batch: not a trap, not success. Then, unlike the host, it
// calls sluice_finish on that run: a plugin that reports success there would commit a run
// with a batch missing, so it fails too, as does one that commits an object in that run.
func (r *runner) malformedSteps(ctx context.Context, p *runtime.Plugin, wasm []byte, req func(int) abi.OpenRequest, b runtime.Bindings) {
	const refused, noFinish = "malformed batches refused", "finish refused after a failed write"
	imports, err := importedNames(wasm)
	if err != nil {
		r.step(refused, func() (string, error) { return "", err })
		return
	}
	if !imports[abi.ImportBatchRead] && !imports[abi.ImportEncoderWrite] && !imports[abi.ImportEncoderWriteRange] {
		why := "not checked: the plugin never reads records (it imports neither batch_read nor encoder_write)"
		r.skip(refused, why)
		r.skip(noFinish, why)
		return
	}
	var bad, finished []string
	checked := 0
	for i, m := range MalformedBatches() {
		func() {
			s, err := p.Open(ctx, req(i), b)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: open: %v", m.Name, err))
				return
			}
			defer s.Close(ctx)
			if err := s.WriteBatch(ctx, Batch(Events(5, 300, 100+i)), 5); err != nil {
				bad = append(bad, fmt.Sprintf("%s: the valid batch before it failed: %v", m.Name, err))
				return
			}
			n0 := r.store.NumCommits()
			err = s.WriteBatch(ctx, m.Batch, m.Records)
			var pe *runtime.PluginError
			var te *runtime.TrapError
			switch {
			case err == nil:
				bad = append(bad, m.Name+": accepted")
				return
			case errors.As(err, &te):
				bad = append(bad, fmt.Sprintf("%s: trapped (%v); return an error instead", m.Name, err))
				return
			case !errors.As(err, &pe):
				bad = append(bad, fmt.Sprintf("%s: %v", m.Name, err))
				return
			}
			checked++
			if res, err := s.Finish(ctx); err == nil {
				finished = append(finished, fmt.Sprintf("%s: sluice_finish reported success (records %d)", m.Name, res.Records))
			}
			if err := s.Close(ctx); err != nil {
				bad = append(bad, fmt.Sprintf("%s: close: %v", m.Name, err))
			}
			for _, c := range r.store.Commits(n0) {
				finished = append(finished, fmt.Sprintf("%s: committed %s after the failed write", m.Name, c.Key))
			}
		}()
	}
	n := len(MalformedBatches())
	r.step(refused, func() (string, error) {
		if len(bad) > 0 {
			return "", fmt.Errorf("%d of %d not refused with an error: %s", len(bad), n, strings.Join(bad, "; "))
		}
		return fmt.Sprintf("%d malformed batches, each an error", n), nil
	})
	if checked == 0 {
		r.skip(noFinish, "not checked: no write failed cleanly")
		return
	}
	r.step(noFinish, func() (string, error) {
		if len(finished) > 0 {
			return "", fmt.Errorf("%s (the plugin must remember that its write failed and fail sluice_finish: a run missing a batch must not succeed)", strings.Join(finished, "; "))
		}
		return fmt.Sprintf("%d runs: sluice_finish failed after the failed write, nothing committed", checked), nil
	})
}
