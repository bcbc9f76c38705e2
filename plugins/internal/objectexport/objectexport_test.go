package objectexport

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
	"github.com/sluicehq/sluice/sdk/sdktest"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// A test destination: the shared loop with a minimal config.
func init() {
	p := &Plugin{Name: "objtest", Store: "bucket", Decode: func(decode func(any) error) (Options, error) {
		var o Options
		err := decode(&o)
		return o, err
	}}
	sdk.Register(abi.Manifest{Name: "objtest", Version: "0.0.1", ABIVersion: "1.0",
		Capabilities: []string{abi.CapObject},
		Config: []abi.Field{PrefixField("bucket"), FileFormatField(), CompressionField(), MaxFileSizeField(),
			LegacyParquetExtensionField(false), PartitionByField(), ColumnsField()}},
		func() sdk.Destination { return &Destination{P: p} })
}

func TestFileKeys(t *testing.T) {
	end := t0.Add(time.Hour)
	base := "2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00"
	cases := []struct {
		o    Options
		n    int
		want string
	}{
		{Options{FileFormat: FormatParquet, Compression: "zstd"}, -1, base + ".parquet"},
		{Options{FileFormat: FormatParquet, Compression: "zstd", LegacyParquetExtension: true}, -1, base + ".parquet.zst"},
		{Options{FileFormat: FormatParquet, Compression: "none", LegacyParquetExtension: true}, 1, base + "-1.parquet"},
		{Options{FileFormat: FormatJSONLines, Compression: "gzip"}, -1, base + ".jsonl.gz"},
		{Options{FileFormat: FormatJSONLines, Compression: "gzip", LegacyParquetExtension: true}, 0, base + "-0.jsonl.gz"},
	}
	for _, c := range cases {
		if got := c.o.FileKey("p", t0, end, c.n); got != "p/"+c.want {
			t.Errorf("%+v: %s, want p/%s", c.o, got, c.want)
		}
	}
}

func TestEventPrefix(t *testing.T) {
	o := Options{Prefix: "ev/{event}/{year}", PartitionBy: PartitionEvent}
	for ev, want := range map[string]string{
		"$pageview":      "ev/$pageview/2026",
		"a/b":            "ev/a%2Fb/2026",
		"..":             "ev/%2E%2E/2026",
		".":              "ev/%2E/2026",
		"":               "ev/(empty)/2026",
		"50% off\tnow":   "ev/50%25%20off%09now/2026",
		"café signup":    "ev/caf%C3%A9%20signup/2026",
		"x?y#z":          "ev/x%3Fy%23z/2026",
		`back\slash`:     `ev/back%5Cslash/2026`,
		"\x00\x7f\u2028": "ev/%00%7F%E2%80%A8/2026",
	} {
		got, err := o.RenderPrefix(t0, t0.Add(time.Hour), ev)
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", ev, got, err, want)
		}
		if err == nil && CheckKey(got) != nil {
			t.Errorf("%q: %q is not a valid key: %v", ev, got, CheckKey(got))
		}
	}
}

func TestCheck(t *testing.T) {
	cases := []struct {
		o     Options
		field string
	}{
		{Options{Prefix: "x/{event}"}, "prefix"},
		{Options{Prefix: "x/{year}", PartitionBy: PartitionEvent}, "prefix"},
		{Options{Prefix: "x/{{event}}", PartitionBy: PartitionEvent}, "prefix"}, // literal braces
		{Options{Prefix: "x/{event}", PartitionBy: "team"}, "partition_by"},
		{Options{FileFormat: "CSV"}, "file_format"},
		{Options{Compression: "rar"}, "compression"},
		{Options{Prefix: "{nope}"}, "prefix"},
		{Options{Columns: []string{"a", "a"}}, "columns"},
		{Options{Prefix: "x/{event}/{day}", PartitionBy: PartitionEvent}, ""},
		{Options{Prefix: "x/{{event}}"}, ""},
	}
	for _, c := range cases {
		err := c.o.Check()
		got := ""
		var fe *sdk.Error
		if errors.As(err, &fe) {
			got = fe.Field
		} else if err != nil {
			got = err.Error()
		}
		if got != c.field {
			t.Errorf("%+v: error %v, want field %q", c.o, err, c.field)
		}
	}
}

// batch makes one batch of events, named by names in order, with padding.
func batch(names []string, pad int) []byte {
	evs := make([]abi.Event, len(names))
	for i, n := range names {
		evs[i] = abi.Event{Event: n, DistinctID: fmt.Sprint(i), Properties: `{"p":"` + strings.Repeat("x", pad) + `"}`,
			Timestamp: t0, InsertedAt: t0.Add(time.Second)}
	}
	return sdktest.Events(evs...)
}

