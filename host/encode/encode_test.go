package encode

import (
	"bufio"
	"bytes"
	stdgzip "compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/andybalholm/brotli"
	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/pierrec/lz4/v4"

	"github.com/sluicehq/sluice/abi"
)

// testColumns are the standard event columns plus extra ones of every other kind.
var testColumns = append(append([]abi.Column{}, abi.EventColumns...),
	abi.Column{Name: "score", Kind: abi.KindFloat64},
	abi.Column{Name: "is_bot", Kind: abi.KindBool},
	abi.Column{Name: "session_n", Kind: abi.KindInt64, Nullable: true},
	abi.Column{Name: "note", Kind: abi.KindString, Nullable: true},
	abi.Column{Name: "raw", Kind: abi.KindJSON, Nullable: true},
	abi.Column{Name: "flag", Kind: abi.KindBool, Nullable: true},
	abi.Column{Name: "ratio", Kind: abi.KindFloat64, Nullable: true},
)

// row is one source row, owning its bytes.
type row []abi.Value

var tricky = []string{
	"",
	"plain",
	`quote " and backslash \ and slash /`,
	"line\nbreak\r\nand\ttab",
	"control \x00\x01\x07\x1b\x1f\x7f end",
	"unicode café 日本語 🚀 \u2028 \u2029 end",
	"invalid utf8 \xff\xfe \xc3 end",
	"comma, semicolon; \"quoted\", 'single'",
	" leading and trailing space ",
	`<html> & "entities"`,
}

var trickyJSON = []string{
	`{"$browser":"Chrome","$current_url":"https://example.com/a?b=c&d=\"e\"","n":12.5e-3,"ok":true,"nil":null,"arr":[1,"two",{"3":[]}],"u":"caf\u00e9 日本 🚀"}`,
	`{}`,
	`[]`,
	`"just a string"`,
	`42`,
	"{\n  \"pretty\": [1, 2],\r\n  \"x\": \"line\\nbreak\"\n}",
	`{"raw_ls":"a` + "\u2028" + `b"}`,
	`not json {`,
	``,
	`{"a":1}{"b":2}`,
	"{\"bad\":\"\xff\"}",
	`{"a":01}`,
	`{"a":"\x"}`,
	`   {"padded": true}   `,
}

func uuidOf(r *rand.Rand) []byte {
	u := make([]byte, 16)
	for i := range u {
		u[i] = byte(r.UintN(256))
	}
	return u
}

var timestamps = []int64{
	time.Date(2026, 11, 28, 12, 0, 0, 123456000, time.UTC).UnixMicro(),
	0,
	-1,                          // 1969-12-31T23:59:59.999999Z
	-86400*1000000*365 - 123457, // 1969, fractional
	time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro(),
	time.Date(2000, 2, 29, 23, 59, 59, 999999000, time.UTC).UnixMicro(),
	time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro(),
}

// makeRows builds n rows; the first rows walk through the tricky values.
func makeRows(r *rand.Rand, n int, bigProps bool) []row {
	rows := make([]row, n)
	for i := range rows {
		v := make(row, len(testColumns))
		s := func(j int) []byte { return []byte(tricky[(i+j)%len(tricky)]) }
		v[0] = abi.Value{Bytes: uuidOf(r)}
		v[1] = abi.Value{Bytes: s(0)}
		v[2] = abi.Value{Bytes: s(3)}
		if i%3 == 0 {
			v[3] = abi.Value{Null: true}
		} else {
			v[3] = abi.Value{Bytes: uuidOf(r)}
		}
		v[4] = abi.Value{Int: int64(r.Uint64())}
		props := trickyJSON[i%len(trickyJSON)]
		if i%5 == 4 {
			props = fmt.Sprintf(`{"event":%q,"distinct_id":%q,"i":%d}`, tricky[i%len(tricky)], tricky[(i+1)%len(tricky)], i)
		}
		if bigProps && i == n/2 {
			props = `{"big":"` + strings.Repeat("x\\n\\\"é", 1<<20/6) + `","after":1}`
		}
		v[5] = abi.Value{Bytes: []byte(props)}
		if i%4 == 1 {
			v[6] = abi.Value{Null: true}
		} else {
			v[6] = abi.Value{Bytes: []byte(trickyJSON[(i+3)%len(trickyJSON)])}
		}
		v[7] = abi.Value{Bytes: s(5)}
		v[8] = abi.Value{Int: timestamps[i%len(timestamps)]}
		if i%2 == 0 {
			v[9] = abi.Value{Null: true}
		} else {
			v[9] = abi.Value{Int: timestamps[(i+2)%len(timestamps)] + int64(r.IntN(1e6))}
		}
		v[10] = abi.Value{Int: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() + int64(r.IntN(1e12))}
		floats := []float64{0, -0.5, 1e21, 1.5e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1)}
		v[11] = abi.Value{Float: floats[i%len(floats)]}
		v[12] = abi.Value{Int: int64(i % 2)}
		if i%3 == 2 {
			v[13] = abi.Value{Null: true}
		} else {
			v[13] = abi.Value{Int: int64(i) - 50}
		}
		if i%3 == 1 {
			v[14] = abi.Value{Null: true}
		} else {
			v[14] = abi.Value{Bytes: s(7)}
		}
		if i%2 == 1 {
			v[15] = abi.Value{Null: true}
		} else {
			v[15] = abi.Value{Bytes: []byte(trickyJSON[(i+5)%len(trickyJSON)])}
		}
		switch i % 3 {
		case 0:
			v[16] = abi.Value{Null: true}
		default:
			v[16] = abi.Value{Int: int64(i % 2)}
		}
		if i%4 == 0 {
			v[17] = abi.Value{Null: true}
		} else {
			v[17] = abi.Value{Float: float64(i) / 7}
		}
		rows[i] = v
	}
	return rows
}

