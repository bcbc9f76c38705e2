package abi_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
)

// kindsVector is testdata/kinds.hex: one column of every kind, edge values.
func kindsVector() []byte {
	w := abi.NewBatchWriter([]abi.Column{
		{Name: "s", Kind: abi.KindString}, {Name: "j", Kind: abi.KindJSON}, {Name: "i", Kind: abi.KindInt64},
		{Name: "t", Kind: abi.KindTimestamp}, {Name: "u", Kind: abi.KindUUID}, {Name: "f", Kind: abi.KindFloat64},
		{Name: "b", Kind: abi.KindBool}, {Name: "opt", Kind: abi.KindBool, Nullable: true},
	}, nil)
	w.AppendString("tab\t\"quote\"")
	w.AppendString(`[1,{"a":null}]`)
	w.AppendInt(math.MinInt64)
	w.AppendTimestamp(1)
	w.AppendUUID([16]byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff})
	w.AppendFloat(-0.5)
	w.AppendBool(true)
	w.AppendBool(true)
	w.EndRow()
	w.AppendString("")
	w.AppendString("null")
	w.AppendInt(math.MaxInt64)
	w.AppendTimestamp(-1)
	w.AppendUUID([16]byte{})
	w.AppendFloat(1e300)
	w.AppendBool(false)
	w.AppendNull()
	w.EndRow()
	return w.Bytes()
}

func readHex(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// decodedJSON decodes a batch into the language-neutral form of the testdata/*.json files
// (abi/SPEC.md section 8): int64 and timestamp as decimal strings, uuid as canonical text,
// string and json as strings, float64 as a number, bool as true/false, null as null.
func decodedJSON(b []byte) (any, error) {
	r, err := abi.NewBatchReader(b)
	if err != nil {
		return nil, err
	}
	cols := []any{}
	for _, c := range r.Columns() {
		cols = append(cols, map[string]any{"name": c.Name, "kind": c.Kind.String(), "nullable": c.Nullable})
	}
	rows := []any{}
	vals := make([]abi.Value, len(r.Columns()))
	for {
		err := r.Next(vals)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		row := []any{}
		for i, c := range r.Columns() {
			v := vals[i]
			switch {
			case v.Null:
				row = append(row, nil)
			case c.Kind == abi.KindString || c.Kind == abi.KindJSON:
				row = append(row, string(v.Bytes))
			case c.Kind == abi.KindInt64 || c.Kind == abi.KindTimestamp:
				row = append(row, strconv.FormatInt(v.Int, 10))
			case c.Kind == abi.KindUUID:
				row = append(row, uuid.UUID(v.Bytes).String())
			case c.Kind == abi.KindFloat64:
				row = append(row, v.Float)
			case c.Kind == abi.KindBool:
				row = append(row, v.Int == 1)
			default:
				return nil, fmt.Errorf("column %q: kind %v", c.Name, c.Kind)
			}
		}
		rows = append(rows, row)
	}
	return map[string]any{"columns": cols, "rows": rows}, nil
}

// TestGoldenVectorsDecode: each golden vector decodes to the values its .json file states
// (written by hand from the values encoded, not from a decoder's output).
func TestGoldenVectorsDecode(t *testing.T) {
	hexes, _ := filepath.Glob("testdata/*.hex")
	if len(hexes) < 4 {
		t.Fatalf("golden vectors: %v", hexes)
	}
	for _, path := range hexes {
		t.Run(filepath.Base(path), func(t *testing.T) {
			raw, err := os.ReadFile(strings.TrimSuffix(path, ".hex") + ".json")
			if err != nil {
				t.Fatalf("every golden vector has its expected decoded values: %v", err)
			}
			var want any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			got, err := decodedJSON(readHex(t, path))
			if err != nil {
				t.Fatal(err)
			}
			// Through JSON, so that both sides have the same Go types.
			gb, _ := json.Marshal(got)
			var gotJSON any
			_ = json.Unmarshal(gb, &gotJSON)
			if !reflect.DeepEqual(gotJSON, want) {
				t.Errorf("decoded:\n%s\nwant:\n%s", gb, raw)
			}
		})
	}
}

// TestNegativeVectors: every testdata/bad/*.hex vector breaks one must-reject rule of
// SPEC section 8, and the decoder rejects it with ErrMalformed for that reason.
func TestNegativeVectors(t *testing.T) {
	rules := map[string]string{
		"bad_magic.hex":            "missing SLB1 header",
		"short_header.hex":         "missing SLB1 header",
		"nonzero_flags.hex":        "unknown flags",
		"zero_columns.hex":         "0 columns",
		"too_many_columns.hex":     "1025 columns",
		"empty_column_name.hex":    "empty or invalid name",
		"non_utf8_column_name.hex": "empty or invalid name",
		"long_column_name.hex":     "length 257",
		"unknown_kind.hex":         "unknown kind 8",
		"missing_kind.hex":         "type missing",
		"length_past_end.hex":      "exceeds the batch",
		"bad_presence.hex":         "bad null marker 2",
		"bad_bool.hex":             "bad bool",
		"bad_varint.hex":           "truncated",
		"impossible_count.hex":     "cannot fit",
		"truncated_row.hex":        "truncated",
		"trailing_bytes.hex":       "1 trailing bytes",
	}
	files, _ := filepath.Glob("testdata/bad/*.hex")
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	for name := range rules {
		if !slices.Contains(names, name) {
			t.Errorf("testdata/bad/%s is missing", name)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			want, ok := rules[name]
			if !ok {
				t.Fatalf("testdata/bad/%s has no rule in this test (and SPEC section 8)", name)
			}
			err := decodeAll(readHex(t, filepath.Join("testdata", "bad", name)))
			if !errors.Is(err, abi.ErrMalformed) || !strings.Contains(err.Error(), want) {
				t.Fatalf("decoder answered %v; want ErrMalformed mentioning %q", err, want)
			}
		})
	}
}
