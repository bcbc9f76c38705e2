//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk/internal/guest"
)

// The guest exports of abi/SPEC.md section 5. They live in this package, not in the
// plugin's main package: Go links //go:wasmexport functions from any package of a
// `-buildmode=c-shared` wasip1 build, so importing sdk is enough.

// maxAlloc bounds one sluice_alloc: past it the export returns 0 (the host fails the call
// with limit_exceeded) instead of letting the Go runtime abort on out-of-memory.
const maxAlloc = 1 << 30

var (
	// pending keeps every buffer handed out by sluice_alloc reachable (so the GC cannot
	// reclaim it while the host writes into it) until the export consuming it returns.
	pending = map[uint32][]byte{}
	// lastDoc is the document the last export returned: kept until the next export is
	// entered, as the host copies it out after the export returns.
	lastDoc []byte
	// zeroBuf is the answer to sluice_alloc(0).
	zeroBuf [8]byte
)

func addr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

// enter starts an export: the previous result document may now be released.
func enter() { lastDoc = nil }

// leave ends an export: input buffers are released and the result is packed.
func leave(doc []byte) uint64 {
	clear(pending)
	if len(doc) == 0 {
		lastDoc = nil
		return 0
	}
	lastDoc = doc
	return abi.PackPtr(addr(doc), uint32(len(doc)))
}

// input returns the bytes the host wrote into a buffer from sluice_alloc.
func input(p, n uint32) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	b, ok := pending[p]
	if !ok || int(n) > len(b) {
		return nil, false
	}
	return b[:n:n], true
}

func badInput(export string) []byte {
	return errorDoc(&abi.Error{Message: "sdk: " + export + ": the input (ptr, len) is not a buffer from sluice_alloc",
		Status: abi.StatusBadArgument.String()})
}

//go:wasmexport sluice_alloc
func sluiceAlloc(size uint32) uint32 {
	if size == 0 {
		return addr(zeroBuf[:])
	}
	if size > maxAlloc {
		return 0
	}
	b := make([]byte, size)
	p := addr(b)
	pending[p] = b
	return p
}

//go:wasmexport sluice_describe
func sluiceDescribe() uint64 {
	enter()
	return leave(guest.Dispatch.Describe())
}

//go:wasmexport sluice_validate
func sluiceValidate(p, n uint32) uint64 {
	enter()
	in, ok := input(p, n)
	if !ok {
		return leave(badInput("sluice_validate"))
	}
	return leave(guest.Dispatch.Validate(in))
}

//go:wasmexport sluice_open
func sluiceOpen(p, n uint32) uint64 {
	enter()
	in, ok := input(p, n)
	if !ok {
		return leave(badInput("sluice_open"))
	}
	return leave(guest.Dispatch.Open(in))
}

//go:wasmexport sluice_write_batch
func sluiceWriteBatch(batch, records uint32) uint64 {
	enter()
	return leave(guest.Dispatch.WriteBatch(batch, records))
}

//go:wasmexport sluice_finish
func sluiceFinish() uint64 {
	enter()
	return leave(guest.Dispatch.Finish())
}

//go:wasmexport sluice_classify
func sluiceClassify(p, n uint32) uint64 {
	enter()
	in, ok := input(p, n)
	if !ok {
		return leave(badInput("sluice_classify"))
	}
	return leave(guest.Dispatch.Classify(in))
}

//go:wasmexport sluice_test
func sluiceTest(p, n uint32) uint64 {
	enter()
	in, ok := input(p, n)
	if !ok {
		return leave(badInput("sluice_test"))
	}
	return leave(guest.Dispatch.Test(in))
}

//go:wasmexport sluice_close
func sluiceClose() uint64 {
	enter()
	return leave(guest.Dispatch.Close())
}
