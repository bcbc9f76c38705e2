package sffake

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// decompress undoes the stream compression of a staged file, detected by its magic bytes
// (gzip, zstd), as COMPRESSION = AUTO does.
func decompress(b []byte) ([]byte, error) {
	switch {
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return io.ReadAll(zr)
	case len(b) >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd:
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return io.ReadAll(zr)
	}
	return b, nil
}

// DecodeFile decodes a staged file as COPY reads it: JSON Lines (optionally gzip or zstd
// compressed) or Parquet, one map per record. JSON numbers are json.Number; Parquet
// timestamps time.Time (UTC), UUID columns canonical text, strings text.
func DecodeFile(format string, b []byte) ([]map[string]any, error) { return decodeFile(format, b) }

func decodeFile(format string, b []byte) ([]map[string]any, error) {
	if format == "PARQUET" {
		return decodeParquet(b)
	}
	raw, err := decompress(b)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var v any
		if err := decodeJSON(line, &v); err != nil {
			return nil, err
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, errors.New("a JSON record is not an object")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

func decodeJSON(b []byte, v *any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after a JSON value")
	}
	return nil
}

type pqCol struct {
	name string
	kind string // string, bytes, uuid, int, float, bool, timestamp
	unit time.Duration
}

func decodeParquet(b []byte) ([]map[string]any, error) {
	f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	var cols []pqCol
	for _, fl := range f.Schema().Fields() {
		if !fl.Leaf() {
			return nil, fmt.Errorf("nested column %s is not supported by sffake", fl.Name())
		}
		c := pqCol{name: fl.Name()}
		var ltv format.LogicalTypeValue
		if lt := fl.Type().LogicalType(); lt != nil {
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
		case parquet.FixedLenByteArray:
			c.kind = "bytes"
			if _, ok := ltv.(*format.UUIDType); ok {
				c.kind = "uuid"
			}
		default:
			c.kind = "bytes"
		}
		cols = append(cols, c)
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
						m[c.name] = nil
						continue
					}
					switch c.kind {
					case "bool":
						m[c.name] = v.Boolean()
					case "int":
						if v.Kind() == parquet.Int32 {
							m[c.name] = json.Number(strconv.FormatInt(int64(v.Int32()), 10))
						} else {
							m[c.name] = json.Number(strconv.FormatInt(v.Int64(), 10))
						}
					case "timestamp":
						m[c.name] = time.Unix(0, 0).Add(time.Duration(v.Int64()) * c.unit).UTC()
					case "float":
						x := v.Double()
						if v.Kind() == parquet.Float {
							x = float64(v.Float())
						}
						m[c.name] = json.Number(strconv.FormatFloat(x, 'g', -1, 64))
					case "string":
						m[c.name] = string(v.ByteArray())
					case "uuid":
						h := hex.EncodeToString(v.ByteArray())
						if len(h) == 32 {
							h = h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
						}
						m[c.name] = h
					default:
						m[c.name] = hex.EncodeToString(v.ByteArray())
					}
				}
				out = append(out, m)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				rows.Close()
				return nil, err
			}
		}
		rows.Close()
	}
	return out, nil
}

// toText renders a value as Snowflake casts a VARIANT to VARCHAR: strings unquoted, other
// values as JSON.
func toText(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return x
	case json.Number:
		return x.String()
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04:05.000000")
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// coerce converts a value into a column type class (see baseType).
func coerce(v any, typ string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch typ {
	case "VARCHAR":
		return toText(v), nil
	case "VARIANT":
		if t, ok := v.(time.Time); ok {
			return t.UTC().Format("2006-01-02 15:04:05.000000"), nil
		}
		return v, nil
	case "NUMBER":
		var s string
		switch x := v.(type) {
		case json.Number:
			s = x.String()
		case string:
			s = strings.TrimSpace(x)
		case bool:
			if x {
				return int64(1), nil
			}
			return int64(0), nil
		default:
			return nil, fmt.Errorf("Numeric value '%v' is not recognized", toText(v))
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("Numeric value '%s' is not recognized", s)
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<62 {
			return int64(f), nil
		}
		return f, nil
	case "FLOAT":
		s := fmt.Sprint(toText(v))
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("Numeric value '%s' is not recognized", s)
		}
		return f, nil
	case "BOOLEAN":
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			if b, err := strconv.ParseBool(x); err == nil {
				return b, nil
			}
		}
		return nil, fmt.Errorf("Boolean value '%v' is not recognized", toText(v))
	case "TIMESTAMP":
		switch x := v.(type) {
		case time.Time:
			return x.UTC(), nil
		case string:
			for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02"} {
				if t, err := time.Parse(layout, x); err == nil {
					return t.UTC(), nil
				}
			}
			return nil, fmt.Errorf("Timestamp '%s' is not recognized", x)
		case json.Number:
			n, err := x.Int64()
			if err != nil {
				return nil, fmt.Errorf("Timestamp '%s' is not recognized", x)
			}
			return time.Unix(n, 0).UTC(), nil
		}
		return nil, fmt.Errorf("Timestamp '%v' is not recognized", toText(v))
	}
	return v, nil
}
