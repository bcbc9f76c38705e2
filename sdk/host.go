package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk/internal/guest"
)

// ---- response buffer -----------------------------------------------------------------

// readResponse copies the host's response buffer. n is the length the host announced
// (0 when the import returns a bare status: the SDK then guesses and retries on
// buffer_too_small).
func readResponse(n uint32) ([]byte, abi.Status) {
	size := int(n)
	if size == 0 {
		size = 1024
	}
	for range 3 {
		buf := make([]byte, size)
		st, got := guest.Current.ResponseRead(buf)
		switch st {
		case abi.StatusOK:
			return buf[:min(int(got), len(buf))], st
		case abi.StatusBufferTooSmall:
			size = int(got)
			continue
		default:
			return nil, st
		}
	}
	return nil, abi.StatusBufferTooSmall
}

// hostErr builds the error of a failed import, reading the Error document the host left.
func hostErr(op string, st abi.Status, n uint32) error {
	e := &HostError{Op: op, Status: st}
	if st == abi.StatusBufferTooSmall {
		return e
	}
	if doc, rst := readResponse(n); rst == abi.StatusOK && len(doc) > 0 {
		_ = json.Unmarshal(doc, &e.Err) // a malformed document leaves only the status
	}
	return e
}

// ---- log and metrics ---------------------------------------------------------------------

// LogEnabled reports whether the host keeps lines at level: a cheap check before building
// an expensive line.
func LogEnabled(level slog.Level) bool { return guest.Current.LogEnabled(int32(level)) }

// Log sends one line to the run's log if the host keeps that level. args are slog-style
// key/value pairs or slog.Attr values, appended as key=value.
func Log(level slog.Level, msg string, args ...any) {
	if !LogEnabled(level) {
		return
	}
	r := slog.NewRecord(time.Time{}, level, msg, 0)
	r.Add(args...)
	_ = hostHandler{}.Handle(context.Background(), r)
}

// Logger returns an *slog.Logger writing to the host log import.
func Logger() *slog.Logger { return slog.New(hostHandler{}) }

// Metric adds value to the run's counter name ([a-z0-9_]{1,64}, at most 32 per run).
func Metric(name string, value int64) error {
	if st := guest.Current.Metric([]byte(name), value); st != abi.StatusOK {
		return hostErr("metric", st, 0)
	}
	return nil
}

// hostHandler is a slog.Handler writing "msg key=value ..." lines to the host.
type hostHandler struct {
	prefix string // rendered attrs from WithAttrs
	group  string // dotted group prefix for keys
}

func (hostHandler) Enabled(_ context.Context, l slog.Level) bool { return LogEnabled(l) }

func (h hostHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.prefix)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	line := b.String()
	if len(line) > maxLogLine {
		line = line[:maxLogLine]
		for !utf8.ValidString(line) {
			line = line[:len(line)-1]
		}
	}
	guest.Current.Log(int32(r.Level), []byte(line))
	return nil
}

func (h hostHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range as {
		appendAttr(&b, h.group, a)
	}
	return hostHandler{prefix: b.String(), group: h.group}
}

func (h hostHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return hostHandler{prefix: h.prefix, group: h.group + name + "."}
}

// maxLogLine is SPEC section 11's log line cap; the SDK truncates on a rune boundary.
const maxLogLine = 8 << 10

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			appendAttr(b, g, ga)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(group)
	b.WriteString(a.Key)
	b.WriteByte('=')
	s := a.Value.String()
	if s == "" || strings.ContainsAny(s, " \t\r\n\"=") || !utf8.ValidString(s) {
		s = strconv.Quote(s)
	}
	b.WriteString(s)
}

// ---- batches -------------------------------------------------------------------------------

// Batch is the batch of one WriteBatch call. Its handle is valid only during that call.
type Batch struct {
	handle  uint32
	records int
	buf     []byte // bytes read by batch_read, kept for the next batch's storage
	n       int    // valid bytes in buf; -1 until read
	reader  abi.BatchReader
	vals    []abi.Value
	ev      abi.Event
	cols    []abi.Column
}

