// Package objectexport is the part the object-store destinations (s3, azure-blob, gcs) share:
// PostHog's file naming from a prefix template, the file_format and compression tables, the
// column selection, splitting at max_file_size_mb with a manifest, partitioning by event name,
// and the write loop over the host's object capability. It uses only the ABI (packages abi and
// sdk), like a third-party plugin: which store receives the files is the host's binding.
package objectexport

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

// File formats, as the config names them.
const (
	FormatJSONLines = "JSONLines"
	FormatParquet   = "Parquet"
)

// PartitionEvent is the partition_by value that writes one file set per event name.
const PartitionEvent = "event"

// formats maps a file_format to the host encoder's format and the key extension.
var formats = map[string]string{FormatJSONLines: "jsonl", FormatParquet: "parquet"}

// compressions lists, per file_format, the accepted compressions and their key suffixes
// (PostHog's). "none" (or empty) is no compression.
var compressions = map[string]map[string]string{
	FormatJSONLines: {"none": "", "gzip": "gz", "brotli": "br", "zstd": "zst", "lz4": "lz4", "snappy": "sz"},
	FormatParquet:   {"none": "", "zstd": "zst", "lz4": "lz4", "snappy": "sz", "gzip": "gz", "brotli": "br"},
}

// CompressionNames are the accepted compression values, for a manifest's Enum.
var CompressionNames = []string{"none", "gzip", "brotli", "zstd", "lz4", "snappy"}

// DefaultColumns are PostHog's object-store columns: the event schema without team_id,
// inserted_at named _inserted_at.
var DefaultColumns = []string{"uuid", "event", "distinct_id", "person_id", "properties",
	"person_properties", "elements_chain", "timestamp", "created_at", "_inserted_at"}

// DefaultColumnsText lists DefaultColumns for a field description.
var DefaultColumnsText = strings.Join(DefaultColumns, ", ")

// renamed maps output column names to the run's column names.
var renamed = map[string]string{"_inserted_at": "inserted_at"}

// Options are the config fields every object destination shares (PostHog's names). A
// plugin's config struct may embed it.
type Options struct {
	Prefix        string   `json:"prefix"`
	FileFormat    string   `json:"file_format"`
	Compression   string   `json:"compression"`
	MaxFileSizeMB int64    `json:"max_file_size_mb"`
	Columns       []string `json:"columns"`
	// LegacyParquetExtension keeps the codec in Parquet file names (.parquet.zst); without
	// it a Parquet file is named .parquet (it records its codec inside).
	LegacyParquetExtension bool `json:"legacy_parquet_extension"`
	// PartitionBy is "" (one file set per run) or PartitionEvent.
	PartitionBy string `json:"partition_by"`
}

// Check validates and normalises the options (empty format and compression get their
// defaults). It does not know the run's columns: EncoderSpec checks them.
func (o *Options) Check() error {
	if o.FileFormat == "" {
		o.FileFormat = FormatJSONLines
	}
	if o.Compression == "" {
		o.Compression = "none"
	}
	if _, ok := formats[o.FileFormat]; !ok {
		return sdk.FieldError("file_format", "unsupported file_format %q (want JSONLines or Parquet)", o.FileFormat)
	}
	if _, ok := compressions[o.FileFormat][o.Compression]; !ok {
		return sdk.FieldError("compression", "compression %q is not supported with %s", o.Compression, o.FileFormat)
	}
	if o.MaxFileSizeMB < 0 {
		return sdk.FieldError("max_file_size_mb", "max_file_size_mb must be 0 or more, got %d", o.MaxFileSizeMB)
	}
	switch o.PartitionBy {
	case "":
		if strings.Contains(strings.ReplaceAll(o.Prefix, "{{", ""), "{event}") {
			return sdk.FieldError("prefix", "{event} in the prefix needs partition_by: event")
		}
	case PartitionEvent:
		if !strings.Contains(strings.ReplaceAll(o.Prefix, "{{", ""), "{event}") {
			return sdk.FieldError("prefix", "partition_by: event needs {event} in the prefix (each event name gets its own file set there)")
		}
	default:
		return sdk.FieldError("partition_by", "unsupported partition_by %q (want event, or leave it empty)", o.PartitionBy)
	}
	if _, err := o.RenderPrefix(sampleStart, sampleEnd, "$pageview"); err != nil {
		return sdk.FieldError("prefix", "%v", err)
	}
	seen := map[string]bool{}
	for _, col := range o.Columns {
		if col == "" || seen[col] {
			return sdk.FieldError("columns", "empty or duplicate column %q", col)
		}
		seen[col] = true
	}
	return nil
}

// EncoderSpec is the host encoder spec for a run with the given columns.
func (o *Options) EncoderSpec(runCols []abi.Column) (abi.EncoderSpec, error) {
	spec := abi.EncoderSpec{Format: formats[o.FileFormat]}
	if o.Compression != "none" {
		spec.Compression = o.Compression
	}
	want := o.Columns
	if len(want) == 0 {
		want = DefaultColumns
	}
	for _, out := range want {
		src := out
		if r, ok := renamed[out]; ok {
			src = r
		}
		if !slices.ContainsFunc(runCols, func(rc abi.Column) bool { return rc.Name == src }) {
			if src == out { // a name the run does not carry
				return spec, sdk.FieldError("columns", "column %q is not in this export's schema", out)
			}
			return spec, sdk.FieldError("columns", "column %q (%s) is not in this export's schema", out, src)
		}
		sel := abi.ColumnSelect{Name: src}
		if src != out {
			sel.As = out
		}
		spec.Columns = append(spec.Columns, sel)
	}
	return spec, nil
}

