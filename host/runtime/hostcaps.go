package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"

	"github.com/sluicehq/sluice/abi"
)

// Return helpers: i64 imports return status<<32|value, i32 imports the status alone.
func ret64(stack []uint64, st abi.Status, v uint32) { stack[0] = packed(st, v) }
func ret32(stack []uint64, st abi.Status, _ uint32) { stack[0] = api.EncodeU32(uint32(st)) }

// r64 and r32 take a (status, value) pair straight from in.fail and friends (error paths).
func r64(stack []uint64) func(abi.Status, uint32) {
	return func(st abi.Status, v uint32) { ret64(stack, st, v) }
}
func r32(stack []uint64) func(abi.Status, uint32) {
	return func(st abi.Status, v uint32) { ret32(stack, st, v) }
}

func hLogEnabled(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil || slog.Level(int32(stack[0])) < in.run.b.LogLevel {
		stack[0] = 0
		return
	}
	stack[0] = 1
}

func hMetric(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret32(stack, abi.StatusInternal, 0)
		return
	}
	name, ok := in.read(uint32(stack[0]), uint32(stack[1]))
	if !ok {
		r32(stack)(in.fail(abi.StatusBadArgument, "", "metric: name pointer out of range"))
		return
	}
	if !metricRE.Match(name) {
		r32(stack)(in.fail(abi.StatusBadArgument, "", "metric: name %q is invalid (want [a-z0-9_]{1,64})", truncate(string(name), 80)))
		return
	}
	n := string(name)
	if !in.run.metrics[n] {
		if len(in.run.metrics) >= MaxMetricNames {
			r32(stack)(in.fail(abi.StatusLimitExceeded, "", "metric: at most %d metric names per run", MaxMetricNames))
			return
		}
		if in.run.metrics == nil {
			in.run.metrics = map[string]bool{}
		}
		in.run.metrics[n] = true
	}
	if in.run.b.Metric != nil {
		in.run.b.Metric(n, int64(stack[2]))
	}
	// The host-wide sink, once the plugin's name is its manifest's (not during the install's
	// own sluice_describe, where it is still a placeholder).
	if sink := in.p.rt.metricSink(); sink != nil && in.p.granted != nil {
		sink.PluginMetric(in.p.Manifest.Name, n, int64(stack[2]))
	}
	ret32(stack, abi.StatusOK, 0)
}

func hResponseRead(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret64(stack, abi.StatusInternal, 0)
		return
	}
	ptr, capacity := uint32(stack[0]), uint32(stack[1])
	if !in.hasResp {
		ret64(stack, abi.StatusNotFound, 0)
		return
	}
	n := uint32(len(in.resp))
	if capacity < n {
		ret64(stack, abi.StatusBufferTooSmall, n)
		return
	}
	if !in.mem.Write(ptr, in.resp) {
		// The document is kept (not replaced by an error) so the guest can retry.
		ret64(stack, abi.StatusBadArgument, 0)
		return
	}
	ret64(stack, abi.StatusOK, n)
}

func hBatchRead(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret64(stack, abi.StatusInternal, 0)
		return
	}
	h, ptr, capacity := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
	if !in.batchLive || h != in.batchID {
		r64(stack)(in.fail(abi.StatusNotFound, "", "batch_read: batch handle %d is not the current batch (valid only during sluice_write_batch)", h))
		return
	}
	n := uint32(len(in.batch))
	if capacity < n {
		ret64(stack, abi.StatusBufferTooSmall, n)
		return
	}
	if !in.mem.Write(ptr, in.batch) {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "batch_read: buffer %#x+%d outside memory (%d bytes)", ptr, n, in.mem.Size()))
		return
	}
	ret64(stack, abi.StatusOK, n)
}

// validKey applies SPEC 6 upload_open key rules.
func validKey(key string) string {
	switch {
	case key == "":
		return "empty key"
	case len(key) > 1024:
		return "key longer than 1024 bytes"
	case !utf8.ValidString(key):
		return "key is not UTF-8"
	case strings.HasPrefix(key, "/"):
		return "absolute key"
	case strings.ContainsRune(key, '\\'):
		return "backslash in key"
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return "control character in key"
		}
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "":
			return "empty path segment"
		case ".", "..":
			return "dot segment " + seg
		}
	}
	return ""
}

