package sdk_test

import (
	"fmt"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
	"github.com/sluicehq/sluice/sdk/sdktest"
)

// jsonlDest is a complete minimal destination, the per-record route (plugins/example is
// the same plugin built to wasm): it reads the events in the guest and writes its own JSON
// lines into one object per run, named after the interval so a retry overwrites it.
type jsonlDest struct {
	sdk.Base // default Validate, Classify, Test, Close
	up       *sdk.Upload
	buf      []byte
	records  int64
}

func (d *jsonlDest) Open(rc *sdk.RunContext) error {
	key := rc.IntervalStart.Format(time.RFC3339) + "-" + rc.IntervalEnd.Format(time.RFC3339) + ".jsonl"
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: key, ContentType: "application/jsonl"})
	d.up = up
	return err
}

func (d *jsonlDest) WriteBatch(b *sdk.Batch) error {
	err := b.Events(func(e *abi.Event) error {
		d.buf = append(d.buf, `{"event":`...)
		d.buf = strconv.AppendQuote(d.buf, e.Event)
		d.buf = append(d.buf, `,"distinct_id":`...)
		d.buf = strconv.AppendQuote(d.buf, e.DistinctID)
		d.buf = append(d.buf, `,"properties":`...)
		d.buf = append(d.buf, e.Properties...)
		d.buf = append(d.buf, "}\n"...)
		d.records++
		return nil
	})
	if err != nil {
		return err
	}
	_, err = d.up.Write(d.buf)
	d.buf = d.buf[:0]
	return err
}

func (d *jsonlDest) Finish() (abi.Result, error) {
	ci, err := d.up.Commit()
	if err != nil {
		return abi.Result{}, err
	}
	return abi.Result{Records: d.records, Bytes: ci.Bytes,
		Outputs: []abi.Output{{Kind: "object", Name: ci.Key, Records: d.records, Bytes: ci.Bytes}}}, nil
}

// A plugin registers its Destination from init; built with
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared, it is a Sluice plugin. Here it
// runs natively against the in-memory host of package sdktest.
func Example() {
	// In the plugin: func init() { sdk.Register(...) }
	sdk.Register(abi.Manifest{
		Name: "jsonl-example", Version: "0.1.0", Capabilities: []string{abi.CapObject},
		Config: []abi.Field{{Name: "bucket_name", Type: abi.TypeString, Required: true, Binding: "object.bucket"}},
	}, func() sdk.Destination { return &jsonlDest{} })

	h := sdktest.New()
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	if err := h.Open(sdktest.Interval(start, map[string]any{"bucket_name": "analytics"})); err != nil {
		panic(err)
	}
	batch := sdktest.Events(
		abi.Event{Event: "$pageview", DistinctID: "u1", Properties: `{"path":"/"}`, Timestamp: start, InsertedAt: start},
		abi.Event{Event: "signup", DistinctID: "u2", Properties: `{}`, Timestamp: start, InsertedAt: start},
	)
	if err := h.WriteBatch(batch); err != nil {
		panic(err)
	}
	res, err := h.Finish()
	if err != nil {
		panic(err)
	}
	h.Close()
	fmt.Printf("%d records in %s\n", res.Records, res.Outputs[0].Name)
	fmt.Print(string(h.Objects[res.Outputs[0].Name]))
	// Output:
	// 2 records in 2026-11-28T12:00:00Z-2026-11-28T13:00:00Z.jsonl
	// {"event":"$pageview","distinct_id":"u1","properties":{"path":"/"}}
	// {"event":"signup","distinct_id":"u2","properties":{}}
}
