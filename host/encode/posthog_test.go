package encode

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
)

func TestPostHogBatch(t *testing.T) {
	ts := time.Date(2026, 11, 28, 12, 0, 0, 123456000, time.UTC)
	evs := []abi.Event{
		{UUID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, Event: "$pageview", DistinctID: "u\"1",
			Properties: `{"$current_url":"https://example.com/ü","n":1}`, Timestamp: ts, InsertedAt: ts},
		{UUID: [16]byte{0xff}, Event: "$autocapture", DistinctID: "u2", Properties: `{}`, ElementsChain: "a:nth-child=\"1\"",
			Timestamp: ts, InsertedAt: ts},
		{UUID: [16]byte{0xfe}, Event: "odd", DistinctID: "u3", Properties: `[1,2]`, ElementsChain: "div",
			Timestamp: ts, InsertedAt: ts},
	}
	w := abi.NewBatchWriter(abi.EventColumns, nil)
	for i := range evs {
		w.AppendEvent(&evs[i])
		w.EndRow()
	}
	type event struct {
		UUID, Event, DistinctID, Timestamp string
		Properties                         map[string]any
	}
	decode := func(t *testing.T, b []byte) (key string, out []event) {
		var body struct {
			APIKey     string `json:"api_key"`
			Historical bool   `json:"historical_migration"`
			Batch      []struct {
				UUID       string         `json:"uuid"`
				Event      string         `json:"event"`
				DistinctID string         `json:"distinct_id"`
				Timestamp  string         `json:"timestamp"`
				Properties map[string]any `json:"properties"`
			} `json:"batch"`
		}
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		if !body.Historical || body.Batch == nil {
			t.Fatalf("envelope: %s", b)
		}
		for _, e := range body.Batch {
			out = append(out, event{e.UUID, e.Event, e.DistinctID, e.Timestamp, e.Properties})
		}
		return body.APIKey, out
	}
	for _, comp := range []string{"", "gzip"} {
		var buf bytes.Buffer
		e, err := New(&buf, abi.EncoderSpec{Format: FormatPostHogBatch, Compression: comp}, abi.EventColumns, APIKey(`k"1`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.WriteBatch(w.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		raw := buf.Bytes()
		if comp == "gzip" {
			zr, err := gzip.NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ = io.ReadAll(zr)
		}
		key, got := decode(t, raw)
		if key != `k"1` || len(got) != 3 {
			t.Fatalf("key %q, %d events", key, len(got))
		}
		if got[0].UUID != "01020304-0506-0708-090a-0b0c0d0e0f10" || got[0].DistinctID != `u"1` ||
			got[0].Timestamp != "2026-11-28T12:00:00.123456Z" || got[0].Properties["$current_url"] != "https://example.com/ü" {
			t.Errorf("event 0: %+v", got[0])
		}
		if _, ok := got[0].Properties["$elements_chain"]; ok {
			t.Errorf("empty elements_chain sent: %+v", got[0])
		}
		if got[1].Properties["$elements_chain"] != `a:nth-child="1"` || len(got[1].Properties) != 1 {
			t.Errorf("event 1: %+v", got[1])
		}
		if got[2].Properties["$elements_chain"] != "div" || got[2].Properties["$properties"] == nil {
			t.Errorf("event 2 (non-object properties): %+v", got[2])
		}
	}
	var buf bytes.Buffer
	e, _ := New(&buf, abi.EncoderSpec{Format: FormatPostHogBatch}, abi.EventColumns)
	_ = e.Close()
	if buf.String() != `{"api_key":"","historical_migration":true,"batch":[]}` {
		t.Errorf("empty body: %s", buf.String())
	}
	if _, err := New(&buf, abi.EncoderSpec{Format: FormatPostHogBatch, Columns: []abi.ColumnSelect{{Name: "uuid"}}}, abi.EventColumns); err == nil {
		t.Error("a columns selection was accepted")
	}
	if _, err := New(&buf, abi.EncoderSpec{Format: FormatPostHogBatch}, abi.EventColumns[:3]); err == nil {
		t.Error("a schema without timestamp and properties was accepted")
	}
}