func hUploadOpen(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret64(stack, abi.StatusInternal, 0)
		return
	}
	if st, n, ok := in.allowRun(abi.ImportUploadOpen); !ok {
		ret64(stack, st, n)
		return
	}
	raw, ok := in.read(uint32(stack[0]), uint32(stack[1]))
	if !ok {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "upload_open: spec pointer out of range"))
		return
	}
	var spec abi.UploadSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "upload_open: invalid UploadSpec JSON: %v", err))
		return
	}
	if spec.Sink == "" {
		spec.Sink = "object"
	}
	capName, known := sinkCaps[spec.Sink]
	if !known {
		r64(stack)(in.fail(abi.StatusUnimplemented, "", "upload_open: unknown sink %q", spec.Sink))
		return
	}
	if !in.p.granted[capName] {
		r64(stack)(in.deny(abi.ImportUploadOpen, fmt.Sprintf("capability %q was not granted to the plugin", capName)))
		return
	}
	store := in.run.b.Objects
	if spec.Sink != "object" {
		store = in.run.b.Sinks[spec.Sink]
	}
	if store == nil {
		r64(stack)(in.deny(abi.ImportUploadOpen, fmt.Sprintf("sink %q is not bound for this call", spec.Sink)))
		return
	}
	if spec.Sink == abi.SinkHTTPBody && spec.Key == "" {
		spec.Key = "body" // an http body's key is only a label for logs
	}
	if why := validKey(spec.Key); why != "" {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "upload_open: invalid key %q: %s", truncate(spec.Key, 100), why))
		return
	}
	if len(in.run.uploads) >= MaxOpenHandles {
		r64(stack)(in.fail(abi.StatusLimitExceeded, "", "upload_open: at most %d uploads may be open at once", MaxOpenHandles))
		return
	}
	u, err := store.Create(in.callCtx, spec.Key, ObjectOptions{ContentType: spec.ContentType,
		ContentEncoding: spec.ContentEncoding, Metadata: spec.Metadata, Options: spec.Options})
	if err != nil {
		r64(stack)(in.failErr("upload_open "+spec.Key, err, abi.StatusRetryableIO))
		return
	}
	if in.run.uploads == nil {
		in.run.uploads = map[uint32]*uploadH{}
	}
	in.run.next++
	in.run.uploads[in.run.next] = &uploadH{u: u, key: spec.Key}
	ret64(stack, abi.StatusOK, in.run.next)
}

func (in *instance) upload(imp string, h uint32) (*uploadH, abi.Status, uint32) {
	u := in.run.uploads[h]
	if u == nil {
		st, n := in.fail(abi.StatusNotFound, "", "%s: no open upload with handle %d", imp, h)
		return nil, st, n
	}
	return u, abi.StatusOK, 0
}

func hUploadWrite(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret32(stack, abi.StatusInternal, 0)
		return
	}
	if st, n, ok := in.allowRun(abi.ImportUploadWrite); !ok {
		ret32(stack, st, n)
		return
	}
	u, st, n := in.upload(abi.ImportUploadWrite, uint32(stack[0]))
	if u == nil {
		ret32(stack, st, n)
		return
	}
	data, ok := in.read(uint32(stack[1]), uint32(stack[2]))
	if !ok {
		r32(stack)(in.fail(abi.StatusBadArgument, "", "upload_write: data pointer out of range"))
		return
	}
	if u.encoder != 0 {
		r32(stack)(in.fail(abi.StatusBadArgument, "", "upload_write: an encoder is open on upload %d; close it first", uint32(stack[0])))
		return
	}
	if _, err := u.u.Write(data); err != nil {
		r32(stack)(in.failErr("upload_write "+u.key, err, abi.StatusRetryableIO))
		return
	}
	ret32(stack, abi.StatusOK, 0)
}

func hUploadBytes(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret32(stack, abi.StatusInternal, 0)
		return
	}
	if st, n, ok := in.allowRun(abi.ImportUploadBytes); !ok {
		ret32(stack, st, n)
		return
	}
	u, st, n := in.upload(abi.ImportUploadBytes, uint32(stack[0]))
	if u == nil {
		ret32(stack, st, n)
		return
	}
	if !in.mem.WriteUint64Le(uint32(stack[1]), uint64(u.u.Written())) {
		r32(stack)(in.fail(abi.StatusBadArgument, "", "upload_bytes: out pointer out of range"))
		return
	}
	ret32(stack, abi.StatusOK, 0)
}