// encodeBatches writes rows as SLB1 batches of batchSize through one reused BatchWriter (so
// an encoder that kept references into a batch would see them overwritten).
func encodeBatches(t testing.TB, enc *Encoder, cols []abi.Column, rows []row, batchSize int) {
	t.Helper()
	bw := abi.NewBatchWriter(cols, nil)
	for start := 0; start < len(rows); start += batchSize {
		bw.Reset()
		end := min(start+batchSize, len(rows))
		for _, r := range rows[start:end] {
			for _, v := range r {
				bw.AppendValue(v)
			}
			bw.EndRow()
		}
		n, err := enc.WriteBatch(bw.Bytes())
		if err != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
		if n != end-start {
			t.Fatalf("WriteBatch records = %d, want %d", n, end-start)
		}
		// scribble over the batch buffer
		b := bw.Bytes()
		for i := range b {
			b[i] = 0xAA
		}
	}
}

func decompress(t testing.TB, compression string, data []byte) []byte {
	t.Helper()
	var r io.Reader
	var err error
	src := bytes.NewReader(data)
	switch compression {
	case "":
		return data
	case "gzip":
		r, err = stdgzip.NewReader(src)
	case "zstd":
		var d *zstd.Decoder
		d, err = zstd.NewReader(src)
		if err == nil {
			defer d.Close()
			r = d
		}
	case "brotli":
		r = brotli.NewReader(src)
	case "snappy":
		r = snappy.NewReader(src)
	case "lz4":
		r = lz4.NewReader(src)
	}
	if err != nil {
		t.Fatalf("%s reader: %v", compression, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s decompress: %v", compression, err)
	}
	return out
}

// expectations shared by the decoders

func wantUUID(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func wantTime(micros int64) string {
	return time.UnixMicro(micros).UTC().Format("2006-01-02T15:04:05.000000Z07:00")
}

// validUTF8 replaces each invalid byte with U+FFFD, as JSON encoders do.
func validUTF8(b []byte) string { return string([]rune(string(b))) }

// embeddable is whether json-kind text is emitted as nested JSON.
func embeddable(b []byte) bool { return utf8.Valid(b) && json.Valid(b) }

type cell struct {
	key string
	raw json.RawMessage
}

func jsonLine(t *testing.T, line []byte) []cell {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		t.Fatalf("line does not open an object: %v %v: %.200q", tok, err, line)
	}
	var cells []cell
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		cells = append(cells, cell{k.(string), raw})
	}
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Fatal("trailing data on line")
	}
	return cells
}

