//go:build sluice_abi_1_1

package sdk

import (
	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk/internal/guest"
)

//go:wasmexport sluice_abi_v1_1
func sluiceABIv1_1() {}

//go:wasmimport sluice_v1 encoder_write_range
func hostEncoderWriteRange(encoder, batch, start, count uint32) uint32

// EncoderWriteRange implements guest.RangeWriter (ABI 1.1).
func (wasmHost) EncoderWriteRange(encoder, batch, start, count uint32) abi.Status {
	return abi.Status(hostEncoderWriteRange(encoder, batch, start, count))
}

var _ guest.RangeWriter = wasmHost{}
