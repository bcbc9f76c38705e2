// Package guest is the seam between the SDK and the host functions it calls: on wasip1 the
// SDK installs the real `sluice_v1` imports; elsewhere a stub answers `unimplemented`, and
// package sdktest installs an in-memory fake. It also carries the SDK's export entry points
// so that sdktest can drive a plugin natively, through the same code the wasm exports run.
package guest

import "github.com/sluicehq/sluice/abi"

// Host is the set of `sluice_v1` imports (abi/SPEC.md section 6) in Go types. Packed
// returns are split: (status, value).
type Host interface {
	Log(level int32, msg []byte)
	LogEnabled(level int32) bool
	Metric(name []byte, value int64) abi.Status
	ResponseRead(buf []byte) (abi.Status, uint32)
	BatchRead(batch uint32, buf []byte) (abi.Status, uint32)
	UploadOpen(spec []byte) (abi.Status, uint32)
	UploadWrite(upload uint32, p []byte) abi.Status
	UploadBytes(upload uint32) (abi.Status, uint64)
	UploadCommit(upload uint32) (abi.Status, uint32)
	UploadAbort(upload uint32) abi.Status
	EncoderOpen(upload uint32, spec []byte) (abi.Status, uint32)
	EncoderWrite(encoder, batch uint32) abi.Status
	EncoderClose(encoder uint32) abi.Status
	Call(capability, req []byte) (abi.Status, uint32)
}

// Current is the host the SDK calls.
var Current Host = Unimplemented{}

// Exports are the SDK's lifecycle entry points, in Go types: inputs are the JSON documents
// the host passes, outputs the documents an export returns (nil: empty success).
type Exports struct {
	Describe   func() []byte
	Validate   func(in []byte) []byte
	Open       func(in []byte) []byte
	WriteBatch func(batch, records uint32) []byte
	Finish     func() []byte
	Classify   func(in []byte) []byte
	Test       func(in []byte) []byte
	Close      func() []byte
}

// Dispatch is set by package sdk at initialisation.
var Dispatch Exports

// Unimplemented is a Host with no capabilities: every call returns StatusUnimplemented and
// log lines are dropped.
type Unimplemented struct{}

func (Unimplemented) Log(int32, []byte)                        {}
func (Unimplemented) LogEnabled(int32) bool                    { return false }
func (Unimplemented) Metric([]byte, int64) abi.Status          { return abi.StatusUnimplemented }
func (Unimplemented) ResponseRead([]byte) (abi.Status, uint32) { return abi.StatusNotFound, 0 }
func (Unimplemented) BatchRead(uint32, []byte) (abi.Status, uint32) {
	return abi.StatusUnimplemented, 0
}
func (Unimplemented) UploadOpen([]byte) (abi.Status, uint32)   { return abi.StatusUnimplemented, 0 }
func (Unimplemented) UploadWrite(uint32, []byte) abi.Status    { return abi.StatusUnimplemented }
func (Unimplemented) UploadBytes(uint32) (abi.Status, uint64)  { return abi.StatusUnimplemented, 0 }
func (Unimplemented) UploadCommit(uint32) (abi.Status, uint32) { return abi.StatusUnimplemented, 0 }
func (Unimplemented) UploadAbort(uint32) abi.Status            { return abi.StatusUnimplemented }
func (Unimplemented) EncoderOpen(uint32, []byte) (abi.Status, uint32) {
	return abi.StatusUnimplemented, 0
}
func (Unimplemented) EncoderWrite(uint32, uint32) abi.Status   { return abi.StatusUnimplemented }
func (Unimplemented) EncoderClose(uint32) abi.Status           { return abi.StatusUnimplemented }
func (Unimplemented) Call([]byte, []byte) (abi.Status, uint32) { return abi.StatusUnimplemented, 0 }

// RangeWriter is the ABI 1.1 import encoder_write_range, implemented by hosts that provide
// it (the wasm host built with -tags sluice_abi_1_1, sdktest). It is not part of Host so
// that a 1.0 build of the SDK links exactly what it did before 1.1.
type RangeWriter interface {
	EncoderWriteRange(encoder, batch, start, count uint32) abi.Status
}