func checkJSONCell(t *testing.T, where string, c abi.Column, v abi.Value, raw json.RawMessage) {
	t.Helper()
	if bytes.ContainsAny(raw, "\n\r") {
		t.Fatalf("%s: raw newline in value", where)
	}
	if v.Null {
		if string(raw) != "null" {
			t.Fatalf("%s: want null, got %.100s", where, raw)
		}
		return
	}
	str := func() string {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("%s: not a string: %.100s: %v", where, raw, err)
		}
		return s
	}
	switch c.Kind {
	case abi.KindString:
		if got, want := str(), validUTF8(v.Bytes); got != want {
			t.Fatalf("%s: got %.100q want %.100q", where, got, want)
		}
	case abi.KindJSON:
		if embeddable(v.Bytes) {
			var got, want any
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if err := json.Unmarshal(v.Bytes, &want); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if !jsonEqual(got, want) {
				t.Fatalf("%s: nested JSON differs: got %.100s want %.100s", where, raw, v.Bytes)
			}
		} else if got, want := str(), validUTF8(v.Bytes); got != want {
			t.Fatalf("%s: invalid JSON should be a string: got %.100q want %.100q", where, got, want)
		}
	case abi.KindInt64:
		if string(raw) != strconv.FormatInt(v.Int, 10) {
			t.Fatalf("%s: got %s want %d", where, raw, v.Int)
		}
	case abi.KindTimestamp:
		if got, want := str(), wantTime(v.Int); got != want {
			t.Fatalf("%s: got %s want %s", where, got, want)
		}
		if _, err := time.Parse(time.RFC3339Nano, str()); err != nil && len(str()) == len("2006-01-02T15:04:05.000000Z") {
			t.Fatalf("%s: not RFC 3339: %v", where, err)
		}
	case abi.KindUUID:
		if got, want := str(), wantUUID(v.Bytes); got != want {
			t.Fatalf("%s: got %s want %s", where, got, want)
		}
	case abi.KindFloat64:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			if string(raw) != "null" {
				t.Fatalf("%s: non-finite float should be null, got %s", where, raw)
			}
			return
		}
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || f != v.Float {
			t.Fatalf("%s: got %s want %v (%v)", where, raw, v.Float, err)
		}
	case abi.KindBool:
		if want := strconv.FormatBool(v.Int != 0); string(raw) != want {
			t.Fatalf("%s: got %s want %s", where, raw, want)
		}
	}
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func checkJSONL(t *testing.T, data []byte, out []outCol, rows []row) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 16<<20)
	i := 0
	for sc.Scan() {
		if i >= len(rows) {
			t.Fatalf("more lines than rows")
		}
		cells := jsonLine(t, sc.Bytes())
		if len(cells) != len(out) {
			t.Fatalf("row %d: %d keys, want %d", i, len(cells), len(out))
		}
		for j, c := range out {
			if cells[j].key != c.name {
				t.Fatalf("row %d: key %d is %q, want %q", i, j, cells[j].key, c.name)
			}
			checkJSONCell(t, fmt.Sprintf("row %d column %s", i, c.name), c.col, rows[i][c.src], cells[j].raw)
		}
		i++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(rows) {
		t.Fatalf("%d lines, want %d", i, len(rows))
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatal("output does not end with a newline")
	}
}

func checkCSV(t *testing.T, data []byte, out []outCol, rows []row) {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(data))
	header, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	for j, c := range out {
		if header[j] != c.name {
			t.Fatalf("header %d is %q, want %q", j, header[j], c.name)
		}
	}
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(rows) {
		t.Fatalf("%d records, want %d", len(recs), len(rows))
	}
	for i, rec := range recs {
		for j, c := range out {
			v := rows[i][c.src]
			var want string
			switch {
			case v.Null:
			case c.col.Kind == abi.KindString || c.col.Kind == abi.KindJSON:
				// encoding/csv's reader turns CRLF inside a quoted field into LF.
				want = strings.ReplaceAll(string(v.Bytes), "\r\n", "\n")
			case c.col.Kind == abi.KindInt64:
				want = strconv.FormatInt(v.Int, 10)
			case c.col.Kind == abi.KindTimestamp:
				want = wantTime(v.Int)
			case c.col.Kind == abi.KindUUID:
				want = wantUUID(v.Bytes)
			case c.col.Kind == abi.KindBool:
				want = strconv.FormatBool(v.Int != 0)
			case c.col.Kind == abi.KindFloat64:
				f, err := strconv.ParseFloat(rec[j], 64)
				if err != nil || !(f == v.Float || math.IsNaN(f) && math.IsNaN(v.Float)) {
					t.Fatalf("row %d column %s: got %q want %v", i, c.name, rec[j], v.Float)
				}
				continue
			}
			if rec[j] != want {
				t.Fatalf("row %d column %s: got %.100q want %.100q", i, c.name, rec[j], want)
			}
		}
	}
}