func TestPartitionByEvent(t *testing.T) {
	h := sdktest.New()
	cfg := map[string]any{"prefix": "e/{event}", "partition_by": "event", "columns": []string{"event", "distinct_id"}}
	if err := h.Open(sdktest.Interval(t0, cfg)); err != nil {
		t.Fatal(err)
	}
	batches := [][]string{{"a", "b", "a", "c/d"}, {"b", "b"}, {"c/d", "a"}}
	for _, b := range batches {
		if err := h.WriteBatch(batch(b, 1)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := h.Finish()
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	name := "/2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00.jsonl"
	want := map[string]string{
		"e/a" + name:     `{"event":"a","distinct_id":"0"}` + "\n" + `{"event":"a","distinct_id":"2"}` + "\n" + `{"event":"a","distinct_id":"1"}` + "\n",
		"e/b" + name:     `{"event":"b","distinct_id":"1"}` + "\n" + `{"event":"b","distinct_id":"0"}` + "\n" + `{"event":"b","distinct_id":"1"}` + "\n",
		"e/c%2Fd" + name: `{"event":"c/d","distinct_id":"3"}` + "\n" + `{"event":"c/d","distinct_id":"0"}` + "\n",
	}
	if len(h.Objects) != len(want) {
		t.Fatalf("objects %v", keys(h.Objects))
	}
	for k, v := range want {
		if string(h.Objects[k]) != v {
			t.Errorf("%s: %q, want %q", k, h.Objects[k], v)
		}
	}
	if res.Records != 8 || len(res.Outputs) != 3 || res.Outputs[0].Records != 3 || res.Outputs[2].Records != 2 {
		t.Fatalf("result %+v", res)
	}
}

func keys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestPartitionSplitsEachEventWithItsManifest(t *testing.T) {
	h := sdktest.New()
	cfg := map[string]any{"prefix": "s/{event}", "partition_by": "event", "max_file_size_mb": 1}
	if err := h.Open(sdktest.Interval(t0, cfg)); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 2000) // ~600 KB of each event per batch
	for i := range names {
		names[i] = []string{"x", "y"}[i%2]
	}
	for range 3 {
		if err := h.WriteBatch(batch(names, 500)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := h.Finish()
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	base := "2026-11-28T12:00:00+00:00-2026-11-28T13:00:00+00:00"
	for _, ev := range []string{"x", "y"} {
		var man struct{ Files []string }
		if err := json.Unmarshal(h.Objects["s/"+ev+"/"+base+"_manifest.json"], &man); err != nil {
			t.Fatalf("%s: %v (objects %v)", ev, err, keys(h.Objects))
		}
		want := "s/" + ev + "/" + base + "-0.jsonl,s/" + ev + "/" + base + "-1.jsonl"
		if strings.Join(man.Files, ",") != want {
			t.Errorf("%s manifest %v", ev, man.Files)
		}
		if n := strings.Count(string(h.Objects["s/"+ev+"/"+base+"-0.jsonl"]), `"event":"`+ev+`"`); n != 2000 {
			t.Errorf("%s file 0 has %d of its events, want 2000", ev, n)
		}
	}
	if res.Records != 6000 || len(res.Outputs) != 6 {
		t.Fatalf("result %+v", res)
	}
}

func TestPartitionCap(t *testing.T) {
	h := sdktest.New()
	if err := h.Open(sdktest.Interval(t0, map[string]any{"prefix": "{event}", "partition_by": "event"})); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range MaxPartitions {
		names = append(names, fmt.Sprint("e", i))
	}
	if err := h.WriteBatch(batch(names, 1)); err != nil {
		t.Fatal(err)
	}
	err := h.WriteBatch(batch([]string{"e0", "one too many"}, 1))
	var ee *sdktest.ExportError
	if !errors.As(err, &ee) || ee.Err.Field != "partition_by" || !strings.Contains(ee.Err.Message, `"one too many"`) {
		t.Fatalf("17th event name: %v", err)
	}
	h.Close()
}

func TestPartitionedTestReport(t *testing.T) {
	h := sdktest.New()
	rep, err := h.Test(sdktest.Interval(t0, map[string]any{"prefix": "t/{event}", "partition_by": "event"}))
	if err != nil || len(rep.Steps) != 3 || !rep.Steps[2].OK || !strings.Contains(rep.Steps[1].Message, "t/$pageview/") {
		t.Fatalf("%+v %v", rep, err)
	}
	if len(h.Objects) != 0 {
		t.Fatal("the test left an object")
	}
}
