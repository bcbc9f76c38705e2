// Command goguest is the runtime's Go test plugin, written against the ABI directly (no SDK).
// Build (from the module root):
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o host/runtime/testdata/goguest.wasm ./host/runtime/testdata/goguest
//
// Config key "mode" picks how sluice_write_batch handles a batch:
//   - "native" (default): encoder_open(jsonl) once, then encoder_write(handle) per batch;
//   - "guest": batch_read, decode every record with abi.BatchReader, write JSON Lines bytes
//     with upload_write;
//   - "panic": panic (no recover), like a buggy plugin;
//   - "none": count records only.
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"strconv"
	"time"
	"unsafe"

	"github.com/sluicehq/sluice/abi"
)

//go:wasmimport sluice_v1 log
func hostLog(level int32, ptr unsafe.Pointer, n int32)

//go:wasmimport sluice_v1 response_read
func responseRead(ptr unsafe.Pointer, capacity int32) int64

//go:wasmimport sluice_v1 batch_read
func batchRead(batch int32, ptr unsafe.Pointer, capacity int32) int64

//go:wasmimport sluice_v1 upload_open
func uploadOpen(ptr unsafe.Pointer, n int32) int64

//go:wasmimport sluice_v1 upload_write
func uploadWrite(upload int32, ptr unsafe.Pointer, n int32) int32

//go:wasmimport sluice_v1 upload_bytes
func uploadBytes(upload int32, out unsafe.Pointer) int32

//go:wasmimport sluice_v1 upload_commit
func uploadCommit(upload int32) int64

//go:wasmimport sluice_v1 upload_abort
func uploadAbort(upload int32) int32

//go:wasmimport sluice_v1 encoder_open
func encoderOpen(upload int32, ptr unsafe.Pointer, n int32) int64

//go:wasmimport sluice_v1 encoder_write
func encoderWrite(encoder int32, batch int32) int32

//go:wasmimport sluice_v1 metric
func metric(ptr unsafe.Pointer, n int32, v int64) int32

func main() {}

var (
	pinned  [][]byte // buffers handed to the host by sluice_alloc, until the next export returns
	lastDoc []byte   // the last returned document, valid until the next export is entered
)

func ptrOf(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func ret(v any) int64 {
	b, _ := json.Marshal(v)
	lastDoc = b
	pinned = pinned[:0]
	return int64(uint64(uintptr(ptrOf(b)))<<32 | uint64(len(b)))
}

func retErr(msg, status string) int64 {
	return ret(abi.ErrorEnvelope{Error: &abi.Error{Message: msg, Status: status}})
}

func input(ptr, n int32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n)
}

func logf(msg string) {
	b := []byte(msg)
	hostLog(abi.LevelInfo, ptrOf(b), int32(len(b)))
}

// hostErr reads the Error document a failed host call left in the response buffer.
func hostErr(op string, status abi.Status) int64 {
	buf := make([]byte, 4096)
	r := responseRead(ptrOf(buf), int32(len(buf)))
	st, n := abi.Unpack(uint64(r))
	var e abi.Error
	if st == abi.StatusOK {
		_ = json.Unmarshal(buf[:n], &e)
	}
	e.Message = op + ": " + e.Message
	e.Status = status.String()
	return ret(abi.ErrorEnvelope{Error: &e})
}

//go:wasmexport sluice_abi_v1_0
func marker() {}

//go:wasmexport sluice_alloc
func alloc(size int32) int32 {
	b := make([]byte, size+1)
	pinned = append(pinned, b)
	return int32(uintptr(unsafe.Pointer(&b[0])))
}

//go:wasmexport sluice_describe
func describe() int64 {
	return ret(abi.Manifest{
		Name: "go-test-guest", Version: "0.1.0", ABIVersion: "1.0",
		Description:  "runtime test guest (no SDK)",
		Capabilities: []string{abi.CapObject},
		Config: []abi.Field{
			{Name: "mode", Type: abi.TypeString, Default: "native", Enum: []string{"native", "guest", "panic", "none"}},
			{Name: "prefix", Type: abi.TypeString, Default: "exports/"},
		},
		Formats: []string{"jsonl"},
	})
}

