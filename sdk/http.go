package sdk

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk/internal/guest"
)

// ---- ABI 1.1: row ranges and the http capability ---------------------------------------
//
// These helpers need a plugin built for ABI 1.1 (go build -tags sluice_abi_1_1): a 1.0 build
// that calls them fails to install ("imports encoder_write_range, which is part of ABI 1.1").

// WriteRange encodes rows [start, start+count) of the batch on the host
// (encoder_write_range, ABI 1.1): a plugin cuts a batch into requests of a fixed number of
// records without reading them.
func (e *Encoder) WriteRange(b *Batch, start, count int) error {
	rw, ok := guest.Current.(guest.RangeWriter)
	if !ok {
		return &HostError{Op: abi.ImportEncoderWriteRange, Status: abi.StatusUnimplemented,
			Err: abi.Error{Message: "this build of the SDK declares ABI 1.0; build with -tags sluice_abi_1_1"}}
	}
	if start < 0 || count < 0 {
		return &HostError{Op: abi.ImportEncoderWriteRange, Status: abi.StatusBadArgument}
	}
	if st := rw.EncoderWriteRange(e.handle, b.handle, uint32(start), uint32(count)); st != abi.StatusOK {
		return hostErr(abi.ImportEncoderWriteRange, st, 0)
	}
	return nil
}

// HTTPBody opens a request body held by the host (an upload on sink http_body, capability
// http). Write it with an encoder (Upload.Encoder: jsonl, or posthog_batch whose api_key is
// apiKey, a literal or "{secret:NAME}"; "" for none) or raw bytes, send it with
// HTTPRequest.BodyUpload = Upload.Handle(), and release it with Abort once it is sent.
func HTTPBody(contentType, contentEncoding, apiKey string) (*Upload, error) {
	spec := abi.UploadSpec{Sink: abi.SinkHTTPBody, Key: "body", ContentType: contentType, ContentEncoding: contentEncoding}
	if apiKey != "" {
		spec.Options = map[string]any{"api_key": apiKey}
	}
	return OpenUpload(spec)
}

// Handle is the upload's handle, for HTTPRequest.BodyUpload.
func (u *Upload) Handle() uint32 { return u.handle }

// HTTP sends one request through the http capability (call("http", {"op": "request"...}))
// and returns the server's answer, whatever its status: turn it into the run's error with
// HTTPResponseError. An error means no answer: the origin is not bound or the address is
// refused (denied), a timeout or a reset (retryable_io), a cap (limit_exceeded).
func HTTP(req abi.HTTPRequest) (abi.HTTPResponse, error) {
	var resp abi.HTTPResponse
	req.Op = "request"
	err := Call(abi.CapHTTP, req, &resp)
	return resp, err
}

// HTTPError is an answer HTTPResponseError refused: Retryable with RetryAfter (0: the
// host's backoff), or not.
type HTTPError struct {
	Status     int
	Body       string
	Retryable  bool
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	body := strings.TrimSpace(e.Body)
	if len(body) > 512 {
		body = body[:512] + "…"
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, body)
}

// HTTPResponseError turns an answer into the run's error the common way: nil for 2xx;
// otherwise an error whose message is "HTTP <status>: <body>" and whose Error.code is
// "http_<status>", with ";retry_after_ms=<n>" when the answer is retryable (408, 425, 429,
// 5xx) and carries a Retry-After (ask for it in ResponseHeaders). ClassifyHTTP reads that
// code back in Classify; errors.As finds the *HTTPError.
func HTTPResponseError(r abi.HTTPResponse) error {
	if r.Status >= 200 && r.Status < 300 {
		return nil
	}
	e := &HTTPError{Status: r.Status, Body: r.Body}
	code := httpCodePrefix + strconv.Itoa(r.Status)
	if httpRetryable(r.Status) {
		e.Retryable = true
		e.RetryAfter = ParseRetryAfter(r.Headers["Retry-After"], time.Now())
		if e.RetryAfter > 0 {
			code += httpRetryAfterSep + strconv.FormatInt(e.RetryAfter.Milliseconds(), 10)
		}
	}
	return &Error{Code: code, Err: e}
}

const (
	httpCodePrefix    = "http_"
	httpRetryAfterSep = ";retry_after_ms="
)

func httpRetryable(status int) bool {
	return status == 408 || status == 425 || status == 429 || status >= 500
}

// ClassifyHTTP classifies a failure carrying an HTTPResponseError code: retryable statuses
// retry (after Retry-After when there was one), others fail. ok is false for other errors.
func ClassifyHTTP(e *abi.Error) (c abi.Classification, ok bool) {
	if e == nil {
		return c, false
	}
	rest, ok := strings.CutPrefix(e.Code, httpCodePrefix)
	if !ok {
		return c, false
	}
	st, after, _ := strings.Cut(rest, httpRetryAfterSep)
	status, err := strconv.Atoi(st)
	if err != nil {
		return c, false
	}
	if !httpRetryable(status) {
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: fmt.Sprintf("the server answered HTTP %d, which retrying cannot change", status)}, true
	}
	if ms, err := strconv.ParseInt(after, 10, 64); err == nil && ms > 0 {
		return abi.Classification{Outcome: abi.OutcomeRetryAfter, RetryAfterMS: ms, Reason: fmt.Sprintf("the server answered HTTP %d with Retry-After", status)}, true
	}
	return abi.Classification{Outcome: abi.OutcomeRetry, Reason: fmt.Sprintf("the server answered HTTP %d", status)}, true
}

// ParseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date. Unparseable or
// past: 0.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 86400)) * time.Second
	}
	if t, err := time.Parse(time.RFC1123, v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
