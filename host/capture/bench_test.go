package capture_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/capture"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/internal/demo"
)

// batchBodies returns n /batch bodies of 100 demo events (PostHog's SDK shape), each event
// with its own uuid.
func batchBodies(tb testing.TB, n int) [][]byte {
	tb.Helper()
	evs := demo.Events(n*100, time.Now().Add(-time.Hour), time.Now(), 1)
	out := make([][]byte, n)
	for i := range out {
		batch := make([]map[string]any, 100)
		for j := range batch {
			e := evs[i*100+j]
			batch[j] = map[string]any{"event": e.Event, "distinct_id": e.DistinctID, "uuid": uuid.UUID(e.UUID).String(),
				"timestamp": e.Timestamp.Format(time.RFC3339Nano), "properties": json.RawMessage(e.Properties)}
		}
		b, err := json.Marshal(map[string]any{"api_key": "phc_good", "batch": batch})
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

type discard struct{}

func (discard) Insert(context.Context, []abi.Event) error { return nil }

// BenchmarkBatch measures POST /batch of 100 events through the echo handler (no network),
// into nothing (the handler alone) or into the SQLite store, with parallel requests
// (-cpu sets GOMAXPROCS). b.N counts requests; events/s is reported.
//
//	go test -run '^$' -bench Batch -cpu 1,2 -cpuprofile cpu.out ./host/capture/
func BenchmarkBatch(b *testing.B) {
	bodies := batchBodies(b, 64)
	for _, sink := range []string{"discard", "sqlite"} {
		b.Run(sink, func(b *testing.B) {
			var ins capture.Inserter = discard{}
			if sink == "sqlite" {
				st, err := source.NewSQLite(filepath.Join(b.TempDir(), "events.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				ins = st
			}
			e := echo.New()
			capture.Register(e, ins, capture.StaticKeys{"phc_good": 1}, nil)
			var n atomic.Int64
			b.SetParallelism(4) // concurrent requests per GOMAXPROCS, as an HTTP server has
			b.ResetTimer()
			var ru0 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					// fresh uuids, time-ordered as posthog-js's v7: the request's number in
					// the first 12 hex digits, the template's random digits after them
					k := n.Add(1)
					body := bytes.Clone(bodies[int(k)%len(bodies)])
					stamp := fmt.Sprintf("%012x", k)
					i := bytes.Index(body, []byte(`"uuid":"`))
					for i >= 0 {
						copy(body[i+8:], stamp[:8])
						copy(body[i+8+9:], stamp[8:])
						j := bytes.Index(body[i+1:], []byte(`"uuid":"`))
						if j < 0 {
							break
						}
						i += 1 + j
					}
					req := httptest.NewRequest(http.MethodPost, "/batch", bytes.NewReader(body))
					rec := httptest.NewRecorder()
					e.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Errorf("HTTP %d: %s", rec.Code, rec.Body)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "events/s")
			// CPU per event varies far less than wall time on a shared machine.
			var ru syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			cpu := ru.Utime.Nano() + ru.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			b.ReportMetric(float64(cpu)/1e3/float64(b.N*100), "cpu-µs/event")
		})
	}
}
