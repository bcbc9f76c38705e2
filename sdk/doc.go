// Package sdk is the Go SDK for Sluice destination plugins: WebAssembly modules that receive
// batches of analytics events and drive host capabilities (uploads, host-native encoders,
// warehouse calls) to deliver them. It implements the guest side of abi/SPEC.md (ABI 1.0):
// every export (sluice_alloc, the sluice_abi_v1_0 marker, sluice_describe, sluice_validate,
// sluice_open, sluice_write_batch, sluice_finish, sluice_classify, sluice_test, sluice_close)
// and every `sluice_v1` import are declared here, so plugin code never handles pointers.
//
// A plugin is a package main that registers a Destination from an init function:
//
//	package main
//
//	import (
//		"github.com/sluicehq/sluice/abi"
//		"github.com/sluicehq/sluice/sdk"
//	)
//
//	type dest struct {
//		sdk.Base // default Validate, Classify, Test, Close
//		up  *sdk.Upload
//		enc *sdk.Encoder
//	}
//
//	func (d *dest) Open(rc *sdk.RunContext) error { ... open an upload and an encoder ... }
//	func (d *dest) WriteBatch(b *sdk.Batch) error  { return d.enc.WriteBatch(b) }
//	func (d *dest) Finish() (abi.Result, error)    { ... d.up.Commit() ... }
//
//	func init() {
//		sdk.Register(abi.Manifest{Name: "mydest", Version: "0.1.0", Capabilities: []string{"object"}},
//			func() sdk.Destination { return &dest{} })
//	}
//
//	func main() {} // required by the go tool; never called in a reactor
//
// Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o x.wasm ./plugins/x
//
// The exports live in this package (Go links //go:wasmexport functions from any package of
// a c-shared wasip1 build), so importing sdk is all it takes. Register must be called from
// init: in a reactor, _initialize runs package initialisers but never main.main.
//
// Two routes exist for the data. The host-encoder route (Upload.Encoder, Encoder.WriteBatch)
// hands the batch handle to a native encoder: no record crosses into the guest, and it is the
// fast, default route. The per-record route (Batch.Events, Batch.Rows) copies the batch into
// the guest and decodes it there, for plugins that need per-record logic; Go guest code runs
// about 11-20 times slower than native, so keep it for what needs it.
//
// Host call failures are *HostError values carrying the call's status and the Error document
// the host left. Errors returned from Destination methods reach the host as abi.Error: use
// FieldError in Validate and WithCode to attach a destination code. A panic in any export is
// recovered and reported as an error with the panic value and a short stack.
//
// Outside wasip1 (go test, go vet on linux) the host functions are a stub that answers
// `unimplemented`; package sdk/sdktest provides an in-memory host that runs a Destination
// natively through the same export code, for plugin unit tests.
package sdk
