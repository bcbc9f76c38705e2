// Package sdktest runs a plugin's registered Destination natively, without a WebAssembly
// host: it installs an in-memory host (uploads kept in a map, log lines and metrics
// recorded, a JSON Lines encoder) and calls the same export code the wasm build runs. Use it
// in the plugin's own tests:
//
//	h := sdktest.New()
//	if err := h.Open(req); err != nil { ... }
//	h.WriteBatch(batchBytes)
//	res, err := h.Finish()
//	h.Close()
//	h.Objects["2026-11-28T12:00:00+00:00-..."] // committed bytes
//
// Only one Host is active at a time (the SDK's host is process-wide); tests using it must not
// run in parallel.
package sdktest

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/abi"
	_ "github.com/sluicehq/sluice/sdk" // installs the export code
	"github.com/sluicehq/sluice/sdk/internal/guest"
)

// Host is an in-memory host. Exported fields may be inspected and changed by tests.
type Host struct {
	Objects map[string][]byte // committed uploads, by key
	Logs    []string          // "LEVEL message" lines
	Metrics map[string]int64
	// LogLevel is the lowest level log_enabled accepts (default DEBUG).
	LogLevel int32
	// Fail, if set, is consulted by every import: a non-OK status (and the Error document
	// left in the response buffer) makes the import fail, to test error paths.
	Fail func(op string) (abi.Status, abi.Error)
	// Calls answers `call`: given the capability and request document, a response document.
	Calls func(capability string, req []byte) (abi.Status, []byte)

	columns  []abi.Column
	response []byte
	batch    []byte
	batchH   uint32
	next     uint32
	uploads  map[uint32]*upload
	encoders map[uint32]*encoder
}

type upload struct {
	spec abi.UploadSpec
	buf  []byte
	enc  uint32
}

type encoder struct {
	up   uint32
	spec abi.EncoderSpec
}

// ExportError is an export's {"error": ...} result.
type ExportError struct{ Err abi.Error }

func (e *ExportError) Error() string {
	s := e.Err.Message
	if e.Err.Status != "" {
		s += " [status " + e.Err.Status + "]"
	}
	if e.Err.Field != "" {
		s += " [field " + e.Err.Field + "]"
	}
	if e.Err.Code != "" {
		s += " [code " + e.Err.Code + "]"
	}
	return s
}

// New installs and returns a fresh host.
func New() *Host {
	h := &Host{Objects: map[string][]byte{}, Metrics: map[string]int64{}, LogLevel: abi.LevelDebug,
		uploads: map[uint32]*upload{}, encoders: map[uint32]*encoder{}, next: 1}
	guest.Current = h
	return h
}

