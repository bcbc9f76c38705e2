package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/sluicehq/sluice/abi"
)

// Bindings are the capabilities bound to one run (or test). Nil members are not bound: the
// guest's calls on them return denied (object, warehouses) or unimplemented (encoders).
type Bindings struct {
	// Objects is the "object" sink: the export's bucket and prefix, or directory.
	Objects ObjectStore
	// Sinks serves the other upload sinks ("bigquery_load", "snowflake_stage").
	Sinks map[string]ObjectStore
	// Encoders builds host-native encoders (capability "encode").
	Encoders EncoderFactory
	// Warehouses serves `call` by capability name ("bigquery", "snowflake").
	Warehouses map[string]Caller
	// HTTP serves `call("http", ...)` (ABI 1.1); its bodies come from Sinks["http_body"].
	HTTP HTTPCaller
	// SQL serves `call("sql", ...)` (ABI 1.1).
	SQL SQLCaller
	// Log receives the plugin's log lines (and its stdout/stderr); the caller adds the run,
	// export and plugin attributes. Nil: lines go to the runtime's logger.
	Log func(level slog.Level, msg string)
	// LogLevel is the lowest level log_enabled reports as enabled (zero: INFO).
	LogLevel slog.Level
	// Metric adds v to the run's counter name.
	Metric func(name string, v int64)
}

// ObjectStore starts uploads under one bound location.
type ObjectStore interface {
	Create(ctx context.Context, key string, opts ObjectOptions) (Upload, error)
}

// ObjectChecker is an ObjectStore that can check its access: call("object", {"op":
// "check"}) (docs/capabilities.md).
type ObjectChecker interface {
	Check(ctx context.Context) error
}

// ObjectOptions are what the plugin's UploadSpec says about the object.
type ObjectOptions struct {
	ContentType     string
	ContentEncoding string
	Metadata        map[string]string
	Options         map[string]any // sink-specific
}

// Upload is one object being written; exactly one of Commit or Abort ends it.
type Upload interface {
	io.Writer
	Written() int64
	Commit(ctx context.Context) (ObjectInfo, error)
	Abort(ctx context.Context) error
}

// ObjectInfo describes a committed object.
type ObjectInfo struct {
	Key   string
	Bytes int64
	ETag  string
}

// EncoderFactory opens a host-native encoder writing into w over the run's columns.
type EncoderFactory func(w io.Writer, spec abi.EncoderSpec, cols []abi.Column) (BatchEncoder, error)

// BatchEncoder encodes SLB1 batches into its writer.
type BatchEncoder interface {
	WriteBatch(batch []byte) (int, error)
	Close() error
}

// Caller performs one warehouse operation: a JSON request in, a JSON answer out.
type Caller interface {
	Call(ctx context.Context, req []byte) ([]byte, error)
}

// HTTPCaller performs one request of the http capability: req is the plugin's JSON
// (abi.HTTPRequest), body the upload named by its body_upload (nil without one; the
// caller checks it is one of its own http_body uploads). The answer is a JSON document.
type HTTPCaller interface {
	Request(ctx context.Context, req []byte, body Upload) ([]byte, error)
}

// SQLCaller performs one operation of the sql capability: req is the plugin's JSON
// (abi.SQLRequest), batch the current batch's SLB1 bytes when the request names it by its
// handle ("batch"; nil otherwise: the runtime has already refused a stale handle). The
// answer is a JSON document.
type SQLCaller interface {
	Call(ctx context.Context, req []byte, batch []byte) ([]byte, error)
}

type uploadH struct {
	u       Upload
	key     string
	encoder uint32 // open encoder handle, 0 if none
}

type encoderH struct {
	e      BatchEncoder
	upload uint32
}

var sinkCaps = map[string]string{"object": abi.CapObject, "bigquery_load": abi.CapBigQuery, "snowflake_stage": abi.CapSnowflake,
	abi.SinkHTTPBody: abi.CapHTTP}

var metricRE = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

type hostFn struct {
	name    string
	fn      api.GoModuleFunc
	params  []api.ValueType
	results []api.ValueType
}

