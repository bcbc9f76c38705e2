package abi

import "time"

// Control messages cross the boundary as JSON (UTF-8, no BOM). They are small and rare
// (once per run or per call); the hot path, the batch, is binary.

// Manifest is what sluice_describe returns.
type Manifest struct {
	Name         string   `json:"name"`         // [a-z0-9_-]{1,64}
	Version      string   `json:"version"`      // semantic version of the plugin
	ABIVersion   string   `json:"abi_version"`  // "1.0"; must match the marker export
	Description  string   `json:"description"`  // one line
	Capabilities []string `json:"capabilities"` // capabilities requested, e.g. ["object"]
	Config       []Field  `json:"config"`       // config schema, in display order
	Formats      []string `json:"formats,omitempty"`
}

// Field describes one config key.
type Field struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"` // string | integer | number | boolean | string_list | object
	Description string   `json:"description,omitempty"`
	Required    bool     `json:"required,omitempty"`
	Secret      bool     `json:"secret,omitempty"` // never given to the plugin; bound to capabilities by the host
	Default     any      `json:"default,omitempty"`
	Enum        []string `json:"enum,omitempty"`
	// Binding names the capability parameter the host fills from this field,
	// e.g. "object.bucket", "object.secret_access_key". Empty: the plugin's own.
	Binding string `json:"binding,omitempty"`
}

// Field types.
const (
	TypeString     = "string"
	TypeInteger    = "integer"
	TypeNumber     = "number"
	TypeBoolean    = "boolean"
	TypeStringList = "string_list"
	TypeObject     = "object"
)

// ValidateRequest is the input of sluice_validate.
type ValidateRequest struct {
	Config     map[string]any `json:"config"`      // non-secret keys, defaults applied
	SecretsSet []string       `json:"secrets_set"` // names of secret fields that have a value
}

// OpenRequest is the input of sluice_open.
type OpenRequest struct {
	RunID         string    `json:"run_id"`
	ExportID      string    `json:"export_id"`
	ExportName    string    `json:"export_name"`
	IntervalStart time.Time `json:"interval_start"` // RFC 3339, UTC, inclusive
	IntervalEnd   time.Time `json:"interval_end"`   // RFC 3339, UTC, exclusive
	Attempt       int       `json:"attempt"`        // 1 for the first try; counts every try of the run
	// Generation is 0 for a run's first execution and its automatic retries; each deliberate
	// re-run of the interval (a user's retry, a backfill over it again) gets a higher one.
	// A destination keys idempotent writes by (RunID, Generation): an automatic retry must
	// not write twice, a deliberate re-run must write again.
	Generation int            `json:"generation"`
	Backfill   bool           `json:"backfill"`
	Config     map[string]any `json:"config"`  // non-secret keys, defaults applied
	Columns    []Column       `json:"columns"` // the schema every batch of this run carries
	// The key "checkpoint" is reserved (SPEC §7): never sent by this host, never read.
}

// Result is what sluice_finish returns.
type Result struct {
	Records int64    `json:"records"`
	Bytes   int64    `json:"bytes"`
	Outputs []Output `json:"outputs,omitempty"`
}

// Output names one thing a run wrote (an object key, a table, a stage file).
type Output struct {
	Kind    string `json:"kind"` // free text: object, bigquery_table, snowflake_table, http (SPEC section 7)
	Name    string `json:"name"`
	Records int64  `json:"records,omitempty"`
	Bytes   int64  `json:"bytes,omitempty"`
}

// Error is how an export reports failure: {"error": {...}}.
type Error struct {
	Message string `json:"message"`
	// Status, when the failure came from a host call, is that call's status name.
	Status string `json:"status,omitempty"`
	// Field names the config key at fault (validate).
	Field string `json:"field,omitempty"`
	// Code is a destination-specific code (S3 error code, Snowflake error number...).
	Code string `json:"code,omitempty"`
}

// ErrorEnvelope wraps an Error in a response.
type ErrorEnvelope struct {
	Error *Error `json:"error"`
}

// ClassifyRequest is the input of sluice_classify.
type ClassifyRequest struct {
	Error   Error `json:"error"`
	Attempt int   `json:"attempt"`
}