func checkParquet(t *testing.T, data []byte, out []outCol, rows []row, codec string) {
	t.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f.NumRows() != int64(len(rows)) {
		t.Fatalf("%d rows, want %d", f.NumRows(), len(rows))
	}
	fields := f.Schema().Fields()
	if len(fields) != len(out) {
		t.Fatalf("%d fields, want %d", len(fields), len(out))
	}
	for j, c := range out {
		fd := fields[j]
		if fd.Name() != c.name || fd.Optional() != c.col.Nullable {
			t.Fatalf("field %d is %s optional=%v, want %s optional=%v", j, fd.Name(), fd.Optional(), c.name, c.col.Nullable)
		}
		lt := fd.Type().LogicalType()
		if lt == nil {
			lt = &format.LogicalType{}
		}
		ok := false
		switch c.col.Kind {
		case abi.KindString, abi.KindJSON:
			_, isString := lt.Value.(*format.StringType)
			ok = isString && fd.Type().Kind() == parquet.ByteArray
		case abi.KindUUID:
			_, isUUID := lt.Value.(*format.UUIDType)
			ok = isUUID && fd.Type().Kind() == parquet.FixedLenByteArray && fd.Type().Length() == 16
		case abi.KindTimestamp:
			ts, isTS := lt.Value.(*format.TimestampType)
			ok = isTS && ts.IsAdjustedToUTC && ts.Unit.String() == "MICROS"
		case abi.KindInt64:
			ok = fd.Type().Kind() == parquet.Int64
		case abi.KindFloat64:
			ok = fd.Type().Kind() == parquet.Double
		case abi.KindBool:
			ok = fd.Type().Kind() == parquet.Boolean
		}
		if !ok {
			t.Fatalf("field %s has type %v (%v), wrong for %s", c.name, fd.Type(), lt, c.col.Kind)
		}
	}
	for _, rg := range f.Metadata().RowGroups {
		for _, cc := range rg.Columns {
			if got := cc.MetaData.Codec.String(); !strings.EqualFold(got, map[string]string{"": "UNCOMPRESSED", "lz4": "LZ4_RAW"}[codec]) && !strings.EqualFold(got, codec) {
				t.Fatalf("column chunk codec %s, want %s", got, codec)
			}
		}
	}
	rd := parquet.NewReader(f)
	defer rd.Close()
	buf := make([]parquet.Row, 7)
	i := 0
	for {
		n, err := rd.ReadRows(buf)
		for _, pr := range buf[:n] {
			for j, c := range out {
				v := rows[i][c.src]
				pv := pr[j]
				where := fmt.Sprintf("row %d column %s", i, c.name)
				if pv.IsNull() != v.Null {
					t.Fatalf("%s: null=%v want %v", where, pv.IsNull(), v.Null)
				}
				if v.Null {
					continue
				}
				switch c.col.Kind {
				case abi.KindString, abi.KindJSON, abi.KindUUID:
					if !bytes.Equal(pv.ByteArray(), v.Bytes) {
						t.Fatalf("%s: got %.100q want %.100q", where, pv.ByteArray(), v.Bytes)
					}
				case abi.KindInt64, abi.KindTimestamp:
					if pv.Int64() != v.Int {
						t.Fatalf("%s: got %d want %d", where, pv.Int64(), v.Int)
					}
				case abi.KindFloat64:
					if g := pv.Double(); g != v.Float && !(math.IsNaN(g) && math.IsNaN(v.Float)) {
						t.Fatalf("%s: got %v want %v", where, g, v.Float)
					}
				case abi.KindBool:
					if pv.Boolean() != (v.Int != 0) {
						t.Fatalf("%s: got %v want %v", where, pv.Boolean(), v.Int)
					}
				}
			}
			i++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if i != len(rows) {
		t.Fatalf("read %d rows, want %d", i, len(rows))
	}
}

func checkOutput(t *testing.T, format, compression string, data []byte, out []outCol, rows []row) {
	t.Helper()
	switch format {
	case FormatJSONL:
		checkJSONL(t, decompress(t, compression, data), out, rows)
	case FormatCSV:
		checkCSV(t, decompress(t, compression, data), out, rows)
	case FormatParquet:
		checkParquet(t, data, out, rows, compression)
	}
}

func allOut(cols []abi.Column) []outCol {
	out := make([]outCol, len(cols))
	for i, c := range cols {
		out[i] = outCol{src: i, name: c.Name, col: c}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(1, 2)), 160, true)
	for _, format := range Formats() {
		for _, compression := range Compressions() {
			t.Run(format+"+"+compression, func(t *testing.T) {
				t.Parallel()
				var buf bytes.Buffer
				enc, err := New(&buf, abi.EncoderSpec{Format: format, Compression: compression}, testColumns,
					RowGroupRows(50)) // several row groups for parquet
				if err != nil {
					t.Fatal(err)
				}
				encodeBatches(t, enc, testColumns, rows, 37)
				if err := enc.Close(); err != nil {
					t.Fatal(err)
				}
				if enc.Records() != int64(len(rows)) {
					t.Fatalf("Records = %d", enc.Records())
				}
				if compression != "" && buf.Len() > 1<<20 {
					t.Fatalf("compressed output is %d bytes: not compressed?", buf.Len())
				}
				checkOutput(t, format, compression, buf.Bytes(), allOut(testColumns), rows)
				if format == FormatParquet {
					f, err := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
					if err != nil {
						t.Fatal(err)
					}
					if n := len(f.Metadata().RowGroups); n != 4 {
						t.Fatalf("%d row groups for 160 rows at 50 per group, want 4", n)
					}
				}
			})
		}
	}
}

func TestEmptyFile(t *testing.T) {
	for _, format := range Formats() {
		for _, compression := range []string{"", "gzip", "zstd"} {
			var buf bytes.Buffer
			enc, err := New(&buf, abi.EncoderSpec{Format: format, Compression: compression}, abi.EventColumns)
			if err != nil {
				t.Fatal(err)
			}
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
			checkOutput(t, format, compression, buf.Bytes(), allOut(abi.EventColumns), nil)
		}
	}
}

// TestCompressionNone: "none" is the SPEC's spelling of no compression (EncoderSpec): the
// same bytes as "" in every format.
func TestCompressionNone(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(5, 6)), 20, false)
	for _, format := range Formats() {
		var out [2]bytes.Buffer
		for i, compression := range []string{"", "none"} {
			enc, err := New(&out[i], abi.EncoderSpec{Format: format, Compression: compression}, testColumns)
			if err != nil {
				t.Fatalf("%s with compression %q: %v", format, compression, err)
			}
			encodeBatches(t, enc, testColumns, rows, 7)
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(out[0].Bytes(), out[1].Bytes()) || out[0].Len() == 0 {
			t.Errorf("%s: compression \"none\" wrote %d bytes, \"\" %d; want the same bytes", format, out[1].Len(), out[0].Len())
		}
	}
	if err := ValidatePair("jsonl", "none"); err != nil {
		t.Errorf("ValidatePair(jsonl, none): %v", err)
	}
	if err := ValidatePair("jsonl", "nope"); err == nil {
		t.Error("ValidatePair accepts an unknown compression")
	}
}

