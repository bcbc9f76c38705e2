// Package abi is the contract between the Sluice host and its WebAssembly destination
// plugins: version constants, export and import names, status and outcome codes, and the
// binary batch encoding. SPEC.md in this directory is the normative text; this package
// follows it. It imports the standard library only, so plugin authors pull in nothing else.
package abi

import "fmt"

// Version of the ABI. The import module name carries the major version; a plugin
// declares the minor it needs through its marker export.
const (
	Major = 1
	Minor = 1
)

// ImportModule is the name of the host module every plugin imports from.
const ImportModule = "sluice_v1"

// MarkerPrefix begins the name of the marker export: "sluice_abi_v1_0" declares
// ABI 1.0. The marker is a function with no parameters and no results.
const MarkerPrefix = "sluice_abi_v"

// Marker returns the marker export name for a version.
func Marker(major, minor int) string { return fmt.Sprintf("%s%d_%d", MarkerPrefix, major, minor) }

// Guest exports (names of the functions a plugin module exports).
const (
	ExportInitialize = "_initialize"        // () -> ()            wasip1 reactor start
	ExportAlloc      = "sluice_alloc"       // (size i32) -> i32   guest allocator
	ExportDescribe   = "sluice_describe"    // () -> i64           manifest
	ExportValidate   = "sluice_validate"    // (ptr i32, len i32) -> i64
	ExportOpen       = "sluice_open"        // (ptr i32, len i32) -> i64
	ExportWriteBatch = "sluice_write_batch" // (batch i32, records i32) -> i64
	ExportFinish     = "sluice_finish"      // () -> i64
	ExportClassify   = "sluice_classify"    // (ptr i32, len i32) -> i64
	ExportTest       = "sluice_test"        // (ptr i32, len i32) -> i64  (optional)
	ExportClose      = "sluice_close"       // () -> i64
)

// Host imports (functions in module ImportModule).
const (
	ImportLog          = "log"           // (level i32, ptr i32, len i32) -> ()
	ImportLogEnabled   = "log_enabled"   // (level i32) -> i32
	ImportMetric       = "metric"        // (name_ptr i32, name_len i32, value i64) -> i32
	ImportResponseRead = "response_read" // (ptr i32, cap i32) -> i64 packed
	ImportBatchRead    = "batch_read"    // (batch i32, ptr i32, cap i32) -> i64 packed
	ImportUploadOpen   = "upload_open"   // (spec_ptr i32, spec_len i32) -> i64 packed
	ImportUploadWrite  = "upload_write"  // (upload i32, ptr i32, len i32) -> i32
	ImportUploadBytes  = "upload_bytes"  // (upload i32, out_ptr i32) -> i32
	ImportUploadCommit = "upload_commit" // (upload i32) -> i64 packed
	ImportUploadAbort  = "upload_abort"  // (upload i32) -> i32
	ImportEncoderOpen  = "encoder_open"  // (upload i32, spec_ptr i32, spec_len i32) -> i64 packed
	ImportEncoderWrite = "encoder_write" // (encoder i32, batch i32) -> i32
	ImportEncoderClose = "encoder_close" // (encoder i32) -> i32
	ImportCall         = "call"          // (cap_ptr i32, cap_len i32, req_ptr i32, req_len i32) -> i64 packed

	// ABI 1.1.
	ImportEncoderWriteRange = "encoder_write_range" // (encoder i32, batch i32, start i32, count i32) -> i32
)

// ImportMinor is the ABI minor that introduced an import (0 for the imports of 1.0): a
// plugin whose marker declares an older minor may not import it.
func ImportMinor(name string) int {
	switch name {
	case ImportEncoderWriteRange:
		return 1
	}
	return 0
}

// Status is the result code of every host call. 0 is success.
type Status uint32

// Status codes. 0-63 are defined by ABI v1.x (new codes are minor changes); 64-255 are
// reserved for future major versions; 256 and above are never used by the host.
const (
	StatusOK             Status = 0
	StatusNotFound       Status = 1  // no such handle, key or table
	StatusBadArgument    Status = 2  // malformed request, bad pointer range, bad JSON
	StatusBufferTooSmall Status = 3  // the packed value carries the needed length
	StatusDenied         Status = 4  // capability not granted, or outside the bound policy
	StatusLimitExceeded  Status = 5  // byte, handle or log caps
	StatusRetryableIO    Status = 6  // timeouts, 5xx, throttling: worth retrying
	StatusFatalIO        Status = 7  // auth failure, missing bucket: do not retry
	StatusCancelled      Status = 8  // the run was cancelled or hit its deadline
	StatusInternal       Status = 9  // host bug or unexpected state
	StatusUnimplemented  Status = 10 // the host does not know this function or operation
)

var statusNames = [...]string{"ok", "not_found", "bad_argument", "buffer_too_small", "denied",
	"limit_exceeded", "retryable_io", "fatal_io", "cancelled", "internal", "unimplemented"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status_%d", uint32(s))
}

// StatusByName is the reverse of Status.String, for JSON documents.
func StatusByName(name string) (Status, bool) {
	for i, n := range statusNames {
		if n == name {
			return Status(i), true
		}
	}
	return 0, false
}

// Pack builds a packed status return: status in the high 32 bits, value in the low 32.
func Pack(s Status, value uint32) uint64 { return uint64(s)<<32 | uint64(value) }

// Unpack splits a packed status return.
func Unpack(v uint64) (Status, uint32) { return Status(v >> 32), uint32(v) }

// PackPtr builds the packed return of a guest export: pointer high, length low.
func PackPtr(ptr, length uint32) uint64 { return uint64(ptr)<<32 | uint64(length) }

// UnpackPtr splits a guest export's packed return.
func UnpackPtr(v uint64) (ptr, length uint32) { return uint32(v >> 32), uint32(v) }

// Log levels for ImportLog, matching log/slog's numbering.
const (
	LevelDebug int32 = -4
	LevelInfo  int32 = 0
	LevelWarn  int32 = 4
	LevelError int32 = 8
)

// Capability names, granted per plugin at install and bound per export.
const (
	CapLog       = "log"       // always granted
	CapMetrics   = "metrics"   // always granted
	CapObject    = "object"    // uploads to the export's bucket/prefix or directory
	CapEncode    = "encode"    // host-native encoders (pure computation; always granted)
	CapBigQuery  = "bigquery"  // warehouse operations on one project/dataset
	CapSnowflake = "snowflake" // warehouse operations on one account/database/schema
	CapHTTP      = "http"      // ABI 1.1: HTTP requests to the export's bound origin
	CapSQL       = "sql"       // ABI 1.1: statements and bulk loads on the export's bound database
)

// CapabilityMinor is the ABI minor that introduced a capability (0 for those of 1.0): a
// plugin declaring an older minor may not request it.
func CapabilityMinor(name string) int {
	switch name {
	case CapHTTP, CapSQL:
		return 1
	}
	return 0
}

// Upload sink names (UploadSpec.Sink). Each belongs to the capability that serves it.
const (
	SinkObject         = "object"          // capability object
	SinkBigQueryLoad   = "bigquery_load"   // capability bigquery: one load job per upload
	SinkSnowflakeStage = "snowflake_stage" // capability snowflake: a file PUT to the table stage
	SinkHTTPBody       = "http_body"       // capability http (ABI 1.1): a request body held by the host
)

// AlwaysGranted capabilities need no admin grant.
var AlwaysGranted = []string{CapLog, CapMetrics, CapEncode}