// decode turns an export's output into v, or an *ExportError.
func decode(doc []byte, v any) error {
	if len(doc) == 0 {
		return nil
	}
	var env struct {
		Error *abi.Error `json:"error"`
	}
	if err := json.Unmarshal(doc, &env); err != nil {
		return fmt.Errorf("sdktest: export returned invalid JSON %q: %w", doc, err)
	}
	if env.Error != nil {
		return &ExportError{Err: *env.Error}
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(doc, v)
}

// Describe calls sluice_describe.
func (h *Host) Describe() (abi.Manifest, error) {
	var m abi.Manifest
	err := decode(guest.Dispatch.Describe(), &m)
	return m, err
}

// Validate calls sluice_validate.
func (h *Host) Validate(config map[string]any, secretsSet ...string) error {
	if secretsSet == nil {
		secretsSet = []string{}
	}
	in, _ := json.Marshal(abi.ValidateRequest{Config: config, SecretsSet: secretsSet})
	return decode(guest.Dispatch.Validate(in), nil)
}

// Open calls sluice_open. Empty Columns default to abi.EventColumns.
func (h *Host) Open(req abi.OpenRequest) error {
	if len(req.Columns) == 0 {
		req.Columns = abi.EventColumns
	}
	h.columns = req.Columns
	in, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return decode(guest.Dispatch.Open(in), nil)
}

// WriteBatch calls sluice_write_batch with an SLB1 batch (abi.BatchWriter builds one).
func (h *Host) WriteBatch(batch []byte) error {
	r, err := abi.NewBatchReader(batch)
	if err != nil {
		return err
	}
	h.batch = batch
	h.batchH++
	defer func() { h.batch = nil }()
	return decode(guest.Dispatch.WriteBatch(h.batchH, uint32(r.Records())), nil)
}

// Finish calls sluice_finish.
func (h *Host) Finish() (abi.Result, error) {
	var res abi.Result
	err := decode(guest.Dispatch.Finish(), &res)
	return res, err
}

// Classify calls sluice_classify.
func (h *Host) Classify(e abi.Error, attempt int) (abi.Classification, error) {
	in, _ := json.Marshal(abi.ClassifyRequest{Error: e, Attempt: attempt})
	var c abi.Classification
	err := decode(guest.Dispatch.Classify(in), &c)
	return c, err
}

// Test calls sluice_test.
func (h *Host) Test(req abi.OpenRequest) (abi.TestReport, error) {
	if len(req.Columns) == 0 {
		req.Columns = abi.EventColumns
	}
	in, _ := json.Marshal(req)
	var rep abi.TestReport
	err := decode(guest.Dispatch.Test(in), &rep)
	return rep, err
}

// Close calls sluice_close. Uploads left open are aborted, as the real host does.
func (h *Host) Close() error {
	err := decode(guest.Dispatch.Close(), nil)
	clear(h.uploads)
	clear(h.encoders)
	return err
}

// ---- guest.Host ---------------------------------------------------------------------------

func (h *Host) fail(op string) (abi.Status, bool) {
	if h.Fail == nil {
		return abi.StatusOK, false
	}
	st, e := h.Fail(op)
	if st == abi.StatusOK {
		return st, false
	}
	if e.Status == "" {
		e.Status = st.String()
	}
	h.response, _ = json.Marshal(e)
	return st, true
}

func (h *Host) errDoc(st abi.Status, msg string) (abi.Status, uint32) {
	h.response, _ = json.Marshal(abi.Error{Message: msg, Status: st.String()})
	return st, uint32(len(h.response))
}

func levelName(l int32) string {
	switch {
	case l >= abi.LevelError:
		return "ERROR"
	case l >= abi.LevelWarn:
		return "WARN"
	case l >= abi.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

func (h *Host) Log(level int32, msg []byte) {
	h.Logs = append(h.Logs, levelName(level)+" "+string(msg))
}

func (h *Host) LogEnabled(level int32) bool { return level >= h.LogLevel }

func (h *Host) Metric(name []byte, value int64) abi.Status {
	if st, failed := h.fail("metric"); failed {
		return st
	}
	h.Metrics[string(name)] += value
	return abi.StatusOK
}

func (h *Host) ResponseRead(buf []byte) (abi.Status, uint32) {
	if h.response == nil {
		return abi.StatusNotFound, 0
	}
	if len(buf) < len(h.response) {
		return abi.StatusBufferTooSmall, uint32(len(h.response))
	}
	return abi.StatusOK, uint32(copy(buf, h.response))
}

func (h *Host) BatchRead(batch uint32, buf []byte) (abi.Status, uint32) {
	if h.batch == nil || batch != h.batchH {
		return h.errDoc(abi.StatusNotFound, "stale batch handle")
	}
	if len(buf) < len(h.batch) {
		return abi.StatusBufferTooSmall, uint32(len(h.batch))
	}
	return abi.StatusOK, uint32(copy(buf, h.batch))
}

func (h *Host) UploadOpen(spec []byte) (abi.Status, uint32) {
	if st, failed := h.fail("upload_open"); failed {
		return st, uint32(len(h.response))
	}
	var s abi.UploadSpec
	if err := json.Unmarshal(spec, &s); err != nil || s.Key == "" || s.Key[0] == '/' {
		return h.errDoc(abi.StatusBadArgument, "invalid upload spec or key")
	}
	if len(h.uploads) >= 16 {
		return h.errDoc(abi.StatusLimitExceeded, "16 uploads open")
	}
	id := h.next
	h.next++
	h.uploads[id] = &upload{spec: s}
	return abi.StatusOK, id
}

func (h *Host) UploadWrite(id uint32, p []byte) abi.Status {
	u, ok := h.uploads[id]
	if !ok {
		st, _ := h.errDoc(abi.StatusNotFound, "no such upload")
		return st
	}
	if st, failed := h.fail("upload_write"); failed {
		return st
	}
	u.buf = append(u.buf, p...)
	return abi.StatusOK
}

func (h *Host) UploadBytes(id uint32) (abi.Status, uint64) {
	u, ok := h.uploads[id]
	if !ok {
		st, _ := h.errDoc(abi.StatusNotFound, "no such upload")
		return st, 0
	}
	return abi.StatusOK, uint64(len(u.buf))
}

func (h *Host) UploadCommit(id uint32) (abi.Status, uint32) {
	u, ok := h.uploads[id]
	if !ok {
		return h.errDoc(abi.StatusNotFound, "no such upload")
	}
	delete(h.uploads, id)
	delete(h.encoders, u.enc)
	if st, failed := h.fail("upload_commit"); failed {
		return st, uint32(len(h.response))
	}
	h.Objects[u.spec.Key] = u.buf
	h.response, _ = json.Marshal(abi.CommitInfo{Key: u.spec.Key, Bytes: int64(len(u.buf)), ETag: "sdktest"})
	return abi.StatusOK, uint32(len(h.response))
}

func (h *Host) UploadAbort(id uint32) abi.Status {
	u, ok := h.uploads[id]
	if !ok {
		st, _ := h.errDoc(abi.StatusNotFound, "no such upload")
		return st
	}
	delete(h.uploads, id)
	delete(h.encoders, u.enc)
	return abi.StatusOK
}

func (h *Host) EncoderOpen(up uint32, spec []byte) (abi.Status, uint32) {
	u, ok := h.uploads[up]
	if !ok {
		return h.errDoc(abi.StatusNotFound, "no such upload")
	}
	var s abi.EncoderSpec
	if err := json.Unmarshal(spec, &s); err != nil {
		return h.errDoc(abi.StatusBadArgument, err.Error())
	}
	if s.Format != "jsonl" || s.Compression != "" {
		return h.errDoc(abi.StatusUnimplemented, "sdktest encodes jsonl without compression only")
	}
	for _, c := range s.Columns {
		found := false
		for _, rc := range h.columns {
			found = found || rc.Name == c.Name
		}
		if !found {
			return h.errDoc(abi.StatusBadArgument, "unknown column "+c.Name)
		}
	}
	if w := s.Where; w != nil {
		i := slices.IndexFunc(h.columns, func(c abi.Column) bool { return c.Name == w.Column })
		if i < 0 || h.columns[i].Kind != abi.KindString {
			return h.errDoc(abi.StatusBadArgument, "where: no string column "+w.Column)
		}
	}
	id := h.next
	h.next++
	h.encoders[id] = &encoder{up: up, spec: s}
	u.enc = id
	return abi.StatusOK, id
}

var _ guest.RangeWriter = (*Host)(nil)

// EncoderWriteRange implements the ABI 1.1 import encoder_write_range (guest.RangeWriter):
// rows [start, start+count) of the current batch, encoded like EncoderWrite.
func (h *Host) EncoderWriteRange(id, batch, start, count uint32) abi.Status {
	if _, ok := h.encoders[id]; !ok || h.batch == nil || batch != h.batchH {
		st, _ := h.errDoc(abi.StatusNotFound, "no such encoder or batch")
		return st
	}
	offs, err := abi.RowOffsets(h.batch)
	if err == nil {
		var sub []byte
		if sub, err = abi.SliceBatch(h.batch, offs, int(start), int(count)); err == nil {
			whole := h.batch
			h.batch = sub
			st := h.EncoderWrite(id, batch)
			h.batch = whole
			return st
		}
	}
	st, _ := h.errDoc(abi.StatusBadArgument, err.Error())
	return st
}

func (h *Host) EncoderWrite(id, batch uint32) abi.Status {
	e, ok := h.encoders[id]
	if !ok || h.batch == nil || batch != h.batchH {
		st, _ := h.errDoc(abi.StatusNotFound, "no such encoder or batch")
		return st
	}
	if st, failed := h.fail("encoder_write"); failed {
		return st
	}
	u := h.uploads[e.up]
	out, err := encodeJSONL(u.buf, h.batch, e.spec.Columns, e.spec.Where)
	if err != nil {
		st, _ := h.errDoc(abi.StatusBadArgument, err.Error())
		return st
	}
	u.buf = out
	return abi.StatusOK
}

func (h *Host) EncoderClose(id uint32) abi.Status {
	e, ok := h.encoders[id]
	if !ok {
		st, _ := h.errDoc(abi.StatusNotFound, "no such encoder")
		return st
	}
	delete(h.encoders, id)
	if u := h.uploads[e.up]; u != nil {
		u.enc = 0
	}
	return abi.StatusOK
}

func (h *Host) Call(capability, req []byte) (abi.Status, uint32) {
	if st, failed := h.fail("call"); failed {
		return st, uint32(len(h.response))
	}
	if h.Calls == nil {
		return h.errDoc(abi.StatusUnimplemented, "no capability "+string(capability))
	}
	st, doc := h.Calls(string(capability), req)
	h.response = doc
	return st, uint32(len(doc))
}

// EncodeJSONL appends the rows of an SLB1 batch to dst as JSON Lines, with the columns
// selected and renamed by sel (empty: all). Timestamps are RFC 3339 strings in UTC with
// microseconds, UUIDs canonical text, JSON columns inlined, bytes that are not valid text
// base64. It approximates the host's jsonl encoder for tests.
func EncodeJSONL(dst, batch []byte, sel []abi.ColumnSelect) ([]byte, error) {
	return encodeJSONL(dst, batch, sel, nil)
}

// encodeJSONL is EncodeJSONL keeping only the rows where selects (nil: all).
func encodeJSONL(dst, batch []byte, sel []abi.ColumnSelect, where *abi.RowFilter) ([]byte, error) {
	r, err := abi.NewBatchReader(batch)
	if err != nil {
		return dst, err
	}
	cols := r.Columns()
	type out struct {
		i    int
		name string
	}
	var outs []out
	if len(sel) == 0 {
		for i, c := range cols {
			outs = append(outs, out{i, c.Name})
		}
	}
	for _, s := range sel {
		for i, c := range cols {
			if c.Name == s.Name {
				name := s.As
				if name == "" {
					name = s.Name
				}
				outs = append(outs, out{i, name})
			}
		}
	}
	vals := make([]abi.Value, len(cols))
	for {
		if err := r.Next(vals); err == io.EOF {
			return dst, nil
		} else if err != nil {
			return dst, err
		}
		if where != nil && !rowMatches(cols, vals, where) {
			continue
		}
		for j, o := range outs {
			if j == 0 {
				dst = append(dst, '{')
			} else {
				dst = append(dst, ',')
			}
			dst = strconv.AppendQuote(dst, o.name)
			dst = append(dst, ':')
			v := vals[o.i]
			if v.Null {
				dst = append(dst, "null"...)
				continue
			}
			switch cols[o.i].Kind {
			case abi.KindString:
				s, _ := json.Marshal(string(v.Bytes))
				dst = append(dst, s...)
			case abi.KindJSON:
				dst = append(dst, v.Bytes...)
			case abi.KindInt64:
				dst = strconv.AppendInt(dst, v.Int, 10)
			case abi.KindTimestamp:
				dst = strconv.AppendQuote(dst, v.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case abi.KindUUID:
				dst = strconv.AppendQuote(dst, UUIDString(v.Bytes))
			case abi.KindFloat64:
				if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
					dst = append(dst, "null"...)
				} else {
					dst = strconv.AppendFloat(dst, v.Float, 'g', -1, 64)
				}
			case abi.KindBool:
				dst = strconv.AppendBool(dst, v.Int != 0)
			default:
				dst = strconv.AppendQuote(dst, base64.StdEncoding.EncodeToString(v.Bytes))
			}
		}
		if len(outs) == 0 {
			dst = append(dst, '{', '}')
		} else {
			dst = append(dst, '}')
		}
		dst = append(dst, '\n')
	}
}

// ErrorField is the config field an export error names (ExportError.Err.Field), the
// message of any other error, and "" for nil: a table test compares it with the field it
// expects at fault.
func ErrorField(err error) string {
	var ee *ExportError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ee):
		return ee.Err.Field
	}
	return err.Error()
}

// rowMatches reports whether a row's where column holds the wanted string.
func rowMatches(cols []abi.Column, vals []abi.Value, where *abi.RowFilter) bool {
	for i, c := range cols {
		if c.Name == where.Column {
			return !vals[i].Null && string(vals[i].Bytes) == where.Equals
		}
	}
	return false
}

// UUIDString formats 16 bytes as canonical UUID text.
func UUIDString(b []byte) string {
	if len(b) != 16 {
		return hex.EncodeToString(b)
	}
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// Events builds an SLB1 batch of events in the standard schema.
func Events(evs ...abi.Event) []byte {
	w := abi.NewBatchWriter(abi.EventColumns, nil)
	for i := range evs {
		w.AppendEvent(&evs[i])
		w.EndRow()
	}
	return w.Bytes()
}

// Interval is a helper building an OpenRequest for the hour starting at start.
func Interval(start time.Time, config map[string]any) abi.OpenRequest {
	return abi.OpenRequest{RunID: "run-1", ExportID: "export-1", ExportName: "test",
		IntervalStart: start.UTC(), IntervalEnd: start.UTC().Add(time.Hour), Attempt: 1,
		Config: config, Columns: abi.EventColumns}
}
