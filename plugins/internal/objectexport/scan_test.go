package objectexport

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/abi"
)

// eventNames reads the same values as abi.BatchReader, over every kind, nullable or not
// (nulls are skipped).
func TestEventNamesMatchesBatchReader(t *testing.T) {
	kinds := []abi.Kind{abi.KindString, abi.KindJSON, abi.KindInt64, abi.KindTimestamp, abi.KindUUID, abi.KindFloat64, abi.KindBool}
	var cols []abi.Column
	for i, k := range kinds {
		cols = append(cols, abi.Column{Name: fmt.Sprint("c", i), Kind: k}, abi.Column{Name: fmt.Sprint("n", i), Kind: k, Nullable: true})
	}
	w := abi.NewBatchWriter(cols, nil)
	for r := range 50 {
		for i, c := range cols {
			if c.Nullable && (r+i)%3 == 0 {
				w.AppendNull()
				continue
			}
			switch c.Kind {
			case abi.KindString, abi.KindJSON:
				w.AppendString(fmt.Sprintf("v%d-%d%s", r, i, string(make([]byte, r*7))))
			case abi.KindInt64:
				w.AppendInt(int64(r*r*1000003) - 5000)
			case abi.KindTimestamp:
				w.AppendTimestamp(int64(r) << 40)
			case abi.KindUUID:
				w.AppendUUID([16]byte{byte(r), byte(i)})
			case abi.KindFloat64:
				w.AppendFloat(float64(r) / 3)
			case abi.KindBool:
				w.AppendBool(r%2 == 0)
			}
		}
		w.EndRow()
	}
	batch := w.Bytes()
	for col, c := range cols {
		if c.Kind != abi.KindString {
			if err := eventNames(batch, col, func([]byte) {}); err == nil {
				t.Errorf("column %s (%s) accepted", c.Name, c.Kind)
			}
			continue
		}
		var want, got []string
		r, err := abi.NewBatchReader(batch)
		if err != nil {
			t.Fatal(err)
		}
		vals := make([]abi.Value, len(cols))
		for {
			if err := r.Next(vals); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			if !vals[col].Null { // a null is skipped (the event column is never nullable)
				want = append(want, string(vals[col].Bytes))
			}
		}
		if err := eventNames(batch, col, func(b []byte) { got = append(got, string(b)) }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("column %s: %d values, want %d", c.Name, len(got), len(want))
		}
	}
	// Every truncation and a trailing byte are errors, never a panic.
	for n := range len(batch) {
		if err := eventNames(batch[:n], 0, func([]byte) {}); !errors.Is(err, abi.ErrMalformed) {
			t.Fatalf("batch cut at %d of %d: %v", n, len(batch), err)
		}
	}
	if err := eventNames(append(slices.Clip(batch), 0), 0, func([]byte) {}); !errors.Is(err, abi.ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
}
