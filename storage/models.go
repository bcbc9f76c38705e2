package storage

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// StringList is a list of strings stored as a JSON array in a TEXT column.
type StringList []string

// Value implements driver.Valuer.
func (l StringList) Value() (driver.Value, error) {
	if l == nil {
		return "[]", nil
	}
	b, err := json.Marshal([]string(l))
	return string(b), err
}

// Scan implements sql.Scanner.
func (l *StringList) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		*l = nil
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("storage: cannot scan %T into StringList", src)
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("storage: StringList: %w", err)
	}
	*l = out
	return nil
}

// Plugin is an installed destination plugin module.
type Plugin struct {
	ID           string     `gorm:"column:id;primaryKey" json:"id"`
	Name         string     `gorm:"column:name" json:"name"`
	Version      string     `gorm:"column:version" json:"version"`
	ABIVersion   string     `gorm:"column:abi_version" json:"abi_version"`
	SHA256       string     `gorm:"column:sha256" json:"sha256"`
	Manifest     string     `gorm:"column:manifest" json:"manifest"`         // JSON text
	Capabilities StringList `gorm:"column:capabilities" json:"capabilities"` // granted
	ModulePath   string     `gorm:"column:module_path" json:"module_path"`
	CreatedAt    time.Time  `gorm:"column:created_at" json:"created_at"`
}

// TableName implements gorm's tabler.
func (Plugin) TableName() string { return "plugins" }

// AfterFind normalises times to UTC.
func (p *Plugin) AfterFind(*gorm.DB) error { p.CreatedAt = p.CreatedAt.UTC(); return nil }

// Intervals accepted for BatchExport.Interval.
const (
	IntervalHour       = "hour"
	IntervalDay        = "day"
	IntervalWeek       = "week"
	IntervalEvery5Min  = "every 5 minutes"
	IntervalEvery15Min = "every 15 minutes"
)

// ValidInterval reports whether s is one of the supported intervals.
func ValidInterval(s string) bool {
	switch s {
	case IntervalHour, IntervalDay, IntervalWeek, IntervalEvery5Min, IntervalEvery15Min:
		return true
	}
	return false
}

// BatchExport is a scheduled export to a destination plugin.
//
// SecretConfig is plaintext in memory only: the repository seals it (one
// AES-GCM string over its JSON) on write and opens it on read.
type BatchExport struct {
	ID       string `gorm:"column:id;primaryKey" json:"id"`
	Name     string `gorm:"column:name" json:"name"`
	PluginID string `gorm:"column:plugin_id" json:"plugin_id"`
	// PluginVersion and PluginSHA256 are the pin: the version and module hash of the
	// plugin row PluginID names, copied by CreateExport and UpdateExport in the same
	// transaction ('' only for a soft-deleted export whose plugin was gone at migration 7).
	PluginVersion   string         `gorm:"column:plugin_version" json:"plugin_version"`
	PluginSHA256    string         `gorm:"column:plugin_sha256" json:"plugin_sha256"`
	DestinationType string         `gorm:"column:destination_type" json:"destination_type"`
	Interval        string         `gorm:"column:interval" json:"interval"`
	Timezone        string         `gorm:"column:timezone" json:"timezone"`
	IntervalOffset  int            `gorm:"column:interval_offset" json:"interval_offset"` // seconds
	StartAt         *time.Time     `gorm:"column:start_at" json:"start_at,omitempty"`
	EndAt           *time.Time     `gorm:"column:end_at" json:"end_at,omitempty"`
	Paused          bool           `gorm:"column:paused" json:"paused"`
	LastPausedAt    *time.Time     `gorm:"column:last_paused_at" json:"last_paused_at,omitempty"`
	Model           string         `gorm:"column:model" json:"model"`
	Filters         string         `gorm:"column:filters" json:"filters"` // JSON text
	Config          string         `gorm:"column:config" json:"config"`   // JSON text, non-secret fields
	SecretConfig    map[string]any `gorm:"-" json:"-"`                    // plaintext, never stored as is
	SealedSecret    string         `gorm:"column:secret_config" json:"-"` // what is stored
	CreatedAt       time.Time      `gorm:"column:created_at" json:"created_at"`
	UpdatedAt       time.Time      `gorm:"column:updated_at" json:"updated_at"`
	DeletedAt       *time.Time     `gorm:"column:deleted_at" json:"deleted_at,omitempty"`
	ExportAlerts
}

// TableName implements gorm's tabler.
func (BatchExport) TableName() string { return "batch_exports" }

// AfterFind normalises times to UTC.
func (e *BatchExport) AfterFind(*gorm.DB) error {
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	e.StartAt, e.EndAt, e.LastPausedAt, e.DeletedAt = utcPtr(e.StartAt), utcPtr(e.EndAt), utcPtr(e.LastPausedAt), utcPtr(e.DeletedAt)
	return nil
}

