package main

import (
	"fmt"
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

// formats maps a file_format to the host encoder's format and the key extension.
var formats = map[string]string{FormatJSONLines: "jsonl", FormatParquet: "parquet"}

// compressions lists, per file_format, the accepted compressions and their key suffixes
// (PostHog's). "none" (or empty) is no compression.
var compressions = map[string]map[string]string{
	FormatJSONLines: {"none": "", "gzip": "gz", "brotli": "br", "zstd": "zst", "lz4": "lz4", "snappy": "sz"},
	FormatParquet:   {"none": "", "zstd": "zst", "lz4": "lz4", "snappy": "sz", "gzip": "gz", "brotli": "br"},
}

// defaultColumns are PostHog's S3 columns: the event schema without team_id, inserted_at
// named _inserted_at.
var defaultColumns = []string{"uuid", "event", "distinct_id", "person_id", "properties",
	"person_properties", "elements_chain", "timestamp", "created_at", "_inserted_at"}

const defaultColumnsText = "uuid, event, distinct_id, person_id, properties, person_properties, " +
	"elements_chain, timestamp, created_at, _inserted_at"

// renamed maps output column names to the run's column names.
var renamed = map[string]string{"_inserted_at": "inserted_at"}

type config struct {
	BucketName    string   `json:"bucket_name"`
	Region        string   `json:"region"`
	Prefix        string   `json:"prefix"`
	FileFormat    string   `json:"file_format"`
	Compression   string   `json:"compression"`
	MaxFileSizeMB int64    `json:"max_file_size_mb"`
	Encryption    string   `json:"encryption"`
	KMSKeyID      string   `json:"kms_key_id"`
	EndpointURL   string   `json:"endpoint_url"`
	Columns       []string `json:"columns"`
}

// check validates a decoded config. It does not know the run's columns: Open checks them.
func (c *config) check() error {
	if c.FileFormat == "" {
		c.FileFormat = FormatJSONLines
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	if _, ok := formats[c.FileFormat]; !ok {
		return sdk.FieldError("file_format", "unsupported file_format %q (want JSONLines or Parquet)", c.FileFormat)
	}
	if _, ok := compressions[c.FileFormat][c.Compression]; !ok {
		return sdk.FieldError("compression", "compression %q is not supported with %s", c.Compression, c.FileFormat)
	}
	if c.MaxFileSizeMB < 0 {
		return sdk.FieldError("max_file_size_mb", "max_file_size_mb must be 0 or more, got %d", c.MaxFileSizeMB)
	}
	if c.KMSKeyID != "" && c.Encryption != "aws:kms" {
		return sdk.FieldError("kms_key_id", "kms_key_id needs encryption aws:kms")
	}
	if _, err := renderPrefix(c.Prefix, sampleStart, sampleEnd); err != nil {
		return sdk.FieldError("prefix", "%v", err)
	}
	seen := map[string]bool{}
	for _, col := range c.Columns {
		if col == "" || seen[col] {
			return sdk.FieldError("columns", "empty or duplicate column %q", col)
		}
		seen[col] = true
	}
	return nil
}

// encoderSpec is the host encoder spec for a run with the given columns.
func (c *config) encoderSpec(runCols []abi.Column) (abi.EncoderSpec, error) {
	spec := abi.EncoderSpec{Format: formats[c.FileFormat]}
	if c.Compression != "none" {
		spec.Compression = c.Compression
	}
	want := c.Columns
	if len(want) == 0 {
		want = defaultColumns
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

// isoTime formats a time like Python's datetime.isoformat() of an aware UTC datetime, as
// PostHog's keys do: 2026-11-28T12:00:00+00:00, with .ffffff only when there are
// microseconds.
func isoTime(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 != 0 {
		return t.Format("2006-01-02T15:04:05.000000-07:00")
	}
	return t.Format("2006-01-02T15:04:05-07:00")
}

// renderPrefix renders the prefix template. Variables are PostHog's: year month day hour
// minute second (of the interval end), data_interval_start, data_interval_end, table.
// "{{" and "}}" are literal braces.
func renderPrefix(tmpl string, start, end time.Time) (string, error) {
	end = end.UTC()
	vars := map[string]string{
		"year": end.Format("2006"), "month": end.Format("01"), "day": end.Format("02"),
		"hour": end.Format("15"), "minute": end.Format("04"), "second": end.Format("05"),
		"data_interval_start": isoTime(start), "data_interval_end": isoTime(end), "table": "events",
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
			if !ok {
				return "", fmt.Errorf("unknown variable {%s} in prefix (allowed: year, month, day, hour, minute, second, data_interval_start, data_interval_end, table)", name)
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
		if err := checkKey(strings.TrimRight(p, "/")); err != nil {
			return "", fmt.Errorf("prefix %q: %v", p, err)
		}
	}
	return p, nil
}

// checkKey applies the host's key rules (SPEC section 6, upload_open) so a bad prefix is a
// validation error instead of a failed run.
func checkKey(k string) error {
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

// joinKey joins the rendered prefix and a file name like Python's posixpath.join.
func joinKey(prefix, name string) string {
	if prefix == "" || strings.HasSuffix(prefix, "/") {
		return prefix + name
	}
	return prefix + "/" + name
}

// fileKey is the key of data file n (n < 0: no split suffix).
func (c *config) fileKey(prefix string, start, end time.Time, n int) string {
	name := isoTime(start) + "-" + isoTime(end)
	if n >= 0 {
		name += fmt.Sprintf("-%d", n)
	}
	name += "." + formats[c.FileFormat]
	if ext := compressions[c.FileFormat][c.Compression]; ext != "" {
		name += "." + ext
	}
	return joinKey(prefix, name)
}

// manifestKey is the key of the split manifest.
func manifestKey(prefix string, start, end time.Time) string {
	return joinKey(prefix, isoTime(start)+"-"+isoTime(end)+"_manifest.json")
}

func contentType(fileFormat string) string {
	if fileFormat == FormatParquet {
		return "application/vnd.apache.parquet"
	}
	return "application/jsonl"
}
