package abi_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
)

var update = flag.Bool("update", false, "rewrite the golden vectors in testdata/")

func sampleEvents() []abi.Event {
	ts := time.Date(2026, 11, 28, 12, 0, 0, 123456000, time.UTC)
	pid := [16]byte{0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	pp := `{"email":"ada@example.com"}`
	created := ts.Add(time.Second)
	return []abi.Event{
		{UUID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, Event: "$pageview",
			DistinctID: "user-1", PersonID: &pid, TeamID: 2, Properties: `{"$current_url":"https://example.com/ü"}`,
			PersonProperties: &pp, ElementsChain: "", Timestamp: ts, CreatedAt: &created, InsertedAt: ts.Add(2 * time.Second)},
		{UUID: [16]byte{0xff}, Event: "signup", DistinctID: "", TeamID: -1, Properties: `{}`,
			ElementsChain: "a:nth-child=1", Timestamp: time.Unix(0, 0).UTC(), InsertedAt: time.Unix(-1, 0).UTC()},
	}
}

func encodeEvents(t testing.TB, evs []abi.Event) []byte {
	w := abi.NewBatchWriter(abi.EventColumns, nil)
	for i := range evs {
		w.AppendEvent(&evs[i])
		w.EndRow()
	}
	return w.Bytes()
}

func TestEventRoundTrip(t *testing.T) {
	evs := sampleEvents()
	b := encodeEvents(t, evs)
	r, err := abi.NewBatchReader(b)
	if err != nil {
		t.Fatal(err)
	}
	if !abi.HasEventColumns(r.Columns()) || r.Records() != len(evs) {
		t.Fatalf("header: %v records=%d", r.Columns(), r.Records())
	}
	vals := make([]abi.Value, len(r.Columns()))
	var got []abi.Event
	for {
		err := r.Next(vals)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var e abi.Event
		abi.ReadEvent(vals, &e)
		got = append(got, e)
	}
	if !reflect.DeepEqual(got, evs) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, evs)
	}
}

func TestAllKindsRoundTrip(t *testing.T) {
	cols := []abi.Column{{Name: "s", Kind: abi.KindString}, {Name: "j", Kind: abi.KindJSON, Nullable: true},
		{Name: "i", Kind: abi.KindInt64}, {Name: "t", Kind: abi.KindTimestamp}, {Name: "u", Kind: abi.KindUUID},
		{Name: "f", Kind: abi.KindFloat64, Nullable: true}, {Name: "b", Kind: abi.KindBool}}
	w := abi.NewBatchWriter(cols, nil)
	rows := [][]abi.Value{
		{{Bytes: []byte("x")}, {Null: true}, {Int: -5}, {Int: 1700000000000000}, {Bytes: bytes.Repeat([]byte{7}, 16)}, {Float: 3.5}, {Int: 1}},
		{{Bytes: []byte{}}, {Bytes: []byte(`[1,2]`)}, {Int: 1 << 62}, {Int: -1}, {Bytes: make([]byte, 16)}, {Null: true}, {Int: 0}},
	}
	for _, row := range rows {
		for _, v := range row {
			w.AppendValue(v)
		}
		w.EndRow()
	}
	r, err := abi.NewBatchReader(w.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Columns(), cols) {
		t.Fatalf("columns %v", r.Columns())
	}
	vals := make([]abi.Value, len(cols))
	for i, want := range rows {
		if err := r.Next(vals); err != nil {
			t.Fatal(err)
		}
		for j := range want {
			g, w := vals[j], want[j]
			if g.Null != w.Null || !bytes.Equal(g.Bytes, w.Bytes) || g.Int != w.Int || g.Float != w.Float {
				t.Errorf("row %d col %d: got %+v want %+v", i, j, g, w)
			}
		}
	}
	if err := r.Next(vals); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

// The golden vectors pin the byte layout of SPEC.md. A change here is an ABI change.
func TestGoldenVectors(t *testing.T) {
	cases := map[string][]byte{
		"events_2.hex": encodeEvents(t, sampleEvents()),
		"empty.hex":    encodeEvents(t, nil),
		"minimal.hex": func() []byte {
			w := abi.NewBatchWriter([]abi.Column{{Name: "n", Kind: abi.KindInt64}, {Name: "s", Kind: abi.KindString, Nullable: true}}, nil)
			w.AppendInt(-2)
			w.AppendString("hi")
			w.EndRow()
			w.AppendInt(300)
			w.AppendNull()
			w.EndRow()
			return w.Bytes()
		}(),
		"kinds.hex": kindsVector(),
	}
	for name, got := range cases {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, []byte(hex.EncodeToString(got)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./abi -update once)", err)
		}
		want, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: encoder output changed:\n got %x\nwant %x", name, got, want)
		}
	}
}

// The minimal vector spelled out byte by byte, as SPEC.md shows it.
func TestMinimalVectorLayout(t *testing.T) {
	want := []byte{
		'S', 'L', 'B', '1', // magic
		2, 0, 0, 0, // record count, u32 LE
		0, 0, 0, 0, // flags
		2,         // column count
		1, 'n', 3, // "n" int64
		1, 's', 0x81, // "s" nullable string
		3, 1, 2, 'h', 'i', // row 0: zigzag(-2)=3, present, len 2, "hi"
		0xd8, 0x04, 0, // row 1: zigzag(300)=600 as uvarint, null
	}
	raw, err := os.ReadFile("testdata/minimal.hex")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := hex.DecodeString(strings.TrimSpace(string(raw)))
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x want %x", got, want)
	}
}

func TestMalformed(t *testing.T) {
	good := encodeEvents(t, sampleEvents())
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("XXXX"), good[4:]...)},
		{"truncated header", good[:14]},
		{"truncated rows", good[:len(good)-3]},
		{"trailing bytes", append(append([]byte{}, good...), 0)},
		{"huge count", func() []byte { b := append([]byte{}, good...); b[7] = 0x7f; return b }()},
		{"flags", func() []byte { b := append([]byte{}, good...); b[8] = 1; return b }()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := decodeAll(c.b); err == nil || !errors.Is(err, abi.ErrMalformed) {
				t.Fatalf("want ErrMalformed, got %v", err)
			}
		})
	}
}

func decodeAll(b []byte) error {
	r, err := abi.NewBatchReader(b)
	if err != nil {
		return err
	}
	vals := make([]abi.Value, len(r.Columns()))
	for {
		if err := r.Next(vals); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func FuzzBatchReader(f *testing.F) {
	f.Add(encodeEvents(f, sampleEvents()))
	f.Add(encodeEvents(f, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := decodeAll(b)
		if err != nil && !errors.Is(err, abi.ErrMalformed) {
			t.Fatalf("error not wrapping ErrMalformed: %v", err)
		}
	})
}

func BenchmarkEncodeDecode10k(b *testing.B) {
	ev := sampleEvents()[0]
	ev.Properties = `{"$current_url":"https://example.com/a/long/path?with=query","$browser":"Firefox","$os":"Linux","plan":"pro","count":42,"tags":["a","b","c"],"nested":{"k":"v"},"padding":"` + strings.Repeat("x", 260) + `"}`
	w := abi.NewBatchWriter(abi.EventColumns, nil)
	vals := make([]abi.Value, len(abi.EventColumns))
	var r abi.BatchReader
	for b.Loop() {
		w.Reset()
		for range 10000 {
			w.AppendEvent(&ev)
			w.EndRow()
		}
		if err := r.Reset(w.Bytes()); err != nil {
			b.Fatal(err)
		}
		for r.Next(vals) == nil {
		}
		b.SetBytes(int64(w.Len()))
	}
}
