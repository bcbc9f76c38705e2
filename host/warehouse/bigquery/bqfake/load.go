package bqfake

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	bq "google.golang.org/api/bigquery/v2"
)

// runLoad executes a load job on media. Called with s.mu held.
func (s *Server) runLoad(project string, cfg *bq.JobConfigurationLoad, media []byte) (int64, *Fault) {
	dst := cfg.DestinationTable
	if dst == nil {
		return 0, &Fault{Reason: "invalid", Message: "Load configuration must specify destination table"}
	}
	p := dst.ProjectId
	if p == "" {
		p = project
	}
	d := s.datasets[p+":"+dst.DatasetId]
	if d == nil {
		return 0, &Fault{Reason: "notFound", Message: "Not found: Dataset " + p + ":" + dst.DatasetId}
	}
	format := cfg.SourceFormat
	if format == "" {
		format = "CSV"
	}
	var (
		inRows   []map[string]any
		inSchema []*bq.TableFieldSchema
		f        *Fault
	)
	switch format {
	case "NEWLINE_DELIMITED_JSON":
		inRows, f = decodeNDJSON(media)
	case "PARQUET":
		inRows, inSchema, f = decodeParquet(media)
	default:
		return 0, &Fault{Reason: "invalid", Message: "bqfake: unsupported source format " + format}
	}
	if f != nil {
		return 0, f
	}
	t := d.tables[dst.TableId]
	if t == nil {
		if cfg.CreateDisposition == "CREATE_NEVER" {
			return 0, &Fault{Reason: "notFound", Message: "Not found: Table " + p + ":" + dst.DatasetId + "." + dst.TableId}
		}
		schema := cfg.Schema
		if schema == nil && inSchema != nil {
			schema = &bq.TableSchema{Fields: inSchema}
		}
		if schema == nil {
			return 0, &Fault{Reason: "invalid", Message: "No schema specified on job or table."}
		}
		if t, f = s.createTable(d, p, dst.DatasetId, dst.TableId, schema, cfg.TimePartitioning); f != nil {
			return 0, f
		}
	} else if cfg.Schema != nil {
		if f := compatible(t, cfg.Schema.Fields, cfg.SchemaUpdateOptions); f != nil {
			return 0, f
		}
	}
	fields := map[string]*bq.TableFieldSchema{}
	for _, fl := range t.Meta.Schema.Fields {
		fields[strings.ToLower(fl.Name)] = fl
	}
	rows := make([]Row, 0, len(inRows))
	for i, in := range inRows {
		row := Row{}
		for k, v := range in {
			fl := fields[strings.ToLower(k)]
			if fl == nil {
				if cfg.IgnoreUnknownValues {
					continue
				}
				return 0, &Fault{Reason: "invalid", Message: fmt.Sprintf("Error while reading data, error message: row %d: No such field: %s.", i, k)}
			}
			cv, err := convert(fl, v)
			if err != nil {
				return 0, &Fault{Reason: "invalid", Message: fmt.Sprintf("Error while reading data, error message: row %d: %v. Field: %s", i, err, fl.Name)}
			}
			row[fl.Name] = cv
		}
		for _, fl := range t.Meta.Schema.Fields {
			if _, ok := row[fl.Name]; !ok || row[fl.Name] == nil {
				if fl.Mode == "REQUIRED" {
					return 0, &Fault{Reason: "invalid", Message: fmt.Sprintf("Error while reading data, error message: row %d: Missing required field: %s.", i, fl.Name)}
				}
				row[fl.Name] = nil
			}
		}
		rows = append(rows, row)
	}
	switch cfg.WriteDisposition {
	case "WRITE_TRUNCATE":
		t.Rows = rows
	case "WRITE_EMPTY":
		if len(t.Rows) > 0 {
			return 0, &Fault{Reason: "duplicate", Message: "Already Exists: Table " + t.Meta.Id + " is not empty"}
		}
		t.Rows = rows
	default:
		t.Rows = append(t.Rows, rows...)
	}
	t.Meta.NumRows = uint64(len(t.Rows))
	return int64(len(rows)), nil
}