// closeEncoder closes the encoder open on an upload, if any.
func (in *instance) closeEncoder(u *uploadH) error {
	if u.encoder == 0 {
		return nil
	}
	e := in.run.encoders[u.encoder]
	delete(in.run.encoders, u.encoder)
	u.encoder = 0
	if e == nil {
		return nil
	}
	return e.e.Close()
}

func hUploadCommit(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret64(stack, abi.StatusInternal, 0)
		return
	}
	if st, n, ok := in.allowRun(abi.ImportUploadCommit); !ok {
		ret64(stack, st, n)
		return
	}
	h := uint32(stack[0])
	u, st, n := in.upload(abi.ImportUploadCommit, h)
	if u == nil {
		ret64(stack, st, n)
		return
	}
	delete(in.run.uploads, h) // invalid afterwards, on success and on failure
	if err := in.closeEncoder(u); err != nil {
		_ = u.u.Abort(context.WithoutCancel(in.callCtx))
		r64(stack)(in.failErr("upload_commit "+u.key+": closing encoder", err, abi.StatusInternal))
		return
	}
	info, err := u.u.Commit(in.callCtx)
	if err != nil {
		_ = u.u.Abort(context.WithoutCancel(in.callCtx))
		r64(stack)(in.failErr("upload_commit "+u.key, err, abi.StatusRetryableIO))
		return
	}
	doc, _ := json.Marshal(abi.CommitInfo{Key: info.Key, Bytes: info.Bytes, ETag: info.ETag})
	r64(stack)(in.setResp(doc))
}

func hUploadAbort(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret32(stack, abi.StatusInternal, 0)
		return
	}
	if st, n, ok := in.allowRun(abi.ImportUploadAbort); !ok {
		ret32(stack, st, n)
		return
	}
	h := uint32(stack[0])
	u, st, n := in.upload(abi.ImportUploadAbort, h)
	if u == nil {
		ret32(stack, st, n)
		return
	}
	delete(in.run.uploads, h)
	_ = in.closeEncoder(u)
	if err := u.u.Abort(in.callCtx); err != nil {
		r32(stack)(in.failErr("upload_abort "+u.key, err, abi.StatusRetryableIO))
		return
	}
	ret32(stack, abi.StatusOK, 0)
}

func hEncoderOpen(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret64(stack, abi.StatusInternal, 0)
		return
	}
	if st, n, ok := in.allowRun(abi.ImportEncoderOpen); !ok {
		ret64(stack, st, n)
		return
	}
	uh := uint32(stack[0])
	u, st, n := in.upload(abi.ImportEncoderOpen, uh)
	if u == nil {
		ret64(stack, st, n)
		return
	}
	raw, ok := in.read(uint32(stack[1]), uint32(stack[2]))
	if !ok {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "encoder_open: spec pointer out of range"))
		return
	}
	var spec abi.EncoderSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "encoder_open: invalid EncoderSpec JSON: %v", err))
		return
	}
	if in.run.b.Encoders == nil {
		r64(stack)(in.fail(abi.StatusUnimplemented, "", "encoder_open: no encoders are available on this host"))
		return
	}
	if u.encoder != 0 {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "encoder_open: upload %d already has an open encoder", uh))
		return
	}
	if len(in.run.encoders) >= MaxOpenHandles {
		r64(stack)(in.fail(abi.StatusLimitExceeded, "", "encoder_open: at most %d encoders may be open at once", MaxOpenHandles))
		return
	}
	e, err := in.run.b.Encoders(u.u, spec, slices.Clone(in.run.cols))
	if err != nil {
		r64(stack)(in.failErr("encoder_open", err, abi.StatusBadArgument))
		return
	}
	if in.run.encoders == nil {
		in.run.encoders = map[uint32]*encoderH{}
	}
	in.run.next++
	in.run.encoders[in.run.next] = &encoderH{e: e, upload: uh}
	u.encoder = in.run.next
	ret64(stack, abi.StatusOK, in.run.next)
}

func hEncoderWrite(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret32(stack, abi.StatusInternal, 0)
		return
	}
	if st, n, ok := in.allowRun(abi.ImportEncoderWrite); !ok {
		ret32(stack, st, n)
		return
	}
	eh, bh := uint32(stack[0]), uint32(stack[1])
	e := in.run.encoders[eh]
	if e == nil {
		r32(stack)(in.fail(abi.StatusNotFound, "", "encoder_write: no open encoder with handle %d", eh))
		return
	}
	if !in.batchLive || bh != in.batchID {
		r32(stack)(in.fail(abi.StatusNotFound, "", "encoder_write: batch handle %d is not the current batch", bh))
		return
	}
	if _, err := e.e.WriteBatch(in.batch); err != nil {
		r32(stack)(in.failErr("encoder_write", err, abi.StatusInternal))
		return
	}
	ret32(stack, abi.StatusOK, 0)
}