// Handle is the host handle of the batch, for Encoder.WriteBatch.
func (b *Batch) Handle() uint32 { return b.handle }

// Records is the number of records in the batch.
func (b *Batch) Records() int { return b.records }

// Bytes copies the batch's SLB1 bytes into guest memory (batch_read). The slice is reused
// by the next batch: copy what must outlive the WriteBatch call.
func (b *Batch) Bytes() ([]byte, error) {
	if b.n >= 0 {
		return b.buf[:b.n], nil
	}
	if cap(b.buf) == 0 {
		b.buf = make([]byte, 64<<10)
	}
	b.buf = b.buf[:cap(b.buf)]
	for range 3 {
		st, n := guest.Current.BatchRead(b.handle, b.buf)
		switch st {
		case abi.StatusOK:
			b.n = int(n)
			return b.buf[:b.n], nil
		case abi.StatusBufferTooSmall:
			b.buf = make([]byte, n)
		default:
			return nil, hostErr("batch_read", st, n)
		}
	}
	return nil, &HostError{Op: "batch_read", Status: abi.StatusBufferTooSmall}
}

// Rows decodes the batch and calls fn with the values of each row, in column order (see
// Columns). Values alias the batch bytes: copy what must outlive the call to fn.
func (b *Batch) Rows(fn func(vals []abi.Value) error) error {
	raw, err := b.Bytes()
	if err != nil {
		return err
	}
	if err := b.reader.Reset(raw); err != nil {
		return err
	}
	b.cols = b.reader.Columns()
	if cap(b.vals) < len(b.cols) {
		b.vals = make([]abi.Value, len(b.cols))
	}
	vals := b.vals[:len(b.cols)]
	for {
		err := b.reader.Next(vals)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(vals); err != nil {
			return err
		}
	}
}

// Columns is the batch schema, known after Rows or Events has started.
func (b *Batch) Columns() []abi.Column { return b.cols }

// Events decodes a batch in the event schema (abi.EventColumns first) and calls fn with each
// event. The *abi.Event is reused between calls; its strings are copies.
func (b *Batch) Events(fn func(e *abi.Event) error) error {
	first := true
	return b.Rows(func(vals []abi.Value) error {
		if first {
			if !abi.HasEventColumns(b.cols) {
				return errors.New("sdk: Batch.Events: the batch is not in the event schema")
			}
			first = false
		}
		abi.ReadEvent(vals, &b.ev)
		return fn(&b.ev)
	})
}

// ---- uploads and encoders ----------------------------------------------------------------

// Upload is one object being written into the export's bound sink. Exactly one of Commit or
// Abort ends it; Abort after Commit is a no-op. The SDK aborts uploads still open when the
// run is closed.
type Upload struct {
	handle uint32
	key    string
	done   bool
	err    error
	enc    *Encoder
}

// OpenUpload starts an upload (upload_open). spec.Key is relative to the bound prefix.
func OpenUpload(spec abi.UploadSpec) (*Upload, error) {
	doc, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	st, h := guest.Current.UploadOpen(doc)
	if st != abi.StatusOK {
		return nil, hostErr("upload_open", st, h)
	}
	u := &Upload{handle: h, key: spec.Key}
	run.uploads = append(run.uploads, u)
	return u, nil
}

// Key is the key given to OpenUpload.
func (u *Upload) Key() string { return u.key }

// Write appends raw bytes (upload_write).
func (u *Upload) Write(p []byte) (int, error) {
	if u.done {
		return 0, errUploadDone
	}
	if st := guest.Current.UploadWrite(u.handle, p); st != abi.StatusOK {
		u.err = hostErr("upload_write", st, 0)
		return 0, u.err
	}
	return len(p), nil
}

var errUploadDone = errors.New("sdk: upload already committed or aborted")

