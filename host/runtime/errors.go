package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/abi"
)

// ErrInvalidPlugin is matched (errors.Is) by every error that refuses a module at install:
// too large, not WebAssembly, wrong imports or exports, unsupported ABI version, bad
// manifest, capability not granted.
var ErrInvalidPlugin = errors.New("invalid plugin")

// InvalidPluginError refuses a module. Its message is meant for the admin as is.
type InvalidPluginError struct {
	Msg string
	Err error // the underlying failure (a *TrapError of sluice_describe...), if any
}

func (e *InvalidPluginError) Error() string        { return e.Msg }
func (e *InvalidPluginError) Is(target error) bool { return target == ErrInvalidPlugin }
func (e *InvalidPluginError) Unwrap() error        { return e.Err }

func invalid(format string, args ...any) error {
	return &InvalidPluginError{Msg: fmt.Sprintf(format, args...)}
}

// StatusError may be implemented by the errors of capabilities (ObjectStore, Upload,
// BatchEncoder, Caller) to keep their class across the ABI: the host import that met the
// error returns this status to the guest (retryable_io, fatal_io, denied, not_found...).
// Context errors map to cancelled; other errors to a default per import (see docs/runtime.md).
type StatusError interface {
	error
	ABIStatus() abi.Status
}

// CodeError may be implemented by capability errors to pass a destination code (an S3 error
// code, a Snowflake error number) in the Error document the guest reads.
type CodeError interface {
	error
	ABICode() string
}

// CapabilityError is a ready-made StatusError and CodeError for capability implementations:
// the status the plugin sees, the destination's own code (an S3 error code, a BigQuery
// reason, a Snowflake error number) and the destination's message, wrapping the cause.
type CapabilityError struct {
	Status abi.Status
	Code   string
	Msg    string // the text the plugin reads; empty: Err's
	Err    error
}

func (e *CapabilityError) Error() string {
	if e.Msg != "" {
		return e.Msg
	}
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Status.String()
}

func (e *CapabilityError) Unwrap() error { return e.Err }

// ABIStatus implements StatusError.
func (e *CapabilityError) ABIStatus() abi.Status { return e.Status }

// ABICode implements CodeError.
func (e *CapabilityError) ABICode() string { return e.Code }

// PluginError is a failure the plugin reported from an export ({"error": {...}}). The
// instance is healthy. Cause, when set, is the host capability error the plugin met during
// that call and whose status it reports (so errors.Is/As reach it).
type PluginError struct {
	Plugin string
	Export string
	Err    abi.Error
	Cause  error
}

func (e *PluginError) Error() string {
	s := fmt.Sprintf("plugin %q: %s: %s", e.Plugin, e.Export, e.Err.Message)
	if e.Err.Field != "" {
		s += " (field " + e.Err.Field + ")"
	}
	if e.Err.Status != "" {
		s += " [" + e.Err.Status + "]"
	}
	if e.Err.Code != "" {
		s += " code " + e.Err.Code
	}
	return s
}

func (e *PluginError) Unwrap() error { return e.Cause }

// ABIStatus is the status the plugin named, internal if unknown, 0 if none.
func (e *PluginError) ABIStatus() abi.Status {
	if e.Err.Status == "" {
		return abi.StatusOK
	}
	if s, ok := abi.StatusByName(e.Err.Status); ok {
		return s
	}
	return abi.StatusInternal
}

// Trap kinds.
const (
	TrapPanic         = "trap"         // unreachable, out-of-bounds access, stack overflow, guest panic
	TrapExit          = "exit"         // the guest called proc_exit (a Go guest panicking without recover)
	TrapMemory        = "memory_limit" // the trap happened with memory at its limit
	TrapBadPointer    = "bad_pointer"  // an export returned a pointer outside its memory
	TrapBadOutput     = "bad_output"   // an export returned something that is not the expected JSON
	TrapMissingExport = "missing_export"
)

// TrapError is a guest failure outside the protocol: a trap, an exit, a bad pointer or a
// document that is not the expected JSON. The instance was discarded.
type TrapError struct {
	Plugin string
	Export string
	Kind   string // one of the Trap* constants
	Detail string
	Stack  string // the guest's wasm stack trace, if any
	Err    error  // wazero's error, if any
}

func (e *TrapError) Error() string {
	return fmt.Sprintf("plugin %q crashed in %s (%s): %s", e.Plugin, e.Export, e.Kind, e.Detail)
}

func (e *TrapError) Unwrap() error { return e.Err }

// DeadlineError is a guest call that ran past the per-call deadline (Limits.CallTimeout).
// The instance was closed by wazero and discarded. It matches context.DeadlineExceeded.
type DeadlineError struct {
	Plugin  string
	Export  string
	Timeout time.Duration
}

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("plugin %q: %s did not return within its deadline of %s; the instance was stopped", e.Plugin, e.Export, e.Timeout)
}

func (e *DeadlineError) Is(target error) bool { return target == context.DeadlineExceeded }

// CancelledError is a guest call stopped because the run's context ended (cancelled or past
// the run deadline). It unwraps to the context's error.
type CancelledError struct {
	Plugin string
	Export string
	Err    error
}

func (e *CancelledError) Error() string {
	return fmt.Sprintf("plugin %q: %s stopped: run %v", e.Plugin, e.Export, e.Err)
}

func (e *CancelledError) Unwrap() error { return e.Err }

// ABIStatus is cancelled.
func (e *CancelledError) ABIStatus() abi.Status { return abi.StatusCancelled }

// HostError is a failure of the host around a call (an allocation the guest refused, a
// session used after a trap, a closed runtime).
type HostError struct {
	Status abi.Status
	Msg    string
}

func (e *HostError) Error() string         { return e.Msg }
func (e *HostError) ABIStatus() abi.Status { return e.Status }

// StatusOf returns the ABI status that best describes err: cancelled for context errors,
// the status of a StatusError, internal otherwise (ok for nil).
func StatusOf(err error) abi.Status {
	if err == nil {
		return abi.StatusOK
	}
	var de *DeadlineError
	if errors.As(err, &de) {
		return abi.StatusRetryableIO
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return abi.StatusCancelled
	}
	var se StatusError
	if errors.As(err, &se) {
		if s := se.ABIStatus(); s != abi.StatusOK {
			return s
		}
	}
	return abi.StatusInternal
}

// toABIError describes a run failure for sluice_classify.
func toABIError(err error) abi.Error {
	var pe *PluginError
	if errors.As(err, &pe) {
		return pe.Err
	}
	e := abi.Error{Message: err.Error(), Status: StatusOf(err).String()}
	var ce CodeError
	if errors.As(err, &ce) {
		e.Code = ce.ABICode()
	}
	return e
}
