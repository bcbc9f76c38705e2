package snowflake

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// Error is a capability error: the ABI status the plugin sees and, as its code, Snowflake's
// error number as Snowflake prints it (six digits: "000608", "002003", "390100"). Its text
// keeps Snowflake's message; the driver's error (SQL state, query id) is wrapped.
type Error = runtime.CapabilityError

func errorf(st abi.Status, format string, args ...any) *Error {
	return &Error{Status: st, Msg: fmt.Sprintf(format, args...)}
}

func denied(format string, args ...any) *Error { return errorf(abi.StatusDenied, format, args...) }

func badArg(format string, args ...any) *Error { return errorf(abi.StatusBadArgument, format, args...) }

// Snowflake error codes the mapping names (Snowflake's numbering; the driver's own codes
// are 26xxxx).
const (
	CodeWarehouseSuspended   = 608    // 000608: warehouse suspended / resuming
	CodeNoActiveWarehouse    = 606    // 000606: no active warehouse selected
	CodeStatementCancelled   = 604    // 000604: SQL execution canceled
	CodeStatementTimeout     = 630    // 000630: statement reached its timeout
	CodeObjectNotFound       = 2003   // 002003: object does not exist or not authorized
	CodeInvalidIdentifier    = 904    // 000904: invalid identifier (schema mismatch)
	CodeTypeMismatch         = 2023   // 002023: expression type does not match column type
	CodeSyntaxError          = 1003   // 001003: SQL compilation error: syntax error
	CodeIncorrectPassword    = 390100 // incorrect username or password
	CodeUserLocked           = 390102 // user temporarily locked
	CodeJWTInvalid           = 390144 // JWT token is invalid
	CodeSessionExpired       = 390112 // session no longer exists
	CodeTokenExpired         = 390114 // authentication token has expired
	CodeRoleNotGranted       = 390189 // role not granted to this user
	CodeDatabaseNotExist     = 390201 // database does not exist or not authorized
	CodeServiceUnavailable   = 260007 // driver: HTTP 502/503/504 on login
	CodeFailedToConnect      = 260008 // driver: HTTP 401/403 on login
	CodePrivateKeyParseError = 260010 // driver: the private key cannot be parsed
	CodeFailedToAuth         = 261004 // driver: login answered an unexpected HTTP status
	CodeFailedToPostQuery    = 261000 // driver: query-request answered an unexpected HTTP status
)

// retryableCodes are Snowflake codes worth retrying: a suspended or resuming warehouse,
// cancelled or timed-out statements (the warehouse was busy), expired sessions, the
// driver's HTTP-level faults.
var retryableCodes = map[int]bool{
	CodeWarehouseSuspended: true, CodeStatementCancelled: true, CodeStatementTimeout: true,
	CodeSessionExpired: true, CodeTokenExpired: true, CodeServiceUnavailable: true,
	CodeFailedToPostQuery: true, 261001: true, 262000: true,
	625: true, // 000625: statement reached its statement or warehouse timeout (older code)
}

// fatalCodes are codes that retrying cannot fix: authentication, missing or unauthorised
// objects, an incompatible schema, malformed SQL, a bad key.
var fatalCodes = map[int]bool{
	CodeIncorrectPassword: true, CodeUserLocked: true, CodeJWTInvalid: true, 390101: true, 390103: true,
	390113: true, 390117: true, CodeRoleNotGranted: true, CodeDatabaseNotExist: true,
	CodeObjectNotFound: true, 2043: true, CodeInvalidIdentifier: true, CodeTypeMismatch: true,
	CodeSyntaxError: true, 2001: true, 2002: true, 2025: true, 2262: true, CodeNoActiveWarehouse: true,
	3001:   true,                                           // insufficient privileges
	100069: true, 100071: true, 100072: true, 100038: true, // load data errors (parse, NULL into NOT NULL, numeric)
	CodeFailedToConnect: true, CodePrivateKeyParseError: true, CodeFailedToAuth: true,
	260000: true, 260001: true, 260002: true, 260003: true, 260004: true,
}

// codeString is Snowflake's six-digit rendering of an error code.
func codeString(n int) string { return fmt.Sprintf("%06d", n) }

// mapError converts a driver error into an *Error with the ABI status of its class (see
// the table in docs/snowflake.md). Context errors are kept so the runtime reports them as
// cancelled. Errors with no Snowflake answer at all (transport faults, the driver giving up
// after retrying 5xx answers) are retryable.
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
	prefix := ""
	if op != "" {
		prefix = op + ": "
	}
	if se, ok := asSnowflakeError(err); ok {
		e := &Error{Code: codeString(se.Number), Msg: prefix + se.Error(), Err: err}
		e.Status = classify(se.Number, se.SQLState)
		return e
	}
	e := &Error{Status: abi.StatusRetryableIO, Msg: prefix + err.Error(), Err: err}
	var ne net.Error
	switch {
	case errors.As(err, &ne):
	case strings.Contains(err.Error(), "HTTP Status: 5"), strings.Contains(err.Error(), "timeout after"):
		e.Code = "http_5xx"
	}
	return e
}

// classify gives the ABI status of a Snowflake error code and SQL state.
func classify(code int, sqlState string) abi.Status {
	switch {
	case retryableCodes[code]:
		return abi.StatusRetryableIO
	case fatalCodes[code]:
		return abi.StatusFatalIO
	case strings.HasPrefix(sqlState, "08"), strings.HasPrefix(sqlState, "57"), strings.HasPrefix(sqlState, "XX"):
		// connection exceptions, operator intervention, internal errors
		return abi.StatusRetryableIO
	case code >= 390000 && code < 391000:
		// authentication and session errors not listed above
		return abi.StatusFatalIO
	default:
		return abi.StatusFatalIO
	}
}
