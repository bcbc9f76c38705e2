package conformance

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
	"github.com/sluicehq/sluice/host/runtime"
)

// commitEncoded writes batches through the host encoder with spec into a MemStore upload, as
// a plugin's encoder_open would, and returns the commit.
func commitEncoded(t *testing.T, spec abi.EncoderSpec, batches ...[]byte) Commit {
	t.Helper()
	s := NewMemStore()
	ctx := context.Background()
	u, err := s.Create(ctx, "k", runtime.ObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Encoders(u, spec, abi.EventColumns)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if _, err := e.WriteBatch(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return s.Commits(0)[0]
}

// Every format and compression of the host encoders is read back and compared; a dropped
// and a doubled record are named, in every one of them.
func TestCompareOutputFormats(t *testing.T) {
	evs := Events(20, 300, 5)
	for _, format := range encode.Formats() {
		for _, comp := range encode.Compressions() {
			t.Run(format+"+"+comp, func(t *testing.T) {
				spec := abi.EncoderSpec{Format: format, Compression: comp}
				c := commitEncoded(t, spec, Batch(evs[:10]), Batch(evs[10:]))
				msg, compared, err := compareOutput([]Commit{c}, evs)
				if err != nil || !compared || !strings.Contains(msg, "20 records in 1 objects") {
					t.Fatalf("all records: %q %v %v", msg, compared, err)
				}
				c = commitEncoded(t, spec, Batch(evs[:3]), Batch(evs[4:]), Batch(evs[7:8]))
				_, _, err = compareOutput([]Commit{c}, evs)
				want := "1 of 20 records missing (" + uuidText(evs[3].UUID[:]) + "); 1 records written more than once (" + uuidText(evs[7].UUID[:]) + " x2)"
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("dropped and doubled: %v\nwant %s", err, want)
				}
			})
		}
	}
}

func TestCompareOutputOwnBytesAndRenames(t *testing.T) {
	evs := Events(4, 200, 6)
	// A renamed uuid column and a key field that differs.
	spec := abi.EncoderSpec{Format: "jsonl", Columns: []abi.ColumnSelect{{Name: "uuid", As: "id"}, {Name: "event", As: "name"}}}
	c := commitEncoded(t, spec, Batch(evs))
	if msg, _, err := compareOutput([]Commit{c}, evs); err != nil {
		t.Fatalf("renamed: %v", err)
	} else if !strings.Contains(msg, "4 records") {
		t.Fatal(msg)
	}
	// Parquet with selected, reordered and renamed columns (as the s3 plugin writes it).
	spec = abi.EncoderSpec{Format: "parquet", Compression: "zstd", Columns: []abi.ColumnSelect{
		{Name: "team_id"}, {Name: "timestamp"}, {Name: "event", As: "name"}, {Name: "uuid"}, {Name: "distinct_id"}}}
	if msg, _, err := compareOutput([]Commit{commitEncoded(t, spec, Batch(evs))}, evs); err != nil || !strings.Contains(msg, "4 records in 1 objects (parquet)") {
		t.Fatalf("parquet with selected columns: %q %v", msg, err)
	}
	other := Events(4, 200, 6)
	other[2].Event = "$other"
	if _, _, err := compareOutput([]Commit{c}, other); err == nil || !strings.Contains(err.Error(), `event "$pageview", sent "$other"`) {
		t.Fatalf("a differing event: %v", err)
	}
	// Bytes the plugin wrote itself, gzip-compressed, known by content type and magic.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for _, e := range evs[:3] {
		zw.Write([]byte(`{"uuid":"` + uuidText(e.UUID[:]) + `","event":"$pageview"}` + "\n"))
	}
	zw.Close()
	own := Commit{Key: "x.jsonl.gz", Data: buf.Bytes(), Options: runtime.ObjectOptions{ContentType: "application/jsonl", ContentEncoding: "gzip"}}
	if _, _, err := compareOutput([]Commit{own}, evs); err == nil || !strings.Contains(err.Error(), "1 of 4 records missing ("+uuidText(evs[3].UUID[:])+")") {
		t.Fatalf("own bytes: %v", err)
	}
	// An object in no known format is not compared, and says so.
	msg, compared, err := compareOutput([]Commit{{Key: "manifest.json", Data: []byte("{}"), Options: runtime.ObjectOptions{ContentType: "application/json"}}}, evs)
	if compared || err != nil || !strings.Contains(msg, `manifest.json (content type "application/json")`) {
		t.Fatalf("unknown format: %q %v %v", msg, compared, err)
	}
}

// Each malformed batch breaks a must-reject rule (the abi decoder refuses it) and passes
// the host's own check before sluice_write_batch (magic and record count), so it reaches
// the plugin.
func TestMalformedBatchesAreMalformed(t *testing.T) {
	for _, m := range MalformedBatches() {
		t.Run(m.Name, func(t *testing.T) {
			if string(m.Batch[:4]) != "SLB1" || int(binary.LittleEndian.Uint32(m.Batch[4:8])) != m.Records {
				t.Fatal("the host would refuse it before the plugin")
			}
			r, err := abi.NewBatchReader(m.Batch)
			if err == nil {
				vals := make([]abi.Value, len(r.Columns()))
				for err == nil {
					err = r.Next(vals)
				}
				if errors.Is(err, io.EOF) {
					t.Fatal("the abi decoder accepts it")
				}
			}
			t.Log(err)
		})
	}
}