func hEncoderClose(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret32(stack, abi.StatusInternal, 0)
		return
	}
	if st, n, ok := in.allowRun(abi.ImportEncoderClose); !ok {
		ret32(stack, st, n)
		return
	}
	eh := uint32(stack[0])
	e := in.run.encoders[eh]
	if e == nil {
		r32(stack)(in.fail(abi.StatusNotFound, "", "encoder_close: no open encoder with handle %d", eh))
		return
	}
	delete(in.run.encoders, eh)
	if u := in.run.uploads[e.upload]; u != nil {
		u.encoder = 0
	}
	if err := e.e.Close(); err != nil {
		r32(stack)(in.failErr("encoder_close", err, abi.StatusInternal))
		return
	}
	ret32(stack, abi.StatusOK, 0)
}

func hCall(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret64(stack, abi.StatusInternal, 0)
		return
	}
	if st, n, ok := in.allowRun(abi.ImportCall); !ok {
		ret64(stack, st, n)
		return
	}
	capB, ok1 := in.read(uint32(stack[0]), uint32(stack[1]))
	req, ok2 := in.read(uint32(stack[2]), uint32(stack[3]))
	if !ok1 || !ok2 {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "call: pointer out of range"))
		return
	}
	capName := string(capB)
	if capName == abi.CapHTTP {
		in.callHTTP(stack, req)
		return
	}
	if capName == abi.CapSQL {
		in.callSQL(stack, req)
		return
	}
	if capName == abi.CapObject {
		in.callObject(stack, req)
		return
	}
	if capName != abi.CapBigQuery && capName != abi.CapSnowflake {
		r64(stack)(in.fail(abi.StatusUnimplemented, "", "call: unknown capability %q", truncate(capName, 64)))
		return
	}
	if !in.p.granted[capName] {
		r64(stack)(in.deny(abi.ImportCall, fmt.Sprintf("capability %q was not granted to the plugin", capName)))
		return
	}
	c := in.run.b.Warehouses[capName]
	if c == nil {
		r64(stack)(in.deny(abi.ImportCall, fmt.Sprintf("capability %q is not bound for this call", capName)))
		return
	}
	if !json.Valid(req) {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "call: request is not valid JSON"))
		return
	}
	resp, err := c.Call(in.callCtx, append([]byte(nil), req...))
	if err != nil {
		r64(stack)(in.failErr("call "+capName, err, abi.StatusRetryableIO))
		return
	}
	r64(stack)(in.setResp(resp))
}

// callHTTP serves call("http", req) (ABI 1.1): the request's body_upload, if any, is
// resolved to the run's upload (its encoder closed first, as a commit would) and the
// request goes to the bound HTTPCaller. The upload stays open: the plugin may send it
// again (after a 429) and releases it with upload_abort or upload_commit.
// callObject serves call("object", {"op": "check"}): the bound store's access check
// (HeadBucket, a probe file; docs/capabilities.md), for sluice_test. A store that cannot
// check answers unimplemented, and the plugin falls back to a probe upload.
func (in *instance) callObject(stack []uint64, req []byte) {
	if !in.p.granted[abi.CapObject] {
		r64(stack)(in.deny(abi.ImportCall, fmt.Sprintf("capability %q was not granted to the plugin", abi.CapObject)))
		return
	}
	var r struct {
		Op string `json:"op"`
	}
	if err := json.Unmarshal(req, &r); err != nil || r.Op != "check" {
		r64(stack)(in.fail(abi.StatusUnimplemented, "", "call object: the only operation is {\"op\": \"check\"}"))
		return
	}
	c, ok := in.run.b.Objects.(ObjectChecker)
	if !ok {
		r64(stack)(in.fail(abi.StatusUnimplemented, "", "call object: the bound store cannot check its access"))
		return
	}
	if err := c.Check(in.callCtx); err != nil {
		r64(stack)(in.failErr("call object check", err, abi.StatusRetryableIO))
		return
	}
	r64(stack)(in.setResp([]byte("{}")))
}

