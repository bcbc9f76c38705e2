package source_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/internal/demo"
)

// BenchmarkSQLiteInsert measures the embedded store alone: concurrent Inserts of 100 demo
// events, 4 callers per GOMAXPROCS, with time-ordered uuids (v7, as posthog-js sends) or
// random ones (v4, as most server SDKs send). b.N counts Inserts.
//
//	go test -run '^$' -bench SQLiteInsert -cpu 1,2 ./host/source/
func BenchmarkSQLiteInsert(b *testing.B) {
	b.Run("v7", func(b *testing.B) { benchInsert(b, false) })
	b.Run("v4", func(b *testing.B) { benchInsert(b, true) })
}

func benchInsert(b *testing.B, random bool) {
	s, err := source.NewSQLite(filepath.Join(b.TempDir(), "events.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tmpl := demo.Events(100, time.Now().Add(-time.Minute), time.Now(), 1)
	var seq atomic.Uint64
	b.SetParallelism(4)
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		evs := make([]abi.Event, len(tmpl))
		for pb.Next() {
			copy(evs, tmpl)
			for i := range evs {
				binary.BigEndian.PutUint64(evs[i].UUID[:8], uint64(time.Now().UnixNano()))
				binary.BigEndian.PutUint64(evs[i].UUID[8:], seq.Add(1))
				if random {
					_, _ = rand.Read(evs[i].UUID[:])
				}
				evs[i].InsertedAt = time.Now()
			}
			if err := s.Insert(context.Background(), evs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/1e3/float64(b.N*100), "cpu-µs/event")
}

// cpuTime is this process's user + system CPU time: on a shared machine it varies far less
// than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