// Outcomes of sluice_classify.
const (
	OutcomeOK         = "ok"
	OutcomeRetry      = "retry"
	OutcomeRetryAfter = "retry_after"
	OutcomeFail       = "fail"
)

// Classification is what sluice_classify returns.
type Classification struct {
	Outcome      string `json:"outcome"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// TestReport is what sluice_test returns: one entry per step checked.
type TestReport struct {
	Steps []TestStep `json:"steps"`
}

// TestStep is one step of a destination test.
type TestStep struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// UploadSpec is the input of upload_open.
type UploadSpec struct {
	// Sink selects where bytes go: "object" (the bound bucket/prefix or directory),
	// "bigquery_load", "snowflake_stage". Empty means "object".
	Sink            string            `json:"sink,omitempty"`
	Key             string            `json:"key"` // relative to the bound prefix
	ContentType     string            `json:"content_type,omitempty"`
	ContentEncoding string            `json:"content_encoding,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	Options         map[string]any    `json:"options,omitempty"` // sink-specific
}

// CommitInfo is the response of upload_commit.
type CommitInfo struct {
	Key   string `json:"key"`
	Bytes int64  `json:"bytes"`
	ETag  string `json:"etag,omitempty"`
}

// EncoderSpec is the input of encoder_open.
type EncoderSpec struct {
	Format      string         `json:"format"`                // jsonl | parquet | csv
	Compression string         `json:"compression,omitempty"` // "" or "none" | gzip | zstd | brotli | snappy | lz4
	Columns     []ColumnSelect `json:"columns,omitempty"`     // empty: every column, own names
	Where       *RowFilter     `json:"where,omitempty"`       // nil: every row
}

// RowFilter keeps the rows whose string column Column equals Equals (an object destination
// partitioning by event name gives each partition's encoder every batch with one).
type RowFilter struct {
	Column string `json:"column"`
	Equals string `json:"equals"`
}

// ColumnSelect picks a batch column and names it in the output. Cast "string" (ABI 1.1)
// writes a uuid column as its canonical text (a Parquet STRING instead of
// FIXED_LEN_BYTE_ARRAY(16) UUID, which Spark and Databricks refuse to read); on string and
// json columns, and in the text formats (where a uuid already is text), it changes nothing.
type ColumnSelect struct {
	Name string `json:"name"`
	As   string `json:"as,omitempty"`
	Cast string `json:"cast,omitempty"`
}

// HTTPRequest is the request of call("http", ...) with op "request" (ABI 1.1). URL is
// resolved against the export's bound base URL and must stay on its origin. Header values
// may name secrets bound to the capability as {secret:NAME}; the host substitutes them.
// At most one body: BodyUpload (an http_body upload handle, built with encoders) or Body
// (bytes as a UTF-8 string).
type HTTPRequest struct {
	Op               string            `json:"op"`               // "request"
	Method           string            `json:"method,omitempty"` // default GET, or POST with a body
	URL              string            `json:"url"`
	Headers          map[string]string `json:"headers,omitempty"`
	BodyUpload       uint32            `json:"body_upload,omitempty"`
	Body             string            `json:"body,omitempty"`
	ResponseHeaders  []string          `json:"response_headers,omitempty"`
	MaxResponseBytes int64             `json:"max_response_bytes,omitempty"`
	TimeoutMS        int64             `json:"timeout_ms,omitempty"`
	// WaitRetryAfterMS > 0: on a 429 or 503 whose Retry-After asks for at most this long,
	// the host waits (within the run's deadline) and sends the same request again, up to
	// 3 sends and 30 s of waiting in all; the response is the last answer.
	WaitRetryAfterMS int64 `json:"wait_retry_after_ms,omitempty"`
}

// HTTPResponse is the answer of an HTTP request that reached the server, whatever its status.
type HTTPResponse struct {
	Status        int               `json:"status"`
	Headers       map[string]string `json:"headers,omitempty"`
	Body          string            `json:"body"`
	BodyTruncated bool              `json:"body_truncated,omitempty"`
	RequestBytes  int64             `json:"request_bytes"`
	DurationMS    int64             `json:"duration_ms"`
	Attempts      int               `json:"attempts"` // sends, >1 after Retry-After waits
	WaitedMS      int64             `json:"waited_ms,omitempty"`
}