// RunStatus is the state of a run (and of a backfill).
type RunStatus string

// Run statuses.
const (
	StatusStarting        RunStatus = "Starting"
	StatusRunning         RunStatus = "Running"
	StatusCompleted       RunStatus = "Completed"
	StatusFailed          RunStatus = "Failed"
	StatusFailedRetryable RunStatus = "FailedRetryable"
	StatusCancelled       RunStatus = "Cancelled"
)

// AllStatuses lists every status.
var AllStatuses = []RunStatus{StatusStarting, StatusRunning, StatusCompleted, StatusFailed, StatusFailedRetryable, StatusCancelled}

// Valid reports whether s is a known status.
func (s RunStatus) Valid() bool {
	for _, v := range AllStatuses {
		if s == v {
			return true
		}
	}
	return false
}

// Terminal reports whether s is final (Completed, Failed, Cancelled).
// FailedRetryable is not: the run will be attempted again.
func (s RunStatus) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Run is one export of one interval [IntervalStart, IntervalEnd).
type Run struct {
	ID            string    `gorm:"column:id;primaryKey" json:"id"`
	ExportID      string    `gorm:"column:export_id" json:"export_id"`
	IntervalStart time.Time `gorm:"column:interval_start" json:"interval_start"`
	IntervalEnd   time.Time `gorm:"column:interval_end" json:"interval_end"`
	Status        RunStatus `gorm:"column:status" json:"status"`
	Attempt       int       `gorm:"column:attempt" json:"attempt"`
	// Generation is 0 for the run's first execution and its automatic retries, and one
	// more for each deliberate re-run (a user's retry, a backfill over the interval
	// again). Only the queue job of the current generation may execute or finish the run.
	Generation       int   `gorm:"column:generation" json:"generation"`
	RecordsCompleted int64 `gorm:"column:records_completed" json:"records_completed"`
	// RecordsTotalCount is what the source held for the interval when the current
	// attempt started (source.Counter.Count); nil when not counted.
	RecordsTotalCount *int64 `gorm:"column:records_total_count" json:"records_total_count"`
	// RecordsMissing is what the missing-data check found in the source for the interval
	// beyond RecordsCompleted, as of DataCheckedAt (late data); nil when not checked.
	RecordsMissing *int64     `gorm:"column:records_missing" json:"records_missing"`
	DataCheckedAt  *time.Time `gorm:"column:data_checked_at" json:"data_checked_at,omitempty"`
	BytesExported  int64      `gorm:"column:bytes_exported" json:"bytes_exported"`
	LatestError    string     `gorm:"column:latest_error" json:"latest_error,omitempty"`
	// PluginVersion and PluginSHA256 are the module the latest attempt ran with (the
	// export's pin when the attempt started); '' before the first attempt.
	PluginVersion string     `gorm:"column:plugin_version" json:"plugin_version"`
	PluginSHA256  string     `gorm:"column:plugin_sha256" json:"plugin_sha256"`
	BackfillID    *string    `gorm:"column:backfill_id" json:"backfill_id,omitempty"`
	Checkpoint    string     `gorm:"column:checkpoint" json:"checkpoint"` // JSON text
	CreatedAt     time.Time  `gorm:"column:created_at" json:"created_at"`
	StartedAt     *time.Time `gorm:"column:started_at" json:"started_at,omitempty"`
	FinishedAt    *time.Time `gorm:"column:finished_at" json:"finished_at,omitempty"`
	UpdatedAt     time.Time  `gorm:"column:updated_at" json:"updated_at"`
}

// TableName implements gorm's tabler.
func (Run) TableName() string { return "runs" }

// AfterFind normalises times to UTC.
func (r *Run) AfterFind(*gorm.DB) error {
	r.IntervalStart, r.IntervalEnd = r.IntervalStart.UTC(), r.IntervalEnd.UTC()
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	r.StartedAt, r.FinishedAt, r.DataCheckedAt = utcPtr(r.StartedAt), utcPtr(r.FinishedAt), utcPtr(r.DataCheckedAt)
	return nil
}

// Backfill is a request to run an export over a past range.
type Backfill struct {
	ID         string     `gorm:"column:id;primaryKey" json:"id"`
	ExportID   string     `gorm:"column:export_id" json:"export_id"`
	StartAt    time.Time  `gorm:"column:start_at" json:"start_at"`
	EndAt      time.Time  `gorm:"column:end_at" json:"end_at"`
	Status     RunStatus  `gorm:"column:status" json:"status"`
	TotalRuns  int        `gorm:"column:total_runs" json:"total_runs"`
	CreatedAt  time.Time  `gorm:"column:created_at" json:"created_at"`
	UpdatedAt  time.Time  `gorm:"column:updated_at" json:"updated_at"`
	FinishedAt *time.Time `gorm:"column:finished_at" json:"finished_at,omitempty"`
	// Earliest: the request omitted start_at; StartAt is the resolved start (the first
	// matching event's interval).
	Earliest bool `gorm:"column:earliest" json:"earliest"`
	// AdjustedStartAt is the start of the backfill's first interval (nil for older rows).
	AdjustedStartAt *time.Time `gorm:"column:adjusted_start_at" json:"adjusted_start_at,omitempty"`
	// TotalRecordsCount is the source's count over the backfill's intervals, nil until
	// counted; TotalRecordsStatus says where the count is (RecordsCount*).
	TotalRecordsCount  *int64 `gorm:"column:total_records_count" json:"total_records_count"`
	TotalRecordsStatus string `gorm:"column:total_records_status" json:"total_records_status"`
}

