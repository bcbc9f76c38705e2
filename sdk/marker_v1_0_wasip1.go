//go:build !sluice_abi_1_1

package sdk

//go:wasmexport sluice_abi_v1_0
func sluiceABIv1_0() {}