func (in *instance) callHTTP(stack []uint64, req []byte) {
	if !in.p.granted[abi.CapHTTP] {
		r64(stack)(in.deny(abi.ImportCall, fmt.Sprintf("capability %q was not granted to the plugin", abi.CapHTTP)))
		return
	}
	c := in.run.b.HTTP
	if c == nil {
		r64(stack)(in.deny(abi.ImportCall, fmt.Sprintf("capability %q is not bound for this call", abi.CapHTTP)))
		return
	}
	var peek struct {
		BodyUpload uint32 `json:"body_upload"`
	}
	if err := json.Unmarshal(req, &peek); err != nil {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "call http: request is not a valid JSON object: %v", err))
		return
	}
	var body Upload
	if peek.BodyUpload != 0 {
		u, st, n := in.upload(abi.ImportCall, peek.BodyUpload)
		if u == nil {
			ret64(stack, st, n)
			return
		}
		if err := in.closeEncoder(u); err != nil {
			r64(stack)(in.failErr("call http: closing the body's encoder", err, abi.StatusInternal))
			return
		}
		body = u.u
	}
	resp, err := c.Request(in.callCtx, append([]byte(nil), req...), body)
	if err != nil {
		r64(stack)(in.failErr("call http", err, abi.StatusRetryableIO))
		return
	}
	r64(stack)(in.setResp(resp))
}

// callSQL serves call("sql", req) (ABI 1.1): a request naming a batch ("batch", a load)
// gets the current batch's bytes; a stale handle is not_found.
func (in *instance) callSQL(stack []uint64, req []byte) {
	if !in.p.granted[abi.CapSQL] {
		r64(stack)(in.deny(abi.ImportCall, fmt.Sprintf("capability %q was not granted to the plugin", abi.CapSQL)))
		return
	}
	c := in.run.b.SQL
	if c == nil {
		r64(stack)(in.deny(abi.ImportCall, fmt.Sprintf("capability %q is not bound for this call", abi.CapSQL)))
		return
	}
	var peek struct {
		Batch uint32 `json:"batch"`
	}
	if err := json.Unmarshal(req, &peek); err != nil {
		r64(stack)(in.fail(abi.StatusBadArgument, "", "call sql: request is not a valid JSON object: %v", err))
		return
	}
	var batch []byte
	if peek.Batch != 0 {
		if !in.batchLive || peek.Batch != in.batchID {
			r64(stack)(in.fail(abi.StatusNotFound, "", "call sql: batch handle %d is not the current batch (valid only during sluice_write_batch)", peek.Batch))
			return
		}
		batch = in.batch
	}
	resp, err := c.Call(in.callCtx, append([]byte(nil), req...), batch)
	if err != nil {
		r64(stack)(in.failErr("call sql", err, abi.StatusRetryableIO))
		return
	}
	r64(stack)(in.setResp(resp))
}

func hEncoderWriteRange(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		ret32(stack, abi.StatusInternal, 0)
		return
	}
	if st, n, ok := in.allowRun(abi.ImportEncoderWriteRange); !ok {
		ret32(stack, st, n)
		return
	}
	eh, bh, start, count := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	e := in.run.encoders[eh]
	if e == nil {
		r32(stack)(in.fail(abi.StatusNotFound, "", "encoder_write_range: no open encoder with handle %d", eh))
		return
	}
	if !in.batchLive || bh != in.batchID {
		r32(stack)(in.fail(abi.StatusNotFound, "", "encoder_write_range: batch handle %d is not the current batch", bh))
		return
	}
	if in.batchOffs == nil {
		offs, err := abi.RowOffsets(in.batch)
		if err != nil {
			r32(stack)(in.failErr("encoder_write_range", err, abi.StatusInternal))
			return
		}
		in.batchOffs = offs
	}
	rows := uint64(len(in.batchOffs) - 1)
	if uint64(start)+uint64(count) > rows {
		r32(stack)(in.fail(abi.StatusBadArgument, "", "encoder_write_range: rows [%d, %d) outside the batch's %d rows", start, uint64(start)+uint64(count), rows))
		return
	}
	if count == 0 {
		ret32(stack, abi.StatusOK, 0)
		return
	}
	sub := in.batch
	if uint64(count) != rows {
		sub, _ = abi.SliceBatch(in.batch, in.batchOffs, int(start), int(count))
	}
	if _, err := e.e.WriteBatch(sub); err != nil {
		r32(stack)(in.failErr("encoder_write_range", err, abi.StatusInternal))
		return
	}
	ret32(stack, abi.StatusOK, 0)
}
