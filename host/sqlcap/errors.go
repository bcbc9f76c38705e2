package sqlcap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// classify turns a driver error into the error the plugin reads: the server's code
// (SQLSTATE, clickhouse_<n>, connection, timeout) and message, and the status that code
// calls for (abi.SQLCodeRetryable). runCtx is the guest call's context: when it is done the
// run was cancelled or the call's deadline passed (cancelled); a timeout_ms of the request
// alone is a retryable timeout.
func (b *Binding) classify(runCtx context.Context, err error) error {
	var ce *runtime.CapabilityError
	if errors.As(err, &ce) {
		return err // already classified (policy, arguments)
	}
	var ae *AddressError
	if errors.As(err, &ae) {
		return &runtime.CapabilityError{Status: abi.StatusDenied, Msg: "sql: " + ae.Error()}
	}
	if runCtx.Err() != nil {
		return &runtime.CapabilityError{Status: abi.StatusCancelled, Msg: "sql: the run's call " + runCtx.Err().Error(), Err: runCtx.Err()}
	}
	code, msg := "", ""
	var pe *pgconn.PgError
	var ex *ch.Exception
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	switch {
	case errors.As(err, &pe):
		code, msg = pe.Code, pe.Severity+": "+pe.Message
		if pe.Detail != "" {
			msg += " (" + pe.Detail + ")"
		}
	case errors.As(err, &ex):
		code, msg = abi.SQLCodeClickHouse+strconv.Itoa(int(ex.Code)), ex.Message
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &hne):
		return &runtime.CapabilityError{Status: abi.StatusFatalIO, Code: "tls", Msg: "sql: TLS: " + b.scrub(err.Error())}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		code, msg = abi.SQLCodeTimeout, "the operation timed out: "+err.Error()
	case isConnErr(err):
		code, msg = abi.SQLCodeConnection, err.Error()
	default:
		if errors.Is(err, context.Canceled) {
			code = abi.SQLCodeTimeout
		}
		return &runtime.CapabilityError{Status: abi.StatusRetryableIO, Code: code, Msg: "sql: " + b.scrub(err.Error())}
	}
	st := abi.StatusRetryableIO
	if retry, known := abi.SQLCodeRetryable(code); known && !retry {
		st = abi.StatusFatalIO
	}
	return &runtime.CapabilityError{Status: st, Code: code, Msg: fmt.Sprintf("sql: %s (%s %s)", b.scrub(msg), b.codeLabel(), code)}
}

func (b *Binding) codeLabel() string {
	if b.s.driver == abi.SQLDriverPostgres {
		return "SQLSTATE"
	}
	return "code"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isConnErr: no server answered, or the connection was lost.
func isConnErr(err error) bool {
	var oe *net.OpError
	var de *net.DNSError
	var ce *pgconn.ConnectError
	return errors.As(err, &oe) || errors.As(err, &de) || errors.As(err, &ce) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) ||
		strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "connection reset")
}
