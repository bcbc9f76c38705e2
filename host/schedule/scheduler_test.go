package schedule

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type recorder struct {
	mu   sync.Mutex
	ends []time.Time
	ch   chan time.Time
}

func newRecorder() *recorder { return &recorder{ch: make(chan time.Time, 100)} }

func (r *recorder) fire(_ context.Context, end time.Time) error {
	r.mu.Lock()
	r.ends = append(r.ends, end)
	r.mu.Unlock()
	r.ch <- end
	return nil
}

func (r *recorder) wait(t *testing.T) time.Time {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no fire within 5s")
	}
	return time.Time{}
}

func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case e := <-r.ch:
		t.Fatalf("unexpected fire for %s", e)
	case <-time.After(d):
	}
}

func startFake(t *testing.T, at string, opts ...Option) (*Scheduler, *clockwork.FakeClock) {
	t.Helper()
	clock := clockwork.NewFakeClockAt(utc(at))
	s, err := New(clock, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, clock
}

func blockTimers(t *testing.T, clock *clockwork.FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("waiting for %d timers: %v", n, err)
	}
}

func TestSchedulerFakeClockThreeHours(t *testing.T) {
	s, clock := startFake(t, "2026-01-01T00:30:00Z")
	rec := newRecorder()
	if err := s.Upsert("exp-1", Spec{Interval: IntervalHour}, rec.fire); err != nil {
		t.Fatal(err)
	}
	s.Start()
	want := []string{"2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z", "2026-01-01T03:00:00Z"}
	for _, w := range want {
		blockTimers(t, clock, 1)
		clock.Advance(time.Hour)
		if got := rec.wait(t); !got.Equal(utc(w)) {
			t.Fatalf("fired end %s, want %s", got, w)
		}
	}
	rec.none(t, 200*time.Millisecond)
	if len(rec.ends) != 3 {
		t.Fatalf("%d fires, want 3", len(rec.ends))
	}
	if got := s.NextFire("exp-1"); !got.Equal(utc("2026-01-01T04:00:00Z")) {
		t.Fatalf("NextFire = %s", got)
	}
}

// A failed hand-over keeps its interval end: the next trigger gives it again, first.
func TestSchedulerRetriesFailedFire(t *testing.T) {
	s, clock := startFake(t, "2026-01-01T00:30:00Z")
	rec := newRecorder()
	var failOnce sync.Once
	fire := func(ctx context.Context, end time.Time) error {
		var err error
		failOnce.Do(func() { err = errors.New("storage is down") })
		if err != nil {
			rec.ch <- time.Time{} // a failed attempt
			return err
		}
		return rec.fire(ctx, end)
	}
	if err := s.Upsert("exp-1", Spec{Interval: IntervalHour}, fire); err != nil {
		t.Fatal(err)
	}
	s.Start()
	blockTimers(t, clock, 1)
	clock.Advance(time.Hour) // 01:00 fails
	if got := rec.wait(t); !got.IsZero() {
		t.Fatalf("want the failed attempt first, got %s", got)
	}
	blockTimers(t, clock, 1)
	clock.Advance(time.Hour) // 02:00: 01:00 again, then 02:00
	for _, w := range []string{"2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"} {
		if got := rec.wait(t); !got.Equal(utc(w)) {
			t.Fatalf("fired end %s, want %s", got, w)
		}
	}
}

func TestSchedulerSettleDelayPassesEnd(t *testing.T) {
	s, clock := startFake(t, "2026-01-01T23:00:00Z", WithSettleDelay(45*time.Second))
	rec := newRecorder()
	if err := s.Upsert("exp-day", Spec{Interval: IntervalDay, Timezone: "UTC"}, rec.fire); err != nil {
		t.Fatal(err)
	}
	s.Start()
	blockTimers(t, clock, 1)
	clock.Advance(time.Hour) // 00:00: end reached, settle not yet
	rec.none(t, 100*time.Millisecond)
	blockTimers(t, clock, 1)
	clock.Advance(45 * time.Second)
	if got := rec.wait(t); !got.Equal(utc("2026-01-02T00:00:00Z")) {
		t.Fatalf("end = %s", got)
	}
}

func TestSchedulerDSTDaily(t *testing.T) {
	// New York, daily at 00:00 local, across the spring-forward day.
	s, clock := startFake(t, "2026-03-07T12:00:00Z")
	rec := newRecorder()
	if err := s.Upsert("exp-ny", Spec{Interval: IntervalDay, Timezone: "America/New_York"}, rec.fire); err != nil {
		t.Fatal(err)
	}
	s.Start()
	for _, w := range []string{"2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z", "2026-03-10T04:00:00Z"} {
		blockTimers(t, clock, 1)
		clock.Advance(utc(w).Sub(clock.Now()))
		if got := rec.wait(t); !got.Equal(utc(w)) {
			t.Fatalf("end = %s, want %s", got, w)
		}
	}
}