// compatible checks a load schema against an existing table.
func compatible(t *Table, fields []*bq.TableFieldSchema, updates []string) *Fault {
	have := map[string]*bq.TableFieldSchema{}
	for _, f := range t.Meta.Schema.Fields {
		have[strings.ToLower(f.Name)] = f
	}
	allowAdd := false
	for _, u := range updates {
		allowAdd = allowAdd || u == "ALLOW_FIELD_ADDITION"
	}
	for _, f := range fields {
		h := have[strings.ToLower(f.Name)]
		switch {
		case h == nil && !allowAdd:
			return &Fault{Reason: "invalid", Message: "Provided Schema does not match Table " + t.Meta.Id + ". Cannot add fields (field: " + f.Name + ")"}
		case h == nil:
			t.Meta.Schema.Fields = append(t.Meta.Schema.Fields, f)
		case normType(h.Type) != normType(f.Type):
			return &Fault{Reason: "invalid", Message: "Provided Schema does not match Table " + t.Meta.Id + ". Field " + f.Name + " has changed type from " + h.Type + " to " + f.Type}
		}
	}
	return nil
}

func normType(t string) string {
	switch t {
	case "INT64":
		return "INTEGER"
	case "FLOAT64":
		return "FLOAT"
	case "BOOL":
		return "BOOLEAN"
	}
	return t
}

// ---- NDJSON ------------------------------------------------------------------------------------

func decodeNDJSON(b []byte) ([]map[string]any, *Fault) {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 100<<20)
	pos := 0
	for sc.Scan() {
		line := sc.Bytes()
		start := pos
		pos += len(line) + 1
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, &Fault{Reason: "invalid", Message: fmt.Sprintf("Error while reading data, error message: JSON parsing error in row starting at position %d: %v", start, err)}
		}
		for k, v := range m {
			m[k] = jsonSource{v}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, &Fault{Reason: "invalid", Message: "Error while reading data: " + err.Error()}
	}
	return out, nil
}

// jsonSource marks a value decoded from NDJSON (json.Number, string, bool, map, slice, nil).
type jsonSource struct{ v any }

// parquetSource is a value decoded from Parquet.
type parquetSource struct {
	v    any // string, []byte, int64, float64, bool, time.Time
	kind string
}

// convert coerces a source value into the stored value of a column, as BigQuery's loader
// would accept it.
func convert(f *bq.TableFieldSchema, src any) (any, error) {
	switch sv := src.(type) {
	case jsonSource:
		return convertJSON(f, sv.v)
	case parquetSource:
		return convertParquet(f, sv)
	}
	return nil, fmt.Errorf("unknown source value %T", src)
}

func convertJSON(f *bq.TableFieldSchema, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	typ := normType(f.Type)
	switch typ {
	case "JSON":
		b, err := json.Marshal(v)
		return string(b), err
	case "STRING", "DATE", "DATETIME", "NUMERIC":
		switch x := v.(type) {
		case string:
			return x, nil
		case json.Number:
			return x.String(), nil
		}
		return nil, fmt.Errorf("Could not convert value to string")
	case "BYTES":
		x, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("Could not convert value to bytes")
		}
		return base64.StdEncoding.DecodeString(x)
	case "INTEGER":
		switch x := v.(type) {
		case json.Number:
			return strconv.ParseInt(x.String(), 10, 64)
		case string:
			return strconv.ParseInt(x, 10, 64)
		}
		return nil, fmt.Errorf("Could not convert value to integer")
	case "FLOAT":
		switch x := v.(type) {
		case json.Number:
			return x.Float64()
		case string:
			return strconv.ParseFloat(x, 64)
		}
		return nil, fmt.Errorf("Could not convert value to double")
	case "BOOLEAN":
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			return strconv.ParseBool(x)
		}
		return nil, fmt.Errorf("Could not convert value to boolean")
	case "TIMESTAMP":
		switch x := v.(type) {
		case string:
			return parseTimestamp(x)
		case json.Number:
			sec, err := x.Float64()
			if err != nil {
				return nil, err
			}
			return time.UnixMicro(int64(sec * 1e6)).UTC(), nil
		}
		return nil, fmt.Errorf("Could not convert value to timestamp")
	}
	return nil, fmt.Errorf("unsupported column type %s", f.Type)
}

var timestampLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999 MST", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"}

func parseTimestamp(s string) (time.Time, error) {
	for _, l := range timestampLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("Invalid timestamp: '%s'", s)
}

// ---- Parquet -------------------------------------------------------------------------------------

type pqCol struct {
	name string
	kind string // string, bytes, int, float, bool, timestamp
	unit time.Duration
}

