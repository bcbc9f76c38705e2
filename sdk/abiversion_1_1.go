//go:build sluice_abi_1_1

package sdk

// ABIMinor is the ABI minor this build of the SDK declares: 1.1 (-tags sluice_abi_1_1).
const ABIMinor = 1
