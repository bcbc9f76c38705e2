package encode

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
)

// realisticBatch builds one SLB1 batch of n PostHog-like events whose properties are about
// propsLen bytes of JSON.
func realisticBatch(r *rand.Rand, n, propsLen int) []byte {
	bw := abi.NewBatchWriter(abi.EventColumns, nil)
	browsers := []string{"Chrome", "Firefox", "Safari", "Edge"}
	events := []string{"$pageview", "$autocapture", "$pageleave", "signed_up", "$identify", "checkout — paid"}
	base := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for i := range n {
		var e abi.Event
		for j := range e.UUID {
			e.UUID[j] = byte(r.UintN(256))
		}
		e.Event = events[i%len(events)]
		e.DistinctID = fmt.Sprintf("user-%016x", r.Uint64())
		if i%3 != 0 {
			var p [16]byte
			for j := range p {
				p[j] = byte(r.UintN(256))
			}
			e.PersonID = &p
		}
		e.TeamID = 2
		props := fmt.Sprintf(`{"$browser":%q,"$browser_version":%d,"$os":"Mac OS X","$current_url":"https://app.example.com/project/%d/insights?q=%x","$host":"app.example.com","$pathname":"/project/%d/insights","$screen_height":1080,"$screen_width":1920,"$lib":"web","$lib_version":"1.160.0","$session_id":"%016x%016x","$window_id":"%016x","$device_id":"%016x","$referrer":"https://www.google.com/","token":"phc_%016x","title":"Insights — \"Trends\" café"`,
			browsers[i%len(browsers)], 100+i%30, i%1000, r.Uint64(), i%1000, r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64())
		for len(props) < propsLen-20 {
			props += fmt.Sprintf(`,"k%d":%d`, len(props)%97, r.IntN(1e6))
		}
		props += "}"
		e.Properties = props
		if i%2 == 0 {
			pp := fmt.Sprintf(`{"email":"user%d@example.com","plan":"free"}`, i)
			e.PersonProperties = &pp
		}
		e.ElementsChain = ""
		e.Timestamp = base.Add(time.Duration(i) * time.Millisecond)
		if i%2 == 1 {
			c := e.Timestamp.Add(time.Second)
			e.CreatedAt = &c
		}
		e.InsertedAt = e.Timestamp.Add(2 * time.Second)
		bw.AppendEvent(&e)
		bw.EndRow()
	}
	return bw.Bytes()
}

func TestParquetMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200k rows")
	}
	const rows, perBatch = 200_000, 5_000
	r := rand.New(rand.NewPCG(13, 14))
	// A handful of distinct batches, reused: the input itself stays small.
	batches := make([][]byte, 4)
	for i := range batches {
		batches[i] = realisticBatch(r, perBatch, 1000)
	}
	var out countingWriter
	enc, err := New(&out, abi.EncoderSpec{Format: FormatParquet, Compression: CompressionZstd}, abi.EventColumns,
		RowGroupRows(testRowGroupRows))
	if err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	var total, peak uint64
	for i := 0; i < rows/perBatch; i++ {
		b := batches[i%len(batches)]
		if _, err := enc.WriteBatch(b); err != nil {
			t.Fatal(err)
		}
		total += uint64(len(b))
		runtime.GC()
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc-min(before, ms.HeapAlloc))
		if testing.Verbose() && i%4 == 0 {
			t.Logf("after %d rows: heap %d MB", (i+1)*perBatch, (ms.HeapAlloc-min(before, ms.HeapAlloc))>>20)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("input %d MB in %d rows, output %d MB, peak live heap growth %d MB",
		total>>20, rows, out.n>>20, peak>>20)
	// With the defaults a row group holds ~128 MB of this input; what stays in memory is its
	// compressed pages plus fixed buffers (measured: ~33 MB). The input is 200+ MB.
	if peak > total/4 {
		t.Fatalf("heap grew by %d MB for %d MB of input: not bounded", peak>>20, total>>20)
	}
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

var benchBatch = sync1(func() []byte { return realisticBatch(rand.New(rand.NewPCG(1, 1)), 10_000, 500) })

func sync1(f func() []byte) func() []byte {
	var b []byte
	return func() []byte {
		if b == nil {
			b = f()
		}
		return b
	}
}

func benchEncode(b *testing.B, format, compression string) {
	batch := benchBatch()
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	var out countingWriter
	for b.Loop() {
		enc, err := New(&out, abi.EncoderSpec{Format: format, Compression: compression}, abi.EventColumns)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := enc.WriteBatch(batch); err != nil {
			b.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(out.n)/float64(b.N)/float64(len(batch)), "out/in")
}

func BenchmarkEncode(b *testing.B) {
	for _, tc := range []struct{ format, compression string }{
		{"jsonl", ""}, {"jsonl", "gzip"}, {"jsonl", "zstd"}, {"jsonl", "brotli"}, {"jsonl", "snappy"}, {"jsonl", "lz4"},
		{"csv", ""}, {"csv", "gzip"},
		{"parquet", ""}, {"parquet", "zstd"}, {"parquet", "snappy"}, {"parquet", "gzip"},
	} {
		b.Run(tc.format+"+"+tc.compression, func(b *testing.B) { benchEncode(b, tc.format, tc.compression) })
	}
}

// jsonEvent is the naive path: decode the batch, copy into a struct, encoding/json per row.
type jsonEvent struct {
	UUID             string          `json:"uuid"`
	Event            string          `json:"event"`
	DistinctID       string          `json:"distinct_id"`
	PersonID         *string         `json:"person_id"`
	TeamID           int64           `json:"team_id"`
	Properties       json.RawMessage `json:"properties"`
	PersonProperties json.RawMessage `json:"person_properties"`
	ElementsChain    string          `json:"elements_chain"`
	Timestamp        string          `json:"timestamp"`
	CreatedAt        *string         `json:"created_at"`
	InsertedAt       string          `json:"inserted_at"`
}

// BenchmarkBaselineEncodingJSON is the reference for the ratio in docs/encoders.md.
func BenchmarkBaselineEncodingJSON(b *testing.B) {
	batch := benchBatch()
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	const layout = "2006-01-02T15:04:05.000000Z07:00"
	for b.Loop() {
		bw := bufio.NewWriterSize(io.Discard, 64<<10)
		r, err := abi.NewBatchReader(batch)
		if err != nil {
			b.Fatal(err)
		}
		vals := make([]abi.Value, len(r.Columns()))
		var e abi.Event
		for r.Next(vals) == nil {
			abi.ReadEvent(vals, &e)
			je := jsonEvent{
				UUID: wantUUID(e.UUID[:]), Event: e.Event, DistinctID: e.DistinctID, TeamID: e.TeamID,
				Properties: json.RawMessage(e.Properties), PersonProperties: json.RawMessage("null"),
				ElementsChain: e.ElementsChain, Timestamp: e.Timestamp.Format(layout),
				InsertedAt: e.InsertedAt.Format(layout),
			}
			if e.PersonID != nil {
				s := wantUUID(e.PersonID[:])
				je.PersonID = &s
			}
			if e.PersonProperties != nil {
				je.PersonProperties = json.RawMessage(*e.PersonProperties)
			}
			if e.CreatedAt != nil {
				s := e.CreatedAt.Format(layout)
				je.CreatedAt = &s
			}
			line, err := json.Marshal(&je)
			if err != nil {
				b.Fatal(err)
			}
			bw.Write(line)
			bw.WriteByte('\n')
		}
		bw.Flush()
	}
}

func BenchmarkCheckJSON(b *testing.B) {
	r, _ := abi.NewBatchReader(benchBatch())
	vals := make([]abi.Value, len(r.Columns()))
	r.Next(vals)
	props := vals[5].Bytes
	b.Run("checkJSON", func(b *testing.B) {
		b.SetBytes(int64(len(props)))
		for b.Loop() {
			if checkJSON(props) != jsonOK {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(props)))
		for b.Loop() {
			if !json.Valid(props) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("appendJSONString", func(b *testing.B) {
		b.SetBytes(int64(len(props)))
		var buf []byte
		for b.Loop() {
			buf = appendJSONString(buf[:0], props)
		}
	})
	b.Run("json.Marshal(string)", func(b *testing.B) {
		b.SetBytes(int64(len(props)))
		s := string(props)
		for b.Loop() {
			if _, err := json.Marshal(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var testRowGroupRows = DefaultRowGroupRows
