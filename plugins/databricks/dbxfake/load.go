package dbxfake

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// value is one Parquet value as read, with its physical/logical kind.
type value struct {
	kind string // string, int64, timestamp, double, bool, bytes
	v    any    // string, int64, time.Time, float64, bool, []byte; nil for NULL
}

// errIllegalUUID: Spark's Parquet reader, and so Databricks', refuses the UUID logical type
// (FIXED_LEN_BYTE_ARRAY(16) UUID): [PARQUET_TYPE_ILLEGAL], apache/spark#55684.
var errIllegalUUID = errors.New("Illegal Parquet type: FIXED_LEN_BYTE_ARRAY (UUID). SQLSTATE: 42846")

// as converts the value for a column of type typ, as Databricks' COPY INTO does.
func (x value) as(typ string) (any, string) {
	if x.v == nil {
		return nil, ""
	}
	switch {
	case typ == "STRING" && x.kind == "string":
		return x.v, ""
	case typ == "BIGINT" && x.kind == "int64", typ == "TIMESTAMP" && x.kind == "timestamp",
		typ == "DOUBLE" && x.kind == "double", typ == "BOOLEAN" && x.kind == "bool":
		return x.v, ""
	}
	return nil, fmt.Sprintf("a Parquet %s cannot be loaded into a %s column", x.kind, typ)
}

// decodeParquet reads a flat Parquet file into rows by column name.
func decodeParquet(b []byte) ([]map[string]value, error) {
	f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	fields := f.Schema().Fields()
	kinds := make([]string, len(fields))
	for i, fl := range fields {
		if !fl.Leaf() {
			return nil, fmt.Errorf("nested column %s", fl.Name())
		}
		var lt format.LogicalTypeValue
		if l := fl.Type().LogicalType(); l != nil {
			lt = l.Value
		}
		switch fl.Type().Kind() {
		case parquet.Boolean:
			kinds[i] = "bool"
		case parquet.Int64:
			kinds[i] = "int64"
			if ts, ok := lt.(*format.TimestampType); ok {
				if _, micros := ts.Unit.Value.(*format.MicroSeconds); !micros {
					return nil, fmt.Errorf("column %s: only microsecond timestamps are supported by dbxfake", fl.Name())
				}
				kinds[i] = "timestamp"
			}
		case parquet.Double:
			kinds[i] = "double"
		case parquet.ByteArray:
			kinds[i] = "bytes"
			if _, ok := lt.(*format.StringType); ok {
				kinds[i] = "string"
			}
		case parquet.FixedLenByteArray:
			kinds[i] = "bytes"
			if _, ok := lt.(*format.UUIDType); ok {
				return nil, errIllegalUUID
			}
		default:
			return nil, fmt.Errorf("column %s: Parquet type %s is not supported by dbxfake", fl.Name(), fl.Type())
		}
	}
	var out []map[string]value
	buf := make([]parquet.Row, 128)
	for _, rg := range f.RowGroups() {
		rows := rg.Rows()
		for {
			n, err := rows.ReadRows(buf)
			for _, row := range buf[:n] {
				m := make(map[string]value, len(fields))
				for _, pv := range row {
					ci := pv.Column()
					if ci < 0 || ci >= len(fields) {
						continue
					}
					x := value{kind: kinds[ci]}
					if !pv.IsNull() {
						x.v = convert(kinds[ci], pv)
					}
					m[fields[ci].Name()] = x
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

func convert(kind string, pv parquet.Value) any {
	switch kind {
	case "bool":
		return pv.Boolean()
	case "int64":
		return pv.Int64()
	case "timestamp":
		return time.UnixMicro(pv.Int64()).UTC()
	case "double":
		return pv.Double()
	case "string":
		return string(pv.ByteArray())
	}
	return append([]byte(nil), pv.ByteArray()...)
}
