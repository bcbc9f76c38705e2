package schedule

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

type batchRecorder struct {
	mu      sync.Mutex
	calls   [][]Due
	running int
	overlap bool
	fail    error
	panic   bool
}

func (r *batchRecorder) fn(_ context.Context, due []Due) error {
	r.mu.Lock()
	r.running++
	r.overlap = r.overlap || r.running > 1
	r.calls = append(r.calls, append([]Due(nil), due...))
	fail, pan := r.fail, r.panic
	r.mu.Unlock()
	time.Sleep(5 * time.Millisecond) // long enough for a second call to overlap, if it could
	r.mu.Lock()
	r.running--
	r.mu.Unlock()
	if pan {
		panic("boom")
	}
	return fail
}

// fireAll fires n exports at once, as gocron does at a tick, and returns their errors.
func fireAll(b *Batch, n int, end time.Time) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.Fire(fmt.Sprintf("e%04d", i))(context.Background(), end)
		}()
	}
	wg.Wait()
	return errs
}

func TestBatchCoalescesFires(t *testing.T) {
	end := utc("2026-01-01T00:05:00Z")
	for _, tc := range []struct {
		name     string
		fires    int
		max      int
		maxCalls int
	}{
		{"one fire, one call", 1, 500, 1},
		{"a tick of 1,000 exports in calls of at most 100", 1000, 100, 20},
		{"a tick of 2,000 exports in calls of at most 500", 2000, 500, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &batchRecorder{}
			b := NewBatch(context.Background(), rec.fn, tc.max, 50*time.Millisecond)
			for i, err := range fireAll(b, tc.fires, end) {
				if err != nil {
					t.Fatalf("fire %d: %v", i, err)
				}
			}
			seen := map[string]int{}
			for _, c := range rec.calls {
				if len(c) > tc.max {
					t.Errorf("a call of %d ends, max %d", len(c), tc.max)
				}
				for _, d := range c {
					seen[d.ExportID]++
					if !d.End.Equal(end) {
						t.Errorf("%s: end %s, want %s", d.ExportID, d.End, end)
					}
				}
			}
			if len(seen) != tc.fires {
				t.Errorf("%d exports handed over, want %d", len(seen), tc.fires)
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("%s handed over %d times", id, n)
				}
			}
			if len(rec.calls) > tc.maxCalls {
				t.Errorf("%d calls for %d fires, want at most %d", len(rec.calls), tc.fires, tc.maxCalls)
			}
			if rec.overlap {
				t.Error("two calls ran at once")
			}
		})
	}
}

func TestBatchFailureReachesEveryFire(t *testing.T) {
	end := utc("2026-01-01T00:05:00Z")
	for _, tc := range []struct {
		name string
		rec  *batchRecorder
		want string
	}{
		{"error", &batchRecorder{fail: errors.New("database is locked")}, "database is locked"},
		{"panic", &batchRecorder{panic: true}, "panicked: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBatch(context.Background(), tc.rec.fn, 10, 20*time.Millisecond)
			for i, err := range fireAll(b, 25, end) {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("fire %d: %v, want %q", i, err, tc.want)
				}
			}
		})
	}
}

func TestBatchFireStopsWithItsContext(t *testing.T) {
	release := make(chan struct{})
	b := NewBatch(context.Background(), func(context.Context, []Due) error { <-release; return nil }, 1, time.Millisecond)
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Fire("e1")(ctx, utc("2026-01-01T00:05:00Z")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
}

// The Scheduler with a Batch: every export due at one tick is handed over in a few
// calls, and a failed batch hands its ends over again at the next tick, before the
// next end.
func TestSchedulerWithBatch(t *testing.T) {
	s, clock := startFake(t, "2026-01-01T00:01:00Z", WithSettleDelay(10*time.Second))
	rec := &batchRecorder{fail: errors.New("database is locked")}
	b := s.NewBatch(rec.fn, 100, 20*time.Millisecond)
	const n = 250
	spec := Spec{Interval: Interval5Minutes}
	for i := range n {
		if err := s.Upsert(fmt.Sprintf("e%04d", i), spec, b.Fire(fmt.Sprintf("e%04d", i))); err != nil {
			t.Fatal(err)
		}
	}
	s.Start()
	waitCalls := func(ends int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			rec.mu.Lock()
			got := 0
			for _, c := range rec.calls {
				got += len(c)
			}
			rec.mu.Unlock()
			if got >= ends {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d ends handed over, want %d", got, ends)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	blockTimers(t, clock, n)
	clock.Advance(4*time.Minute + 10*time.Second) // 00:05:10: end 00:05 is due
	waitCalls(n)
	rec.mu.Lock()
	first := len(rec.calls)
	rec.fail = nil
	rec.mu.Unlock()
	if first > n/10 { // 3 when nothing is slow; the gathering window is wall time
		t.Errorf("%d calls for one tick of %d exports", first, n)
	}
	blockTimers(t, clock, n)
	clock.Advance(5 * time.Minute) // 00:10:10: 00:05 again (it failed), then 00:10
	waitCalls(3 * n)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var ends []time.Time
	for _, c := range rec.calls[first:] {
		for _, d := range c {
			if d.ExportID == "e0007" {
				ends = append(ends, d.End)
			}
		}
	}
	if len(ends) != 2 || !ends[0].Equal(utc("2026-01-01T00:05:00Z")) || !ends[1].Equal(utc("2026-01-01T00:10:00Z")) {
		t.Errorf("after the failed tick e0007 got %v, want 00:05 then 00:10", ends)
	}
}

// A fire whose own context ends (gocron cancels an export's context when the export is
// removed, as the host does for an export paused elsewhere) does not fail the rest of its
// batch: the batch runs with the Batch's context.
func TestBatchOutlivesOneFiresContext(t *testing.T) {
	end := utc("2026-01-01T00:05:00Z")
	var got []Due
	var mu sync.Mutex
	b := NewBatch(context.Background(), func(ctx context.Context, due []Due) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		mu.Lock()
		got = append(got, due...)
		mu.Unlock()
		return nil
	}, 500, 100*time.Millisecond)
	removed, remove := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- b.Fire("paused")(removed, end) }()
	time.Sleep(20 * time.Millisecond) // "paused" opened the batch
	remove()
	for i, err := range fireAll(b, 20, end) {
		if err != nil {
			t.Errorf("fire %d: %v", i, err)
		}
	}
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("the removed export's fire: %v, want context.Canceled", err)
	}
	if len(got) != 21 {
		t.Errorf("%d ends handed over, want 21", len(got))
	}
}

// Stopping the Scheduler cancels a Batch made by it.
func TestSchedulerBatchStopsWithTheScheduler(t *testing.T) {
	s, err := New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch(func(ctx context.Context, _ []Due) error { <-ctx.Done(); return ctx.Err() }, 1, time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- b.Fire("e1")(context.Background(), utc("2026-01-01T00:05:00Z")) }()
	time.Sleep(20 * time.Millisecond)
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the batch outlived the scheduler")
	}
}
