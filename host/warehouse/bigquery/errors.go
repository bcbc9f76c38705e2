package bigquery

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// Error is a capability error: the ABI status the plugin sees (retryable_io, fatal_io,
// denied, bad_argument...) and, as its code, BigQuery's error reason (quotaExceeded,
// notFound, accessDenied, invalid...). Its text is BigQuery's message.
type Error = runtime.CapabilityError

func errorf(st abi.Status, format string, args ...any) *Error {
	return &Error{Status: st, Msg: fmt.Sprintf(format, args...)}
}

func denied(format string, args ...any) *Error {
	return errorf(abi.StatusDenied, format, args...)
}

func badArg(format string, args ...any) *Error {
	return errorf(abi.StatusBadArgument, format, args...)
}

// retryableReasons are BigQuery error reasons worth retrying.
var retryableReasons = map[string]bool{
	"quotaExceeded": true, "rateLimitExceeded": true, "backendError": true, "internalError": true,
	"jobRateLimitExceeded": true, "jobBackendError": true, "jobInternalError": true,
	"tableUnavailable": true, "resourcesExceeded": false, "timeout": true,
}

// reasonOf returns the BigQuery reason and message of err, and the HTTP code (0 if none).
func reasonOf(err error) (reason, msg string, code int) {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		msg = ge.Message
		if len(ge.Errors) > 0 {
			reason = ge.Errors[0].Reason
			if msg == "" {
				msg = ge.Errors[0].Message
			}
		}
		if msg == "" {
			msg = ge.Error()
		}
		return reason, msg, ge.Code
	}
	var be *bigquery.Error
	if errors.As(err, &be) {
		return be.Reason, be.Message, 0
	}
	return "", err.Error(), 0
}

// isReason reports whether err is a BigQuery error with the given reason or HTTP code.
func isReason(err error, reason string, code int) bool {
	r, _, c := reasonOf(err)
	return (reason != "" && r == reason) || (code != 0 && c == code)
}

func isNotFound(err error) bool { return isReason(err, "notFound", http.StatusNotFound) }

func isDuplicate(err error) bool { return isReason(err, "duplicate", http.StatusConflict) }

// mapError converts a client error into an *Error with the ABI status of its class:
// quota, rate limits, backend errors and 5xx are retryable_io; not found, access denied,
// invalid (schema, query) and the other 4xx are fatal_io. Context errors are kept so the
// runtime reports them as cancelled. Transport errors (no BigQuery answer) are retryable.
func mapError(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	reason, msg, code := reasonOf(err)
	e := &Error{Status: abi.StatusFatalIO, Code: reason, Msg: msg, Err: err}
	if op != "" {
		e.Msg = op + ": " + msg
	}
	switch {
	case retryableReasons[reason]:
		e.Status = abi.StatusRetryableIO
	case reason != "":
		e.Status = abi.StatusFatalIO
	case code >= 500:
		e.Status = abi.StatusRetryableIO
	case code == http.StatusTooManyRequests:
		e.Status = abi.StatusRetryableIO
	case code >= 400:
		e.Status = abi.StatusFatalIO
	default:
		// No BigQuery answer at all: a transport fault, worth retrying.
		e.Status = abi.StatusRetryableIO
	}
	if e.Code == "" && code != 0 {
		e.Code = fmt.Sprint(code)
	}
	return e
}
