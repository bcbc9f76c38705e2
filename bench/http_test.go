package bench

import (
	"context"
	"os"
	"strconv"
	"testing"
)

func loadHTTPPlugin(tb testing.TB) *WASM {
	tb.Helper()
	path, err := HTTPPluginPath()
	if err != nil {
		tb.Skipf("skipping: %v", err)
	}
	w, err := LoadHTTPWASM(context.Background(), path)
	if err != nil {
		tb.Fatalf("load %s: %v", path, err)
	}
	tb.Cleanup(func() { w.Close(context.Background()) })
	return w
}

// TestHTTPWASMMatchesNative: both paths deliver every event in the same number of requests
// and the same bytes.
func TestHTTPWASMMatchesNative(t *testing.T) {
	w := loadHTTPPlugin(t)
	ctx := context.Background()
	d := NewData(2500, 1000, 2)
	rw, rn := NewHTTPReceiver(), NewHTTPReceiver()
	defer rw.Close()
	defer rn.Close()
	a, err := w.RunHTTP(ctx, rw.URL+"/batch", 300, d)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RunHTTPNative(ctx, rn.URL+"/batch", 300, d)
	if err != nil {
		t.Fatal(err)
	}
	if a.Records != 2500 || b.Records != 2500 || rw.Requests.Load() != 9 || rn.Requests.Load() != 9 ||
		rw.Bytes.Load() != rn.Bytes.Load() {
		t.Fatalf("wasm %+v (%d requests, %d bytes), native %+v (%d requests, %d bytes)",
			a, rw.Requests.Load(), rw.Bytes.Load(), b, rn.Requests.Load(), rn.Bytes.Load())
	}
}

// BenchmarkHTTPDelivery: events/s delivered to a discarding loopback receiver, 1000 events
// per request (SLUICE_BENCH_EVENTS events per export, default 200,000); wasm then native,
// or native first with SLUICE_BENCH_NATIVE_FIRST=1.
func BenchmarkHTTPDelivery(b *testing.B) {
	events := 200_000
	if s := os.Getenv("SLUICE_BENCH_EVENTS"); s != "" {
		events, _ = strconv.Atoi(s)
	}
	d := NewData(events, 10_000, 4)
	recv := NewHTTPReceiver()
	defer recv.Close()
	ctx := context.Background()
	subs := []struct {
		name string
		fn   func(b *testing.B)
	}{{"wasm", func(b *testing.B) {
		w := loadHTTPPlugin(b)
		for b.Loop() {
			if _, err := w.RunHTTP(ctx, recv.URL+"/batch", 1000, d); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}}, {"native", func(b *testing.B) {
		for b.Loop() {
			if _, err := RunHTTPNative(ctx, recv.URL+"/batch", 1000, d); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}}}
	if os.Getenv("SLUICE_BENCH_NATIVE_FIRST") != "" { // alternate the order between runs
		subs[0], subs[1] = subs[1], subs[0]
	}
	for _, s := range subs {
		b.Run(s.name, s.fn)
	}
}