func instantiateHostModule(ctx context.Context, r wazero.Runtime) error {
	fns := []hostFn{
		{abi.ImportLog, hLog, []api.ValueType{i32, i32, i32}, nil},
		{abi.ImportLogEnabled, hLogEnabled, []api.ValueType{i32}, []api.ValueType{i32}},
		{abi.ImportMetric, hMetric, []api.ValueType{i32, i32, i64}, []api.ValueType{i32}},
		{abi.ImportResponseRead, hResponseRead, []api.ValueType{i32, i32}, []api.ValueType{i64}},
		{abi.ImportBatchRead, hBatchRead, []api.ValueType{i32, i32, i32}, []api.ValueType{i64}},
		{abi.ImportUploadOpen, hUploadOpen, []api.ValueType{i32, i32}, []api.ValueType{i64}},
		{abi.ImportUploadWrite, hUploadWrite, []api.ValueType{i32, i32, i32}, []api.ValueType{i32}},
		{abi.ImportUploadBytes, hUploadBytes, []api.ValueType{i32, i32}, []api.ValueType{i32}},
		{abi.ImportUploadCommit, hUploadCommit, []api.ValueType{i32}, []api.ValueType{i64}},
		{abi.ImportUploadAbort, hUploadAbort, []api.ValueType{i32}, []api.ValueType{i32}},
		{abi.ImportEncoderOpen, hEncoderOpen, []api.ValueType{i32, i32, i32}, []api.ValueType{i64}},
		{abi.ImportEncoderWrite, hEncoderWrite, []api.ValueType{i32, i32}, []api.ValueType{i32}},
		{abi.ImportEncoderClose, hEncoderClose, []api.ValueType{i32}, []api.ValueType{i32}},
		{abi.ImportCall, hCall, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i64}},
		{abi.ImportEncoderWriteRange, hEncoderWriteRange, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}},
	}
	b := r.NewHostModuleBuilder(abi.ImportModule)
	for _, f := range fns {
		b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.params, f.results).Export(f.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

func instFrom(ctx context.Context) *instance {
	in, _ := ctx.Value(instKey{}).(*instance)
	return in
}

// fail leaves an Error document in the response buffer and returns the status and its length.
func (in *instance) fail(st abi.Status, code, format string, args ...any) (abi.Status, uint32) {
	doc, _ := json.Marshal(abi.Error{Message: fmt.Sprintf(format, args...), Status: st.String(), Code: code})
	in.resp, in.hasResp = doc, true
	return st, uint32(len(doc))
}

// failErr maps a capability error (keeping its class) into the response buffer.
func (in *instance) failErr(op string, err error, dflt abi.Status) (abi.Status, uint32) {
	in.hostErr = err
	st := dflt
	var se StatusError
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		st = abi.StatusCancelled
	case errors.As(err, &se) && se.ABIStatus() != abi.StatusOK:
		st = se.ABIStatus()
	}
	code := ""
	var ce CodeError
	if errors.As(err, &ce) {
		code = ce.ABICode()
	}
	return in.fail(st, code, "%s: %v", op, err)
}

func (in *instance) setResp(doc []byte) (abi.Status, uint32) {
	if len(doc) > MaxResponseBytes {
		return in.fail(abi.StatusLimitExceeded, "", "response of %d bytes exceeds the %d-byte response buffer", len(doc), MaxResponseBytes)
	}
	in.resp, in.hasResp = doc, true
	return abi.StatusOK, uint32(len(doc))
}

// deny refuses a capability call, logs it at WARN and leaves the error document.
func (in *instance) deny(imp, why string) (abi.Status, uint32) {
	msg := fmt.Sprintf("%s denied: %s", imp, why)
	in.emitLog(slog.LevelWarn, "host: "+msg)
	in.p.rt.log.Warn("plugin capability call denied", "plugin", in.p.Manifest.Name, "import", imp, "export", in.export, "reason", why)
	return in.fail(abi.StatusDenied, "", "%s", msg)
}

// allowRun refuses imports that are not allowed in the current call (classify, control).
func (in *instance) allowRun(imp string) (abi.Status, uint32, bool) {
	switch in.mode {
	case modeClassify:
		st, n := in.deny(imp, "sluice_classify may only call log, log_enabled and metric")
		return st, n, false
	}
	if err := in.callCtx.Err(); err != nil {
		st, n := in.fail(abi.StatusCancelled, "", "%s: run %v", imp, err)
		return st, n, false
	}
	return abi.StatusOK, 0, true
}

func (in *instance) read(ptr, n uint32) ([]byte, bool) { return in.mem.Read(ptr, n) }

func packed(st abi.Status, v uint32) uint64 { return abi.Pack(st, v) }

// emitLog records one plugin log line, within the line and volume caps.
func (in *instance) emitLog(level slog.Level, msg string) {
	if len(msg) > MaxLogLineBytes {
		cut := MaxLogLineBytes
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + " …[truncated]"
	}
	if in.run.logUsed+len(msg) > in.p.limits.MaxLogBytesPerRun {
		in.run.dropped++
		if in.run.dropped == 1 {
			in.sendLog(slog.LevelWarn, fmt.Sprintf("host: log volume cap of %d bytes reached; further plugin log lines of this run are dropped", in.p.limits.MaxLogBytesPerRun))
		}
		return
	}
	in.run.logUsed += len(msg)
	in.sendLog(level, msg)
}

func (in *instance) sendLog(level slog.Level, msg string) {
	if in.run.b.Log != nil {
		in.run.b.Log(level, msg)
		return
	}
	in.p.rt.log.Log(context.Background(), level, msg, "plugin", in.p.Manifest.Name, "export", in.export)
}

func hLog(ctx context.Context, m api.Module, stack []uint64) {
	in := instFrom(ctx)
	if in == nil {
		return
	}
	level, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	if slog.Level(level) < in.run.b.LogLevel {
		return
	}
	b, ok := in.read(ptr, n)
	if !ok {
		return // SPEC 3: for log, an out-of-range line is dropped
	}
	in.emitLog(slog.Level(level), strings.ToValidUTF8(string(b), "\uFFFD"))
}