// Backfill.TotalRecordsStatus values.
const (
	RecordsCountPending  = "pending"   // being counted
	RecordsCounted       = "counted"   // TotalRecordsCount is set
	RecordsCountTimedOut = "timed_out" // the count hit the host's cap
	RecordsCountFailed   = "failed"    // the count failed (the host log says why)
)

// ValidRecordsCountStatus reports whether s is a TotalRecordsStatus value (” included).
func ValidRecordsCountStatus(s string) bool {
	switch s {
	case "", RecordsCountPending, RecordsCounted, RecordsCountTimedOut, RecordsCountFailed:
		return true
	}
	return false
}

// TableName implements gorm's tabler.
func (Backfill) TableName() string { return "backfills" }

// AfterFind normalises times to UTC.
func (b *Backfill) AfterFind(*gorm.DB) error {
	b.StartAt, b.EndAt, b.CreatedAt, b.UpdatedAt = b.StartAt.UTC(), b.EndAt.UTC(), b.CreatedAt.UTC(), b.UpdatedAt.UTC()
	b.FinishedAt, b.AdjustedStartAt = utcPtr(b.FinishedAt), utcPtr(b.AdjustedStartAt)
	return nil
}

// LogLevel is the severity of a log line.
type LogLevel string

// Log levels, in increasing severity.
const (
	LevelDebug LogLevel = "DEBUG"
	LevelInfo  LogLevel = "INFO"
	LevelWarn  LogLevel = "WARN"
	LevelError LogLevel = "ERROR"
)

var levelRank = map[LogLevel]int{LevelDebug: 0, LevelInfo: 1, LevelWarn: 2, LevelError: 3}

// Valid reports whether l is a known level.
func (l LogLevel) Valid() bool { _, ok := levelRank[l]; return ok }

// LogEntry is one line of an export's (or a run's) log.
type LogEntry struct {
	ID       int64     `gorm:"column:id;primaryKey;autoIncrement" json:"id"`
	ExportID string    `gorm:"column:export_id" json:"export_id"`
	RunID    *string   `gorm:"column:run_id" json:"run_id,omitempty"`
	Level    LogLevel  `gorm:"column:level" json:"level"`
	Source   string    `gorm:"column:source" json:"source"` // "host", "plugin:s3", ...
	Message  string    `gorm:"column:message" json:"message"`
	Attrs    string    `gorm:"column:attrs" json:"attrs"` // JSON text
	Time     time.Time `gorm:"column:time" json:"time"`
}

// TableName implements gorm's tabler.
func (LogEntry) TableName() string { return "log_entries" }

// AfterFind normalises times to UTC.
func (l *LogEntry) AfterFind(*gorm.DB) error { l.Time = l.Time.UTC(); return nil }

// API token scopes.
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
	ScopeAdmin = "admin"
)

// APIToken is an API credential; only the SHA-256 of the token is stored.
type APIToken struct {
	ID         string     `gorm:"column:id;primaryKey" json:"id"`
	Name       string     `gorm:"column:name" json:"name"`
	TokenHash  string     `gorm:"column:token_hash" json:"-"`
	Scopes     string     `gorm:"column:scopes" json:"scopes"` // comma list: read,write,admin
	CreatedAt  time.Time  `gorm:"column:created_at" json:"created_at"`
	LastUsedAt *time.Time `gorm:"column:last_used_at" json:"last_used_at,omitempty"`
}

// TableName implements gorm's tabler.
func (APIToken) TableName() string { return "api_tokens" }

// AfterFind normalises times to UTC.
func (t *APIToken) AfterFind(*gorm.DB) error {
	t.CreatedAt, t.LastUsedAt = t.CreatedAt.UTC(), utcPtr(t.LastUsedAt)
	return nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}

// jsonText returns s if it is valid JSON, def if s is empty, else ErrInvalid.
func jsonText(field, s, def string) (string, error) {
	if s == "" {
		return def, nil
	}
	if !json.Valid([]byte(s)) {
		return "", fmt.Errorf("%w: %s is not valid JSON", ErrInvalid, field)
	}
	return s, nil
}
