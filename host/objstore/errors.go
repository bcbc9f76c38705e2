package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"syscall"

	"github.com/aws/smithy-go"
)

// Class says what a runner should do about an error.
type Class int

const (
	// Retryable: transient (timeouts, 5xx, SlowDown, RequestTimeout, connection
	// reset or refused, anything unrecognised); retry the run with backoff.
	Retryable Class = iota + 1
	// Fatal: retrying cannot help (bad key or configuration, invalid bucket
	// name, bad endpoint, malformed request).
	Fatal
	// Denied: credentials or permissions (AccessDenied, InvalidAccessKeyId,
	// SignatureDoesNotMatch, KMS access); not retryable.
	Denied
	// NotFound: the bound bucket or directory (or an upload) does not exist
	// (NoSuchBucket, NoSuchUpload, HTTP 404); not retryable.
	NotFound
	// Cancelled: the caller's context was cancelled.
	Cancelled
)

func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case Fatal:
		return "fatal"
	case Denied:
		return "denied"
	case NotFound:
		return "not_found"
	case Cancelled:
		return "cancelled"
	}
	return "none"
}

// Permanent reports whether the class ends a run without retrying
// (Fatal, Denied, NotFound), as PostHog's non-retryable error lists do.
func (c Class) Permanent() bool { return c == Fatal || c == Denied || c == NotFound }

// Error is an object-store failure. For S3 it keeps the service's error code
// and HTTP status; the original error is available through errors.Unwrap.
type Error struct {
	Op        string // e.g. "s3 UploadPart", "local commit"
	Key       string // full object key, when the operation concerns one
	Code      string // S3 error code ("NoSuchBucket", "SlowDown", ...), if any
	Status    int    // HTTP status, if a response was received
	RequestID string // S3 request id, if any
	Err       error
	class     Class
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("objstore: ")
	b.WriteString(e.Op)
	if e.Key != "" {
		fmt.Fprintf(&b, " %q", e.Key)
	}
	if e.Status != 0 || e.Code != "" {
		b.WriteString(": ")
		if e.Status != 0 {
			fmt.Fprintf(&b, "HTTP %d ", e.Status)
		}
		if e.Code != "" {
			b.WriteString(e.Code)
		}
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Class is the error's classification (see Classify).
func (e *Error) Class() Class { return e.class }

// Classify maps an error from this package (or any error) to a Class.
// A nil error has class 0 ("none").
func Classify(err error) Class {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) && e.class != 0 {
		return e.class
	}
	return classify(err, "", 0)
}

// Codes that are never retried, after PostHog's S3 destination.
var codeClass = map[string]Class{
	"NoSuchBucket":                    NotFound,
	"NoSuchUpload":                    NotFound,
	"NoSuchKey":                       NotFound,
	"NotFound":                        NotFound,
	"AccessDenied":                    Denied,
	"InvalidAccessKeyId":              Denied,
	"SignatureDoesNotMatch":           Denied,
	"AllAccessDisabled":               Denied,
	"AccountProblem":                  Denied,
	"ExpiredToken":                    Denied,
	"InvalidToken":                    Denied,
	"KMS.AccessDeniedException":       Denied,
	"KMS.NotFoundException":           Fatal,
	"KMS.DisabledException":           Fatal,
	"InvalidBucketName":               Fatal,
	"InvalidArgument":                 Fatal,
	"InvalidRequest":                  Fatal,
	"InvalidPart":                     Fatal,
	"InvalidPartOrder":                Fatal,
	"EntityTooSmall":                  Fatal,
	"EntityTooLarge":                  Fatal,
	"KeyTooLongError":                 Fatal,
	"MalformedXML":                    Fatal,
	"MetadataTooLarge":                Fatal,
	"InvalidEncryptionAlgorithmError": Fatal,
	"PermanentRedirect":               Fatal,
	"AuthorizationHeaderMalformed":    Fatal,
	"NotImplemented":                  Fatal,
	"SlowDown":                        Retryable,
	"RequestTimeout":                  Retryable,
	"InternalError":                   Retryable,
	"ServiceUnavailable":              Retryable,
	"OperationAborted":                Retryable,
	"BadDigest":                       Retryable,
	"RequestTimeTooSkewed":            Retryable,
}

func classify(err error, code string, status int) Class {
	if errors.Is(err, ErrInvalidKey) {
		return Fatal
	}
	if c, ok := codeClass[code]; ok {
		return c
	}
	switch {
	case status == 401 || status == 403:
		return Denied
	case status == 404:
		return NotFound
	case status == 408 || status == 429 || status >= 500:
		return Retryable
	case status >= 300:
		return Fatal
	}
	if errors.Is(err, context.Canceled) {
		return Cancelled
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Retryable
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsTimeout || dnsErr.IsTemporary {
			return Retryable
		}
		return Fatal // unknown host: a bad endpoint
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Retryable
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return Retryable
	case errors.Is(err, fs.ErrPermission):
		return Denied
	case errors.Is(err, fs.ErrNotExist):
		return NotFound
	case errors.Is(err, ErrClosed):
		return Fatal
	}
	return Retryable // PostHog: anything not known to be permanent is retried
}

// statusErr is implemented by the SDK's HTTP response errors.
type statusErr interface{ HTTPStatusCode() int }

type requestIDErr interface{ ServiceRequestID() string }

// wrapS3 turns an SDK error into an *Error that keeps the code and status.
func wrapS3(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	e := &Error{Op: "s3 " + op, Key: key, Err: err}
	var api smithy.APIError
	if errors.As(err, &api) {
		e.Code = api.ErrorCode()
	}
	var se statusErr
	if errors.As(err, &se) {
		e.Status = se.HTTPStatusCode()
	}
	var ri requestIDErr
	if errors.As(err, &ri) {
		e.RequestID = ri.ServiceRequestID()
	}
	e.class = classify(err, e.Code, e.Status)
	return e
}

// wrapLocal turns a file-system error into an *Error.
func wrapLocal(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	e := &Error{Op: "local " + op, Key: key, Err: err}
	switch {
	case errors.Is(err, ErrInvalidKey):
		e.class = Fatal
	case strings.Contains(err.Error(), "escapes from parent"):
		// os.Root refused a path that leaves the bound directory (through
		// ".." or a symlink); it has no exported sentinel for this.
		e.Err = fmt.Errorf("%w: %w", ErrInvalidKey, err)
		e.class = Fatal
	case errors.Is(err, context.Canceled):
		e.class = Cancelled
	case errors.Is(err, fs.ErrPermission):
		e.class = Denied
	case errors.Is(err, fs.ErrNotExist):
		e.class = NotFound
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EIO):
		e.class = Retryable
	default:
		e.class = Fatal
	}
	return e
}