// ---- keys ---------------------------------------------------------------------------------

var (
	sampleStart = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	sampleEnd   = sampleStart.Add(time.Hour)
)

// IsoTime formats a time like Python's datetime.isoformat() of an aware UTC datetime, as
// PostHog's keys do: 2026-11-28T12:00:00+00:00, with .ffffff only when there are
// microseconds.
func IsoTime(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 != 0 {
		return t.Format("2006-01-02T15:04:05.000000-07:00")
	}
	return t.Format("2006-01-02T15:04:05-07:00")
}

// prefixVars names the template variables, for the error message.
const prefixVars = "year, month, day, hour, minute, second, data_interval_start, data_interval_end, table, event"

// RenderPrefix renders the prefix template. Variables are PostHog's: year month day hour
// minute second (of the interval end), data_interval_start, data_interval_end, table; and
// event (the event name, escaped into one key segment) with partition_by: event. "{{" and
// "}}" are literal braces.
func RenderPrefix(tmpl string, start, end time.Time) (string, error) {
	return render(tmpl, start, end, "", false)
}

// RenderPrefix renders the options' prefix for an interval and, when partitioned, an event
// name.
func (o *Options) RenderPrefix(start, end time.Time, event string) (string, error) {
	return render(o.Prefix, start, end, event, o.PartitionBy == PartitionEvent)
}

func render(tmpl string, start, end time.Time, event string, withEvent bool) (string, error) {
	end = end.UTC()
	vars := map[string]string{
		"year": end.Format("2006"), "month": end.Format("01"), "day": end.Format("02"),
		"hour": end.Format("15"), "minute": end.Format("04"), "second": end.Format("05"),
		"data_interval_start": IsoTime(start), "data_interval_end": IsoTime(end), "table": "events",
	}
	if withEvent {
		vars["event"] = EventSegment(event)
	}
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		ch := tmpl[i]
		switch {
		case ch == '{' && i+1 < len(tmpl) && tmpl[i+1] == '{':
			b.WriteByte('{')
			i++
		case ch == '}' && i+1 < len(tmpl) && tmpl[i+1] == '}':
			b.WriteByte('}')
			i++
		case ch == '{':
			j := strings.IndexByte(tmpl[i:], '}')
			if j < 0 {
				return "", fmt.Errorf("unclosed { in prefix %q", tmpl)
			}
			name := tmpl[i+1 : i+j]
			v, ok := vars[name]
			if !ok && name == "event" {
				return "", fmt.Errorf("{event} in the prefix needs partition_by: event")
			}
			if !ok {
				if withEvent {
					return "", fmt.Errorf("unknown variable {%s} in prefix (allowed: %s)", name, prefixVars)
				}
				return "", fmt.Errorf("unknown variable {%s} in prefix (allowed: %s)", name, strings.TrimSuffix(prefixVars, ", event"))
			}
			b.WriteString(v)
			i += j
		case ch == '}':
			return "", fmt.Errorf("unmatched } in prefix %q", tmpl)
		default:
			b.WriteByte(ch)
		}
	}
	p := strings.TrimLeft(b.String(), "/")
	if p != "" {
		if err := CheckKey(strings.TrimRight(p, "/")); err != nil {
			return "", fmt.Errorf("prefix %q: %v", p, err)
		}
	}
	return p, nil
}

// EventSegment turns an event name into one key segment: URL path escaping (so "/", "%",
// "?", control characters and spaces become %XX; "$pageview" stays as is), "." and ".." as
// %2E, and the empty name as "(empty)".
func EventSegment(event string) string {
	switch event {
	case "":
		return "(empty)"
	case ".", "..":
		return strings.Repeat("%2E", len(event))
	}
	return url.PathEscape(event)
}

// CheckKey applies the host's key rules (SPEC section 6, upload_open) so a bad prefix is a
// validation error instead of a failed run.
func CheckKey(k string) error {
	if k == "" || len(k) > 1024 {
		return fmt.Errorf("key is empty or longer than 1024 bytes")
	}
	if strings.HasPrefix(k, "/") || strings.Contains(k, `\`) {
		return fmt.Errorf("key must be relative and use / separators")
	}
	for _, seg := range strings.Split(k, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("key has an empty, . or .. segment")
		}
	}
	for _, r := range k {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("key has a control character")
		}
	}
	return nil
}

// JoinKey joins the rendered prefix and a file name like Python's posixpath.join.
func JoinKey(prefix, name string) string {
	if prefix == "" || strings.HasSuffix(prefix, "/") {
		return prefix + name
	}
	return prefix + "/" + name
}

// FileKey is the key of data file n (n < 0: no split suffix) under a rendered prefix.
func (o *Options) FileKey(prefix string, start, end time.Time, n int) string {
	name := IsoTime(start) + "-" + IsoTime(end)
	if n >= 0 {
		name += fmt.Sprintf("-%d", n)
	}
	name += "." + formats[o.FileFormat]
	if ext := compressions[o.FileFormat][o.Compression]; ext != "" && (o.FileFormat != FormatParquet || o.LegacyParquetExtension) {
		name += "." + ext
	}
	return JoinKey(prefix, name)
}

// ManifestKey is the key of the split manifest under a rendered prefix.
func ManifestKey(prefix string, start, end time.Time) string {
	return JoinKey(prefix, IsoTime(start)+"-"+IsoTime(end)+"_manifest.json")
}

// ContentType is the media type of a file_format's files.
func ContentType(fileFormat string) string {
	if fileFormat == FormatParquet {
		return "application/vnd.apache.parquet"
	}
	return "application/jsonl"
}
