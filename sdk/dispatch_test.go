package sdk_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
	"github.com/sluicehq/sluice/sdk/sdktest"
)

// hostDest exercises the SDK's wrappers: it panics on demand, counts events read in the
// guest, and writes through both an encoder and raw bytes.
type hostDest struct {
	sdk.Base
	up     *sdk.Upload
	enc    *sdk.Encoder
	panics bool
	events int
}

func (d *hostDest) Open(rc *sdk.RunContext) error {
	var cfg struct {
		Panic bool `json:"panic"`
	}
	if err := rc.Config(&cfg); err != nil {
		return err
	}
	d.panics = cfg.Panic
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: "out/" + rc.RunID + ".jsonl"})
	if err != nil {
		return err
	}
	d.up = up
	d.enc, err = up.Encoder(abi.EncoderSpec{Format: "jsonl", Columns: []abi.ColumnSelect{{Name: "event"}, {Name: "inserted_at", As: "_inserted_at"}}})
	return err
}

func (d *hostDest) WriteBatch(b *sdk.Batch) error {
	if d.panics {
		var m map[string]int
		m["boom"]++
	}
	if err := b.Events(func(e *abi.Event) error { d.events++; return nil }); err != nil {
		return err
	}
	sdk.Logger().With("records", b.Records()).WithGroup("batch").Info("got batch", "events", d.events, "note", "two words")
	if err := sdk.Metric("batches", 1); err != nil {
		return err
	}
	return d.enc.WriteBatch(b)
}

func (d *hostDest) Finish() (abi.Result, error) {
	if err := d.enc.Close(); err != nil {
		return abi.Result{}, err
	}
	d.up.Write([]byte("# end\n"))
	ci, err := d.up.Commit()
	if err != nil {
		return abi.Result{}, err
	}
	return abi.Result{Records: int64(d.events), Bytes: ci.Bytes,
		Outputs: []abi.Output{{Kind: "object", Name: ci.Key}}}, nil
}

func register() {
	sdk.Register(abi.Manifest{Name: "hosttest", Version: "0.0.1", Capabilities: []string{"object"}},
		func() sdk.Destination { return &hostDest{} })
}

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func events(n int) []byte {
	evs := make([]abi.Event, n)
	for i := range evs {
		evs[i] = abi.Event{Event: "e", Properties: "{}", Timestamp: t0, InsertedAt: t0.Add(time.Second)}
	}
	return sdktest.Events(evs...)
}

func TestRunThroughExports(t *testing.T) {
	register()
	h := sdktest.New()
	if err := h.Open(sdktest.Interval(t0, nil)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := h.WriteBatch(events(3)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := h.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	got := string(h.Objects["out/run-1.jsonl"])
	want := strings.Repeat(`{"event":"e","_inserted_at":"2026-11-28T12:00:01.000000Z"}`+"\n", 6) + "# end\n"
	if got != want {
		t.Fatalf("object:\n%s\nwant:\n%s", got, want)
	}
	if res.Records != 6 || res.Bytes != int64(len(want)) || res.Outputs[0].Name != "out/run-1.jsonl" {
		t.Fatalf("result %+v", res)
	}
	if h.Metrics["batches"] != 2 {
		t.Fatalf("metrics %v", h.Metrics)
	}
	if len(h.Logs) != 2 || h.Logs[0] != `INFO got batch records=3 batch.events=3 batch.note="two words"` {
		t.Fatalf("logs %q", h.Logs)
	}
}

func TestPanicIsRecovered(t *testing.T) {
	register()
	h := sdktest.New()
	if err := h.Open(sdktest.Interval(t0, map[string]any{"panic": true})); err != nil {
		t.Fatal(err)
	}
	err := h.WriteBatch(events(1))
	var ee *sdktest.ExportError
	if !errors.As(err, &ee) || ee.Err.Status != "internal" ||
		!strings.Contains(ee.Err.Message, "assignment to entry in nil map") || !strings.Contains(ee.Err.Message, "WriteBatch") {
		t.Fatalf("got %v", err)
	}
	// A host that calls finish anyway gets the failure, not a committed partial run.
	if res, err := h.Finish(); err == nil || !strings.Contains(err.Error(), "finish after a failed write_batch") {
		t.Fatalf("finish after a failed write_batch: %+v, %v", res, err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if len(h.Objects) != 0 {
		t.Fatal("an upload of a failed run was committed")
	}
	// The instance is still usable: a second run succeeds.
	if err := h.Open(sdktest.Interval(t0, nil)); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteBatch(events(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestHostErrorReachesTheHost(t *testing.T) {
	register()
	h := sdktest.New()
	h.Fail = func(op string) (abi.Status, abi.Error) {
		if op == "upload_open" {
			return abi.StatusFatalIO, abi.Error{Message: "The specified bucket does not exist", Code: "NoSuchBucket"}
		}
		return abi.StatusOK, abi.Error{}
	}
	err := h.Open(sdktest.Interval(t0, nil))
	var ee *sdktest.ExportError
	if !errors.As(err, &ee) || ee.Err.Status != "fatal_io" || ee.Err.Code != "NoSuchBucket" ||
		!strings.Contains(ee.Err.Message, "bucket does not exist") {
		t.Fatalf("got %v", err)
	}
	if err := h.WriteBatch(events(1)); err == nil {
		t.Fatal("write_batch after a failed open succeeded")
	}
	c, err := h.Classify(ee.Err, 1)
	if err != nil || c.Outcome != abi.OutcomeFail {
		t.Fatalf("classify: %+v %v", c, err)
	}
	h.Close()
}

func TestLogEnabledIsChecked(t *testing.T) {
	register()
	h := sdktest.New()
	h.LogLevel = abi.LevelWarn
	sdk.Log(slog.LevelInfo, "dropped")
	sdk.Log(slog.LevelWarn, "kept", "k", "v")
	if len(h.Logs) != 1 || h.Logs[0] != "WARN kept k=v" {
		t.Fatalf("%q", h.Logs)
	}
}

func TestNoRegistration(t *testing.T) {
	// Describe works for any registered plugin and returns the manifest with defaults.
	register()
	h := sdktest.New()
	m, err := h.Describe()
	if err != nil || m.Name != "hosttest" || m.ABIVersion != "1.0" {
		t.Fatalf("%+v %v", m, err)
	}
	rep, err := h.Test(sdktest.Interval(t0, nil))
	if err != nil || len(rep.Steps) != 1 || !rep.Steps[0].OK {
		t.Fatalf("%+v %v", rep, err)
	}
}