func TestSchedulerUpsertRemove(t *testing.T) {
	s, clock := startFake(t, "2026-01-01T00:00:30Z")
	a, b := newRecorder(), newRecorder()
	if err := s.Upsert("a", Spec{Interval: Interval5Minutes}, a.fire); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert("b", Spec{Interval: Interval15Minutes}, b.fire); err != nil {
		t.Fatal(err)
	}
	s.Start()
	blockTimers(t, clock, 2)
	clock.Advance(5 * time.Minute)
	if got := a.wait(t); !got.Equal(utc("2026-01-01T00:05:00Z")) {
		t.Fatalf("a end = %s", got)
	}
	// Switch a to hourly; remove b.
	if err := s.Upsert("a", Spec{Interval: IntervalHour}, a.fire); err != nil {
		t.Fatal(err)
	}
	s.Remove("b")
	blockTimers(t, clock, 1)
	clock.Advance(55 * time.Minute) // 01:00:30
	if got := a.wait(t); !got.Equal(utc("2026-01-01T01:00:00Z")) {
		t.Fatalf("a end after upsert = %s", got)
	}
	a.none(t, 100*time.Millisecond)
	b.none(t, 10*time.Millisecond)
	if err := s.Upsert("x", Spec{Interval: "month"}, a.fire); err == nil {
		t.Fatal("invalid spec accepted")
	}
}

func TestSchedulerEndedSpecNotScheduled(t *testing.T) {
	s, _ := startFake(t, "2026-01-01T00:00:00Z")
	rec := newRecorder()
	if err := s.Upsert("old", Spec{Interval: IntervalHour, EndAt: tp("2025-12-31T00:00:00Z")}, rec.fire); err != nil {
		t.Fatal(err)
	}
	if got := s.NextFire("old"); !got.IsZero() {
		t.Fatalf("NextFire = %s", got)
	}
}

func TestSchedulerRealClockStartStop(t *testing.T) {
	s, err := New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert("e", Spec{Interval: Interval5Minutes}, func(context.Context, time.Time) error { return nil }); err != nil {
		t.Fatal(err)
	}
	s.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert("f", Spec{Interval: Interval5Minutes}, func(context.Context, time.Time) error { return nil }); err == nil {
		t.Fatal("Upsert after Stop accepted")
	}
}

// Issue 17: a 5-minute export with an offset registers and fires at the shifted ends.
func TestSchedulerSubHourOffset(t *testing.T) {
	s, clock := startFake(t, "2026-01-01T00:00:30Z")
	rec := newRecorder()
	if err := s.Upsert("exp-5m", Spec{Interval: Interval5Minutes, Offset: 90 * time.Second}, rec.fire); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	s.Start()
	if got := s.NextFire("exp-5m"); !got.Equal(utc("2026-01-01T00:01:30Z")) {
		t.Fatalf("NextFire = %s", got)
	}
	for _, w := range []string{"2026-01-01T00:01:30Z", "2026-01-01T00:06:30Z"} {
		blockTimers(t, clock, 1)
		clock.Advance(utc(w).Sub(clock.Now()))
		if got := rec.wait(t); !got.Equal(utc(w)) {
			t.Fatalf("fired end %s, want %s", got, w)
		}
	}
}

// An Upsert of an unchanged spec while that export's fire runs and calls back into the
// Scheduler (the host removes an export paused elsewhere) must not deadlock: a host's
// schedule sync does exactly this while its scheduler fires.
func TestSchedulerUpsertDuringFireThatCallsBack(t *testing.T) {
	s, clock := startFake(t, "2026-01-01T00:30:00Z")
	inFire, upserted := make(chan struct{}), make(chan error, 1)
	done := make(chan struct{})
	spec := Spec{Interval: IntervalHour}
	var fire FireFunc
	fire = func(ctx context.Context, end time.Time) error {
		close(inFire)
		time.Sleep(200 * time.Millisecond) // the Upsert below runs meanwhile
		s.Remove("other")
		close(done)
		return nil
	}
	if err := s.Upsert("exp-1", spec, fire); err != nil {
		t.Fatal(err)
	}
	s.Start()
	blockTimers(t, clock, 1)
	clock.Advance(time.Hour)
	<-inFire
	go func() { upserted <- s.Upsert("exp-1", spec, fire) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("deadlock: the fire's Remove waits for the Upsert, which waits for the fire")
	}
	if err := <-upserted; err != nil {
		t.Fatal(err)
	}
}
