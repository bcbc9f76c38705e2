package abi_test

import (
	"bytes"
	"testing"

	"github.com/sluicehq/sluice/abi"
)

// TestSliceBatch: every range of a batch decodes to those rows, and the slices of a
// partition concatenate to the batch's rows (encoder_write_range, ABI 1.1).
func TestSliceBatch(t *testing.T) {
	evs := append(append(sampleEvents(), sampleEvents()...), sampleEvents()...)
	b := encodeEvents(t, evs)
	offs, err := abi.RowOffsets(b)
	if err != nil || len(offs) != len(evs)+1 || offs[len(offs)-1] != len(b) {
		t.Fatalf("offsets %v err %v", offs, err)
	}
	for start := 0; start <= len(evs); start++ {
		for count := 0; start+count <= len(evs); count++ {
			sub, err := abi.SliceBatch(b, offs, start, count)
			if err != nil {
				t.Fatal(err)
			}
			want := encodeEvents(t, evs[start:start+count])
			if !bytes.Equal(sub, want) {
				t.Fatalf("rows [%d,%d): slice differs from the batch of those events", start, start+count)
			}
		}
	}
	if _, err := abi.SliceBatch(b, offs, 5, 2); err == nil {
		t.Error("a range past the end was accepted")
	}
	if _, err := abi.RowOffsets(b[:len(b)-1]); err == nil {
		t.Error("a truncated batch was accepted")
	}
}