func TestColumnSelection(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(3, 4)), 40, false)
	sel := []abi.ColumnSelect{
		{Name: "timestamp", As: "ts"},
		{Name: "event"},
		{Name: "properties", As: "props"},
		{Name: "uuid", As: "event_id"},
		{Name: "note", As: "note"},
		{Name: "person_id"},
	}
	idx := map[string]int{}
	for i, c := range testColumns {
		idx[c.Name] = i
	}
	var out []outCol
	for _, s := range sel {
		name := s.As
		if name == "" {
			name = s.Name
		}
		out = append(out, outCol{src: idx[s.Name], name: name, col: testColumns[idx[s.Name]]})
	}
	for _, format := range Formats() {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			enc, err := New(&buf, abi.EncoderSpec{Format: format, Compression: "zstd", Columns: sel}, testColumns)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(enc.Columns(), ","); got != "ts,event,props,event_id,note,person_id" {
				t.Fatalf("Columns = %s", got)
			}
			encodeBatches(t, enc, testColumns, rows, 16)
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
			checkOutput(t, format, "zstd", buf.Bytes(), out, rows)
		})
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct{ format, compression string }{
		{"xml", ""}, {"JSONL", ""}, {"jsonl", "bzip2"}, {"parquet", "lzo"}, {"csv", "GZIP"}, {"", ""},
	} {
		if err := ValidatePair(tc.format, tc.compression); !errors.Is(err, ErrUnsupported) {
			t.Errorf("ValidatePair(%q, %q) = %v", tc.format, tc.compression, err)
		}
		if _, err := New(io.Discard, abi.EncoderSpec{Format: tc.format, Compression: tc.compression}, abi.EventColumns); !errors.Is(err, ErrUnsupported) {
			t.Errorf("New(%q, %q) = %v", tc.format, tc.compression, err)
		}
		if ext := Extension(tc.format, tc.compression); ext != "" {
			t.Errorf("Extension(%q, %q) = %q", tc.format, tc.compression, ext)
		}
	}
	for _, sel := range [][]abi.ColumnSelect{
		{{Name: "nope"}},
		{{Name: "event"}, {Name: "Event"}},
		{{Name: "event", As: "x"}, {Name: "uuid", As: "x"}},
		{{Name: "event"}, {Name: "event"}},
	} {
		for _, format := range Formats() {
			_, err := New(io.Discard, abi.EncoderSpec{Format: format, Columns: sel}, abi.EventColumns)
			if !errors.Is(err, ErrSchema) {
				t.Errorf("New(%s, %v) = %v, want ErrSchema", format, sel, err)
			}
		}
	}
	if _, err := New(io.Discard, abi.EncoderSpec{Format: "jsonl"}, nil); !errors.Is(err, ErrSchema) {
		t.Errorf("New with no columns = %v", err)
	}
	if _, err := New(io.Discard, abi.EncoderSpec{Format: "zstd"}, abi.EventColumns, Level(9)); err == nil {
		t.Error("bad format accepted")
	}
	if _, err := New(io.Discard, abi.EncoderSpec{Format: "jsonl", Compression: "zstd"}, abi.EventColumns, Level(9)); err == nil {
		t.Error("zstd level 9 accepted")
	}

	// A batch of another schema, then a malformed batch.
	for _, format := range Formats() {
		enc, err := New(io.Discard, abi.EncoderSpec{Format: format}, testColumns)
		if err != nil {
			t.Fatal(err)
		}
		bw := abi.NewBatchWriter(abi.EventColumns, nil)
		if _, err := enc.WriteBatch(bw.Bytes()); !errors.Is(err, ErrSchema) {
			t.Errorf("%s: batch of another schema: %v", format, err)
		}
		if _, err := enc.WriteBatch([]byte("SLB0junk")); !errors.Is(err, abi.ErrMalformed) {
			t.Errorf("%s: malformed batch: %v", format, err)
		}
		// truncated rows: the first rows are encoded, then the error sticks
		rows := makeRows(rand.New(rand.NewPCG(5, 6)), 5, false)
		bw = abi.NewBatchWriter(testColumns, nil)
		for _, r := range rows {
			for _, v := range r {
				bw.AppendValue(v)
			}
			bw.EndRow()
		}
		b := bw.Bytes()
		n, err := enc.WriteBatch(b[:len(b)-3])
		if !errors.Is(err, abi.ErrMalformed) || n != 4 {
			t.Errorf("%s: truncated batch: n=%d err=%v", format, n, err)
		}
		if _, err2 := enc.WriteBatch(b); !errors.Is(err2, abi.ErrMalformed) {
			t.Errorf("%s: error did not stick: %v", format, err2)
		}
		if err := enc.Close(); !errors.Is(err, abi.ErrMalformed) {
			t.Errorf("%s: Close after error: %v", format, err)
		}
	}
}