//go:wasmexport sluice_validate
func validate(ptr, n int32) int64 {
	var req abi.ValidateRequest
	if err := json.Unmarshal(input(ptr, n), &req); err != nil {
		return retErr("bad request: "+err.Error(), "bad_argument")
	}
	switch m, _ := req.Config["mode"].(string); m {
	case "", "native", "guest", "panic", "none":
		return ret(struct{}{})
	}
	return ret(abi.ErrorEnvelope{Error: &abi.Error{Message: "mode must be native, guest, panic or none", Field: "mode"}})
}

var run struct {
	req     abi.OpenRequest
	mode    string
	upload  int32
	encoder int32
	records int64
	reader  abi.BatchReader
	batch   []byte
	out     []byte
	vals    []abi.Value
	failed  bool // a write_batch of this run failed
}

//go:wasmexport sluice_open
func open(ptr, n int32) int64 {
	run.req = abi.OpenRequest{}
	if err := json.Unmarshal(input(ptr, n), &run.req); err != nil {
		return retErr("bad open request: "+err.Error(), "bad_argument")
	}
	run.mode, _ = run.req.Config["mode"].(string)
	if run.mode == "" {
		run.mode = "native"
	}
	run.upload, run.encoder, run.records, run.failed = 0, 0, 0, false
	logf("open run " + run.req.RunID + " mode " + run.mode)
	return ret(struct{}{})
}

func ensureUpload() int64 {
	if run.upload != 0 {
		return 0
	}
	prefix, _ := run.req.Config["prefix"].(string)
	spec, _ := json.Marshal(abi.UploadSpec{Key: prefix + run.req.RunID + ".jsonl", ContentType: "application/jsonl"})
	r := uploadOpen(ptrOf(spec), int32(len(spec)))
	st, h := abi.Unpack(uint64(r))
	if st != abi.StatusOK {
		return hostErr("upload_open", st)
	}
	run.upload = int32(h)
	if run.mode == "native" {
		es, _ := json.Marshal(abi.EncoderSpec{Format: "jsonl"})
		r := encoderOpen(run.upload, ptrOf(es), int32(len(es)))
		st, h := abi.Unpack(uint64(r))
		if st != abi.StatusOK {
			return hostErr("encoder_open", st)
		}
		run.encoder = int32(h)
	}
	return 0
}

//go:wasmexport sluice_write_batch
func writeBatch(batch, records int32) int64 {
	r := writeBatchRun(batch, records)
	if bytes.HasPrefix(lastDoc, []byte(`{"error"`)) {
		run.failed = true // finish must not commit a run that misses a batch
	}
	return r
}

func writeBatchRun(batch, records int32) int64 {
	switch run.mode {
	case "panic":
		panic("goguest: boom in write_batch")
	case "none":
		run.records += int64(records)
		return ret(struct{}{})
	}
	if r := ensureUpload(); r != 0 {
		return r
	}
	if run.mode == "native" {
		if st := abi.Status(encoderWrite(run.encoder, batch)); st != abi.StatusOK {
			return hostErr("encoder_write", st)
		}
		run.records += int64(records)
		return ret(struct{}{})
	}
	// guest mode: copy the batch in, decode every record, write JSON Lines.
	for {
		r := batchRead(batch, ptrOf(run.batch), int32(len(run.batch)))
		st, n := abi.Unpack(uint64(r))
		if st == abi.StatusBufferTooSmall {
			run.batch = make([]byte, n)
			continue
		}
		if st != abi.StatusOK {
			return hostErr("batch_read", st)
		}
		run.batch = run.batch[:n]
		break
	}
	if err := run.reader.Reset(run.batch); err != nil {
		return retErr(err.Error(), "bad_argument")
	}
	cols := run.reader.Columns()
	if cap(run.vals) < len(cols) {
		run.vals = make([]abi.Value, len(cols))
	}
	vals := run.vals[:len(cols)]
	out := run.out[:0]
	for {
		err := run.reader.Next(vals)
		if err != nil {
			if err == io.EOF {
				break
			}
			return retErr(err.Error(), "bad_argument")
		}
		out = appendRow(out, cols, vals)
		run.records++
	}
	run.out = out
	if st := abi.Status(uploadWrite(run.upload, ptrOf(out), int32(len(out)))); st != abi.StatusOK {
		return hostErr("upload_write", st)
	}
	return ret(struct{}{})
}

