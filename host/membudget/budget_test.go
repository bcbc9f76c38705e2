package membudget

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// admitted is the result of one Admit call made in a goroutine.
type admitted struct {
	release func()
	err     error
}

func admitAsync(ctx context.Context, b *Budget, waiting chan<- int, id int) <-chan admitted {
	out := make(chan admitted, 1)
	go func() {
		r, err := b.Admit(ctx, func() { waiting <- id })
		out <- admitted{r, err}
	}()
	return out
}

func mustNotYet(t *testing.T, c <-chan admitted, what string) {
	t.Helper()
	select {
	case a := <-c:
		t.Fatalf("%s admitted too early (err %v)", what, a.err)
	case <-time.After(50 * time.Millisecond):
	}
}

func mustAdmit(t *testing.T, c <-chan admitted, what string) func() {
	t.Helper()
	select {
	case a := <-c:
		if a.err != nil {
			t.Fatalf("%s: %v", what, a.err)
		}
		return a.release
	case <-time.After(5 * time.Second):
		t.Fatalf("%s not admitted", what)
		return nil
	}
}

func TestBudgetAdmitsInOrderAndWaits(t *testing.T) {
	b := New(Plan{Runs: 100, PerRun: 40}) // two runs fit
	ctx := context.Background()
	waiting := make(chan int, 10)
	r1 := mustAdmit(t, admitAsync(ctx, b, waiting, 1), "run 1")
	r2 := mustAdmit(t, admitAsync(ctx, b, waiting, 2), "run 2")
	c3 := admitAsync(ctx, b, waiting, 3)
	if id := <-waiting; id != 3 {
		t.Fatalf("waiting reported for run %d, want 3", id)
	}
	c4 := admitAsync(ctx, b, waiting, 4)
	if id := <-waiting; id != 4 {
		t.Fatalf("waiting reported for run %d, want 4", id)
	}
	mustNotYet(t, c3, "run 3")
	if s := b.Stats(); s.Reserved != 80 || s.Waiting != 2 || s.Waits != 2 || s.Admitted != 2 {
		t.Fatalf("stats %+v", s)
	}
	r1()
	r1() // a second release is a no-op
	r3 := mustAdmit(t, c3, "run 3")
	mustNotYet(t, c4, "run 4")
	r2()
	r4 := mustAdmit(t, c4, "run 4")
	r3()
	r4()
	if s := b.Stats(); s.Reserved != 0 || s.Waiting != 0 || s.Admitted != 4 {
		t.Fatalf("stats after all released %+v", s)
	}
	if len(waiting) != 0 {
		t.Fatalf("runs 1 and 2 reported waiting")
	}
}

func TestBudgetWaitEndsWithContext(t *testing.T) {
	b := New(Plan{Runs: 50, PerRun: 40}) // one run fits
	waiting := make(chan int, 10)
	r1 := mustAdmit(t, admitAsync(context.Background(), b, waiting, 1), "run 1")
	ctx, cancel := context.WithCancel(context.Background())
	c2 := admitAsync(ctx, b, waiting, 2)
	<-waiting
	c3 := admitAsync(context.Background(), b, waiting, 3)
	<-waiting
	cancel()
	select {
	case a := <-c2:
		if !errors.Is(a.err, context.Canceled) || a.release != nil {
			t.Fatalf("cancelled wait: release %v, err %v; want context.Canceled", a.release != nil, a.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled wait did not return")
	}
	// The cancelled run left the line: run 3 is next.
	r1()
	mustAdmit(t, c3, "run 3")()
	if s := b.Stats(); s.Reserved != 0 || s.Waiting != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBudgetOneRunAlwaysFits(t *testing.T) {
	// A budget smaller than one run (Plan.Short) still admits one run at a time.
	b := New(Plan{Runs: 10, PerRun: 40, Short: true})
	waiting := make(chan int, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r1 := mustAdmit(t, admitAsync(ctx, b, waiting, 1), "run 1")
	c2 := admitAsync(ctx, b, waiting, 2)
	<-waiting
	mustNotYet(t, c2, "run 2")
	r1()
	mustAdmit(t, c2, "run 2")()
}

func TestNilBudgetAdmitsAll(t *testing.T) {
	var b *Budget
	for range 3 {
		r, err := b.Admit(context.Background(), func() { t.Fatal("nil budget waits") })
		if err != nil {
			t.Fatal(err)
		}
		r()
	}
}

func TestBudgetMetrics(t *testing.T) {
	b := New(Plan{Runs: 100, PerRun: 60})
	reg := prometheus.NewRegistry()
	reg.MustRegister(b)
	r1, err := b.Admit(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Admit(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second run: %v, want a deadline", err)
	}
	r1()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			got[mf.GetName()] = g.GetValue()
		} else {
			got[mf.GetName()] = m.GetCounter().GetValue()
		}
	}
	for name, want := range map[string]float64{
		"sluice_memory_budget_bytes": 100, "sluice_memory_budget_run_bytes": 60,
		"sluice_memory_budget_reserved_bytes": 0, "sluice_memory_budget_waiting_runs": 0,
		"sluice_memory_budget_waits_total": 1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if w := got["sluice_memory_budget_wait_seconds_total"]; w < 0.015 || w > 5 {
		t.Errorf("wait seconds %v, want about 0.02", w)
	}
}