func TestExtension(t *testing.T) {
	for _, tc := range []struct{ format, compression, want string }{
		{"jsonl", "", ".jsonl"},
		{"jsonl", "gzip", ".jsonl.gz"},
		{"jsonl", "zstd", ".jsonl.zst"},
		{"jsonl", "brotli", ".jsonl.br"},
		{"jsonl", "snappy", ".jsonl.sz"},
		{"jsonl", "lz4", ".jsonl.lz4"},
		{"csv", "", ".csv"},
		{"csv", "zstd", ".csv.zst"},
		{"csv", "gzip", ".csv.gz"},
		{"parquet", "", ".parquet"},
		{"parquet", "zstd", ".parquet"},
		{"parquet", "snappy", ".parquet"},
		{"jsonl", "none", ".jsonl"},
		{"csv", "none", ".csv"},
		{"parquet", "none", ".parquet"},
	} {
		if got := Extension(tc.format, tc.compression); got != tc.want {
			t.Errorf("Extension(%q, %q) = %q, want %q", tc.format, tc.compression, got, tc.want)
		}
	}
	if ContentEncoding("jsonl", "gzip") != "gzip" || ContentEncoding("parquet", "gzip") != "" {
		t.Error("ContentEncoding")
	}
}

func TestCloseDoesNotCloseWriter(t *testing.T) {
	for _, format := range Formats() {
		for _, compression := range Compressions() {
			w := &closeTracker{}
			enc, err := New(w, abi.EncoderSpec{Format: format, Compression: compression}, abi.EventColumns)
			if err != nil {
				t.Fatal(err)
			}
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
			if err := enc.Close(); err != nil {
				t.Fatal("second Close:", err)
			}
			if w.closed {
				t.Fatalf("%s+%s closed the destination", format, compression)
			}
			if _, err := enc.WriteBatch(nil); err == nil {
				t.Fatal("WriteBatch after Close")
			}
		}
	}
}

type closeTracker struct {
	bytes.Buffer
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	inputs := append([]string{}, tricky...)
	alphabet := []string{"a", "\"", "\\", "\n", "\x00", "\x1f", "\x7f", "é", "日", "🚀", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "<", "&"}
	for range 5000 {
		var sb strings.Builder
		for range r.IntN(12) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		inputs = append(inputs, sb.String())
	}
	for _, s := range inputs {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		wantS := strings.TrimSuffix(want.String(), "\n")
		if got := string(appendJSONString(nil, []byte(s))); got != wantS {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, wantS)
		}
	}
}