func appendRow(out []byte, cols []abi.Column, vals []abi.Value) []byte {
	out = append(out, '{')
	for i, c := range cols {
		if i > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendQuote(out, c.Name)
		out = append(out, ':')
		v := vals[i]
		if v.Null {
			out = append(out, "null"...)
			continue
		}
		switch c.Kind {
		case abi.KindString:
			out = appendJSONString(out, v.Bytes)
		case abi.KindJSON:
			out = append(out, v.Bytes...)
		case abi.KindInt64:
			out = strconv.AppendInt(out, v.Int, 10)
		case abi.KindTimestamp:
			out = append(out, '"')
			out = v.Time().AppendFormat(out, time.RFC3339Nano)
			out = append(out, '"')
		case abi.KindUUID:
			var h [36]byte
			hex.Encode(h[0:8], v.Bytes[0:4])
			h[8] = '-'
			hex.Encode(h[9:13], v.Bytes[4:6])
			h[13] = '-'
			hex.Encode(h[14:18], v.Bytes[6:8])
			h[18] = '-'
			hex.Encode(h[19:23], v.Bytes[8:10])
			h[23] = '-'
			hex.Encode(h[24:36], v.Bytes[10:16])
			out = append(out, '"')
			out = append(out, h[:]...)
			out = append(out, '"')
		case abi.KindFloat64:
			out = strconv.AppendFloat(out, v.Float, 'g', -1, 64)
		case abi.KindBool:
			out = strconv.AppendBool(out, v.Int != 0)
		}
	}
	return append(out, '}', '\n')
}

func appendJSONString(out, s []byte) []byte {
	const hexd = "0123456789abcdef"
	out = append(out, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&15])
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

//go:wasmexport sluice_finish
func finish() int64 {
	if run.failed {
		return retErr("finish after a failed write_batch", "")
	}
	res := abi.Result{Records: run.records}
	if run.upload != 0 {
		var n uint64
		uploadBytes(run.upload, unsafe.Pointer(&n))
		r := uploadCommit(run.upload)
		st, ln := abi.Unpack(uint64(r))
		run.upload, run.encoder = 0, 0
		if st != abi.StatusOK {
			return hostErr("upload_commit", st)
		}
		buf := make([]byte, ln)
		responseRead(ptrOf(buf), int32(ln))
		var info abi.CommitInfo
		_ = json.Unmarshal(buf, &info)
		res.Bytes = info.Bytes
		res.Outputs = []abi.Output{{Kind: "object", Name: info.Key, Records: run.records, Bytes: info.Bytes}}
	}
	name := []byte("records_written")
	metric(ptrOf(name), int32(len(name)), run.records)
	return ret(res)
}

//go:wasmexport sluice_classify
func classify(ptr, n int32) int64 {
	var req abi.ClassifyRequest
	if err := json.Unmarshal(input(ptr, n), &req); err != nil {
		return retErr("bad classify request", "bad_argument")
	}
	switch req.Error.Status {
	case "retryable_io":
		return ret(abi.Classification{Outcome: abi.OutcomeRetryAfter, RetryAfterMS: 1500, Reason: "destination throttled"})
	case "fatal_io", "denied":
		return ret(abi.Classification{Outcome: abi.OutcomeFail, Reason: "destination refused"})
	}
	return ret(abi.Classification{Outcome: abi.OutcomeRetry, Reason: "unknown failure"})
}

//go:wasmexport sluice_close
func closeRun() int64 {
	if run.upload != 0 {
		uploadAbort(run.upload)
	}
	run.upload, run.encoder, run.records, run.failed = 0, 0, 0, false
	run.req = abi.OpenRequest{}
	return ret(struct{}{})
}

//go:wasmexport sluice_test
func test(ptr, n int32) int64 {
	return ret(abi.TestReport{Steps: []abi.TestStep{{Name: "config", OK: true, Message: "nothing to check"}}})
}