// Bytes is the number of bytes the upload received so far, after encoding and compression
// (upload_bytes). It returns -1 if the host call failed; the failure is then returned by
// Commit.
func (u *Upload) Bytes() int64 {
	if u.done {
		return -1
	}
	st, n := guest.Current.UploadBytes(u.handle)
	if st != abi.StatusOK {
		u.err = hostErr("upload_bytes", st, 0)
		return -1
	}
	return int64(n)
}

// Commit completes the upload (closing any open encoder first) and returns what the host
// stored. The upload is ended whether it succeeds or not.
func (u *Upload) Commit() (abi.CommitInfo, error) {
	var ci abi.CommitInfo
	if u.done {
		return ci, errUploadDone
	}
	if u.err != nil {
		u.Abort()
		return ci, u.err
	}
	u.done = true
	if u.enc != nil {
		u.enc.closed = true
	}
	st, n := guest.Current.UploadCommit(u.handle)
	if st != abi.StatusOK {
		return ci, hostErr("upload_commit", st, n)
	}
	if n == 0 {
		return abi.CommitInfo{Key: u.key}, nil
	}
	doc, rst := readResponse(n)
	if rst != abi.StatusOK {
		return ci, &HostError{Op: "response_read", Status: rst}
	}
	if err := json.Unmarshal(doc, &ci); err != nil {
		return ci, fmt.Errorf("sdk: upload_commit: bad CommitInfo: %w", err)
	}
	return ci, nil
}

// Abort removes every trace of the upload. It is a no-op after Commit or Abort.
func (u *Upload) Abort() error {
	if u.done {
		return nil
	}
	u.done = true
	if st := guest.Current.UploadAbort(u.handle); st != abi.StatusOK && st != abi.StatusNotFound {
		return hostErr("upload_abort", st, 0)
	}
	return nil
}

// Encoder is a host-native streaming encoder writing into an upload: the route with no
// per-record work in the guest.
type Encoder struct {
	handle uint32
	closed bool
}

// Encoder opens a host encoder on the upload (encoder_open): spec.Format jsonl, parquet or
// csv, spec.Compression, and spec.Columns to select and rename the run's columns. One
// encoder per upload at a time.
func (u *Upload) Encoder(spec abi.EncoderSpec) (*Encoder, error) {
	if u.done {
		return nil, errUploadDone
	}
	doc, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	st, h := guest.Current.EncoderOpen(u.handle, doc)
	if st != abi.StatusOK {
		return nil, hostErr("encoder_open", st, h)
	}
	u.enc = &Encoder{handle: h}
	return u.enc, nil
}

// WriteBatch encodes the whole batch on the host (encoder_write with the batch handle).
func (e *Encoder) WriteBatch(b *Batch) error {
	if st := guest.Current.EncoderWrite(e.handle, b.handle); st != abi.StatusOK {
		return hostErr("encoder_write", st, 0)
	}
	return nil
}

// Close writes the format's footer and flushes the compressor; the upload stays open.
// Upload.Commit closes an open encoder itself.
func (e *Encoder) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	if st := guest.Current.EncoderClose(e.handle); st != abi.StatusOK {
		return hostErr("encoder_close", st, 0)
	}
	return nil
}

// ---- warehouse calls -----------------------------------------------------------------------

// Call runs one operation on a warehouse capability (`bigquery`, `snowflake`; see
// docs/capabilities.md): req is marshalled to JSON ({"op": ..., ...}) and the answer, if
// resp is not nil, unmarshalled into resp.
func Call(capability string, req any, resp any) error {
	doc, err := json.Marshal(req)
	if err != nil {
		return err
	}
	st, n := guest.Current.Call([]byte(capability), doc)
	if st != abi.StatusOK {
		return hostErr("call", st, n)
	}
	if resp == nil || n == 0 {
		return nil
	}
	out, rst := readResponse(n)
	if rst != abi.StatusOK {
		return &HostError{Op: "response_read", Status: rst}
	}
	return json.Unmarshal(out, resp)
}