func TestCheckJSONMatchesEncodingJSON(t *testing.T) {
	inputs := append([]string{}, trickyJSON...)
	inputs = append(inputs, "0", "-0", "-", "1.", "1.5e", "1e+5", "-12.5E-3", "01", "00", "[1,]", `{"a":1,}`, `{"a" 1}`,
		`{1:2}`, "tru", "true ", "nul", `"\u12"`, `"\u12ab"`, `"\ud800"`, "[[[[]]]]", " \t\n\r", `"a`+"\t"+`b"`,
		"[1 2]", `{"a":[1,{"b":null}],"c":"d"}`, "\"\xe2\x80\xa8\"", "1 2", "[-]", "[.5]", "[1e5.5]",
		strings.Repeat("[", maxJSONDepth)+strings.Repeat("]", maxJSONDepth))
	r := rand.New(rand.NewPCG(9, 10))
	alphabet := []string{"{", "}", "[", "]", ",", ":", `"`, `\`, "a", "1", "-", ".", "e", "0", " ", "\n", "true", "null", `"k"`, "\xff", "é"}
	for range 20000 {
		var sb strings.Builder
		for range r.IntN(10) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		inputs = append(inputs, sb.String())
	}
	for _, s := range inputs {
		b := []byte(s)
		want := embeddable(b)
		got := checkJSON(b)
		if (got != jsonInvalid) != want {
			t.Fatalf("checkJSON(%q) = %v, encoding/json valid = %v", s, got, want)
		}
		if got == jsonOK && bytes.ContainsAny(b, "\r\n") {
			t.Fatalf("checkJSON(%q) = ok with a newline", s)
		}
	}
	deep := strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1)
	if checkJSON([]byte(deep)) != jsonInvalid {
		t.Fatal("depth limit not enforced")
	}
}

func TestAppendTimestamp(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	cases := append([]int64{}, timestamps...)
	cases = append(cases, math.MinInt64, math.MaxInt64,
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro(),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro(),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()-1,
		time.Date(1600, 2, 29, 1, 2, 3, 4000, time.UTC).UnixMicro(),
		time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC).UnixMicro())
	lo := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	hi := time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
	for range 200000 {
		cases = append(cases, lo+r.Int64N(hi-lo))
	}
	for _, us := range cases {
		want := time.UnixMicro(us).UTC().Format("2006-01-02T15:04:05.000000Z07:00")
		if got := string(appendTimestamp(nil, us)); got != want {
			t.Fatalf("appendTimestamp(%d) = %s, want %s", us, got, want)
		}
	}
}

func FuzzCheckJSON(f *testing.F) {
	for _, s := range trickyJSON {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := checkJSON(b)
		if (got != jsonInvalid) != embeddable(b) && !bytes.Contains(b, []byte(strings.Repeat("[", 100))) {
			t.Fatalf("checkJSON(%q) = %v", b, got)
		}
	})
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range tricky {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got string
		if err := json.Unmarshal(appendJSONString(nil, []byte(s)), &got); err != nil {
			t.Fatal(err)
		}
		if want := validUTF8([]byte(s)); got != want {
			t.Fatalf("round trip %q -> %q", s, got)
		}
	})
}

func TestLevels(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(15, 16)), 30, false)
	for _, tc := range []struct {
		format, compression string
		level               int
		ok                  bool
	}{
		{"jsonl", "gzip", 1, true}, {"jsonl", "gzip", 9, true}, {"jsonl", "gzip", 12, false},
		{"jsonl", "zstd", 4, true}, {"jsonl", "zstd", 0, false},
		{"csv", "brotli", 0, true}, {"csv", "brotli", 12, false},
		{"csv", "lz4", 9, true}, {"csv", "lz4", 10, false},
		{"parquet", "gzip", 9, true}, {"parquet", "gzip", 0, false},
		{"parquet", "zstd", 4, true}, {"parquet", "zstd", 5, false},
		{"parquet", "brotli", 11, true}, {"parquet", "lz4", 9, true}, {"parquet", "lz4", -1, false},
	} {
		var buf bytes.Buffer
		enc, err := New(&buf, abi.EncoderSpec{Format: tc.format, Compression: tc.compression}, testColumns, Level(tc.level))
		if (err == nil) != tc.ok {
			t.Fatalf("%s+%s level %d: err = %v", tc.format, tc.compression, tc.level, err)
		}
		if err != nil {
			continue
		}
		encodeBatches(t, enc, testColumns, rows, 10)
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		checkOutput(t, tc.format, tc.compression, buf.Bytes(), allOut(testColumns), rows)
	}
}

func TestWhereKeepsMatchingRows(t *testing.T) {
	rows := makeRows(rand.New(rand.NewPCG(5, 6)), 120, false)
	var want []row
	for _, r := range rows {
		if string(r[1].Bytes) == "plain" {
			want = append(want, r)
		}
	}
	if len(want) == 0 || len(want) == len(rows) {
		t.Fatalf("%d of %d rows match: the test needs some of each", len(want), len(rows))
	}
	for _, format := range Formats() {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			enc, err := New(&buf, abi.EncoderSpec{Format: format, Compression: "gzip",
				Where: &abi.RowFilter{Column: "event", Equals: "plain"}}, testColumns)
			if err != nil {
				t.Fatal(err)
			}
			bw := abi.NewBatchWriter(testColumns, nil)
			kept := 0
			for start := 0; start < len(rows); start += 25 {
				bw.Reset()
				for _, r := range rows[start:min(start+25, len(rows))] {
					for _, v := range r {
						bw.AppendValue(v)
					}
					bw.EndRow()
				}
				n, err := enc.WriteBatch(bw.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				kept += n
			}
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
			if kept != len(want) || enc.Records() != int64(len(want)) {
				t.Fatalf("WriteBatch counted %d, Records %d, want %d", kept, enc.Records(), len(want))
			}
			checkOutput(t, format, "gzip", buf.Bytes(), allOut(testColumns), want)
		})
	}
	for _, col := range []string{"nope", "team_id"} { // unknown, not a string
		_, err := New(io.Discard, abi.EncoderSpec{Format: FormatJSONL, Where: &abi.RowFilter{Column: col}}, testColumns)
		if !errors.Is(err, ErrSchema) {
			t.Errorf("where on %s: %v, want ErrSchema", col, err)
		}
	}
}

// Cast "string" writes a uuid column as its canonical text in Parquet (a STRING column, not
// FIXED_LEN_BYTE_ARRAY(16) UUID, which Spark and Databricks refuse), nulls kept; other kinds
// refuse the cast.
func TestParquetUUIDCastString(t *testing.T) {
	u := [16]byte{0x01, 0x92, 0xf3, 0xa4, 0xb5, 0xc6, 0x7d, 0xe8, 0x9f, 0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60}
	bw := abi.NewBatchWriter(abi.EventColumns, nil)
	for i := range 300 { // more than one block of rows
		ev := abi.Event{UUID: u, Event: "e", DistinctID: "d", Properties: "{}", Timestamp: time.Unix(int64(i), 0)}
		if i%2 == 0 {
			ev.PersonID = &u
		}
		bw.AppendEvent(&ev)
		bw.EndRow()
	}
	var buf bytes.Buffer
	enc, err := New(&buf, abi.EncoderSpec{Format: FormatParquet, Columns: []abi.ColumnSelect{{Name: "uuid", Cast: "string"},
		{Name: "person_id", Cast: "string"}, {Name: "event", Cast: "string"}}}, abi.EventColumns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.WriteBatch(bw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range f.Schema().Fields() {
		if lt := fd.Type().LogicalType(); fd.Type().Kind() != parquet.ByteArray || lt == nil || !isStringType(lt.Value) {
			t.Errorf("column %s: %s, want a STRING", fd.Name(), fd.Type())
		}
	}
	rows := make([]parquet.Row, 300)
	n, _ := f.RowGroups()[0].Rows().ReadRows(rows)
	const want = "0192f3a4-b5c6-7de8-9f0a-1b2c3d4e5f60"
	for i, r := range rows[:n] {
		if got := string(r[0].ByteArray()); got != want {
			t.Fatalf("row %d uuid %q, want %q", i, got, want)
		}
		if got := r[1]; (i%2 == 0) != !got.IsNull() || (!got.IsNull() && string(got.ByteArray()) != want) {
			t.Fatalf("row %d person_id %v", i, got)
		}
	}
	if n != 300 {
		t.Fatalf("%d rows", n)
	}
	for _, kind := range []string{"team_id", "timestamp"} {
		if _, err := New(io.Discard, abi.EncoderSpec{Format: FormatParquet, Columns: []abi.ColumnSelect{{Name: kind, Cast: "string"}}}, abi.EventColumns); !errors.Is(err, ErrUnsupported) {
			t.Errorf("cast of %s: %v", kind, err)
		}
	}
}

func isStringType(v format.LogicalTypeValue) bool {
	_, ok := v.(*format.StringType)
	return ok
}
