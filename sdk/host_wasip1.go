//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk/internal/guest"
)

// The `sluice_v1` imports of abi/SPEC.md section 6. Pointers are passed as unsafe.Pointer
// (an i32 offset into linear memory on wasm); the slices they come from stay reachable for
// the duration of the call.

//go:wasmimport sluice_v1 log
func hostLog(level int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport sluice_v1 log_enabled
func hostLogEnabled(level int32) int32

//go:wasmimport sluice_v1 metric
func hostMetric(name unsafe.Pointer, nameLen uint32, value int64) uint32

//go:wasmimport sluice_v1 response_read
func hostResponseRead(ptr unsafe.Pointer, capacity uint32) uint64

//go:wasmimport sluice_v1 batch_read
func hostBatchRead(batch uint32, ptr unsafe.Pointer, capacity uint32) uint64

//go:wasmimport sluice_v1 upload_open
func hostUploadOpen(spec unsafe.Pointer, specLen uint32) uint64

//go:wasmimport sluice_v1 upload_write
func hostUploadWrite(upload uint32, ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport sluice_v1 upload_bytes
func hostUploadBytes(upload uint32, out unsafe.Pointer) uint32

//go:wasmimport sluice_v1 upload_commit
func hostUploadCommit(upload uint32) uint64

//go:wasmimport sluice_v1 upload_abort
func hostUploadAbort(upload uint32) uint32

//go:wasmimport sluice_v1 encoder_open
func hostEncoderOpen(upload uint32, spec unsafe.Pointer, specLen uint32) uint64

//go:wasmimport sluice_v1 encoder_write
func hostEncoderWrite(encoder, batch uint32) uint32

//go:wasmimport sluice_v1 encoder_close
func hostEncoderClose(encoder uint32) uint32

//go:wasmimport sluice_v1 call
func hostCall(capPtr unsafe.Pointer, capLen uint32, reqPtr unsafe.Pointer, reqLen uint32) uint64

func init() { guest.Current = wasmHost{} }

type wasmHost struct{}

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func split(v uint64) (abi.Status, uint32) { return abi.Unpack(v) }

func (wasmHost) Log(level int32, msg []byte) { hostLog(level, ptr(msg), uint32(len(msg))) }
func (wasmHost) LogEnabled(level int32) bool { return hostLogEnabled(level) != 0 }
func (wasmHost) Metric(name []byte, value int64) abi.Status {
	return abi.Status(hostMetric(ptr(name), uint32(len(name)), value))
}
func (wasmHost) ResponseRead(buf []byte) (abi.Status, uint32) {
	return split(hostResponseRead(ptr(buf), uint32(len(buf))))
}
func (wasmHost) BatchRead(batch uint32, buf []byte) (abi.Status, uint32) {
	return split(hostBatchRead(batch, ptr(buf), uint32(len(buf))))
}
func (wasmHost) UploadOpen(spec []byte) (abi.Status, uint32) {
	return split(hostUploadOpen(ptr(spec), uint32(len(spec))))
}
func (wasmHost) UploadWrite(upload uint32, p []byte) abi.Status {
	return abi.Status(hostUploadWrite(upload, ptr(p), uint32(len(p))))
}
func (wasmHost) UploadBytes(upload uint32) (abi.Status, uint64) {
	var n uint64
	st := abi.Status(hostUploadBytes(upload, unsafe.Pointer(&n)))
	return st, n
}
func (wasmHost) UploadCommit(upload uint32) (abi.Status, uint32) {
	return split(hostUploadCommit(upload))
}
func (wasmHost) UploadAbort(upload uint32) abi.Status { return abi.Status(hostUploadAbort(upload)) }
func (wasmHost) EncoderOpen(upload uint32, spec []byte) (abi.Status, uint32) {
	return split(hostEncoderOpen(upload, ptr(spec), uint32(len(spec))))
}
func (wasmHost) EncoderWrite(encoder, batch uint32) abi.Status {
	return abi.Status(hostEncoderWrite(encoder, batch))
}
func (wasmHost) EncoderClose(encoder uint32) abi.Status {
	return abi.Status(hostEncoderClose(encoder))
}
func (wasmHost) Call(capability, req []byte) (abi.Status, uint32) {
	return split(hostCall(ptr(capability), uint32(len(capability)), ptr(req), uint32(len(req))))
}
