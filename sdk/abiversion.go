//go:build !sluice_abi_1_1

package sdk

// ABIMinor is the ABI minor this build of the SDK declares (its marker export and the
// manifest's abi_version): 1.0 by default, so a plugin built without new imports installs on
// every 1.x host. Build with -tags sluice_abi_1_1 to declare 1.1 and use its additions
// (the http capability, Encoder.WriteRange).
const ABIMinor = 0