func decodeParquet(b []byte) ([]map[string]any, []*bq.TableFieldSchema, *Fault) {
	bad := func(err error) *Fault {
		return &Fault{Reason: "invalid", Message: "Error while reading data, error message: Failed to read Parquet file: " + err.Error()}
	}
	f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, nil, bad(err)
	}
	var cols []pqCol
	var schema []*bq.TableFieldSchema
	for _, fl := range f.Schema().Fields() {
		if !fl.Leaf() {
			return nil, nil, bad(fmt.Errorf("nested column %s is not supported by bqfake", fl.Name()))
		}
		c := pqCol{name: fl.Name()}
		lt := fl.Type().LogicalType()
		var ltv format.LogicalTypeValue
		if lt != nil {
			ltv = lt.Value
		}
		switch fl.Type().Kind() {
		case parquet.Boolean:
			c.kind = "bool"
		case parquet.Int32, parquet.Int64:
			c.kind = "int"
			if ts, ok := ltv.(*format.TimestampType); ok {
				c.kind, c.unit = "timestamp", ts.Unit.Value.Duration()
			}
		case parquet.Float, parquet.Double:
			c.kind = "float"
		case parquet.ByteArray:
			c.kind = "bytes"
			switch ltv.(type) {
			case *format.StringType, *format.JsonType, *format.EnumType:
				c.kind = "string"
			}
		default:
			c.kind = "bytes"
		}
		cols = append(cols, c)
		bqType := map[string]string{"bool": "BOOLEAN", "int": "INTEGER", "timestamp": "TIMESTAMP", "float": "FLOAT",
			"string": "STRING", "bytes": "BYTES"}[c.kind]
		mode := "NULLABLE"
		if fl.Required() {
			mode = "REQUIRED"
		}
		schema = append(schema, &bq.TableFieldSchema{Name: c.name, Type: bqType, Mode: mode})
	}
	var out []map[string]any
	for _, rg := range f.RowGroups() {
		rows := rg.Rows()
		buf := make([]parquet.Row, 64)
		for {
			n, err := rows.ReadRows(buf)
			for _, row := range buf[:n] {
				m := map[string]any{}
				for _, v := range row {
					ci := v.Column()
					if ci < 0 || ci >= len(cols) {
						continue
					}
					c := cols[ci]
					if v.IsNull() {
						m[c.name] = parquetSource{nil, c.kind}
						continue
					}
					var x any
					switch c.kind {
					case "bool":
						x = v.Boolean()
					case "int":
						if v.Kind() == parquet.Int32 {
							x = int64(v.Int32())
						} else {
							x = v.Int64()
						}
					case "timestamp":
						x = time.Unix(0, 0).Add(time.Duration(v.Int64()) * c.unit).UTC()
					case "float":
						if v.Kind() == parquet.Float {
							x = float64(v.Float())
						} else {
							x = v.Double()
						}
					case "string":
						x = string(v.ByteArray())
					default:
						x = bytes.Clone(v.ByteArray())
					}
					m[c.name] = parquetSource{x, c.kind}
				}
				out = append(out, m)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				rows.Close()
				return nil, nil, bad(err)
			}
		}
		rows.Close()
	}
	return out, schema, nil
}

func convertParquet(f *bq.TableFieldSchema, sv parquetSource) (any, error) {
	if sv.v == nil {
		return nil, nil
	}
	typ := normType(f.Type)
	mismatch := func() error {
		return fmt.Errorf("Provided schema type %s is incompatible with the Parquet column type %s", typ, sv.kind)
	}
	switch typ {
	case "STRING", "DATE", "DATETIME", "NUMERIC":
		if sv.kind != "string" {
			return nil, mismatch()
		}
		return sv.v, nil
	case "JSON":
		if sv.kind != "string" {
			return nil, mismatch()
		}
		if !json.Valid([]byte(sv.v.(string))) {
			return nil, fmt.Errorf("Invalid JSON value")
		}
		return sv.v, nil
	case "BYTES":
		switch x := sv.v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
		return nil, mismatch()
	case "INTEGER":
		if sv.kind != "int" {
			return nil, mismatch()
		}
		return sv.v, nil
	case "FLOAT":
		if sv.kind == "int" {
			return float64(sv.v.(int64)), nil
		}
		if sv.kind != "float" {
			return nil, mismatch()
		}
		return sv.v, nil
	case "BOOLEAN":
		if sv.kind != "bool" {
			return nil, mismatch()
		}
		return sv.v, nil
	case "TIMESTAMP":
		if sv.kind != "timestamp" {
			return nil, mismatch()
		}
		return sv.v, nil
	}
	return nil, mismatch()
}
