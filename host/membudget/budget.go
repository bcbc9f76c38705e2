package membudget

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Budget admits runs against a capacity in bytes: Admit reserves a run's allowance, waiting
// (first come, first served) while the rest of the budget is reserved by others. A nil
// *Budget admits everything at once.
type Budget struct {
	capacity int64
	perRun   int64

	mu       sync.Mutex
	used     int64
	waiters  []*waiter // oldest first
	admitted int64     // runs admitted so far
	waits    int64     // of which had to wait
	waited   time.Duration
}

type waiter struct {
	n     int64
	ready chan struct{} // closed when the reservation is granted
}

// New returns a Budget admitting against p.Capacity(), each run reserving p.PerRun.
func New(p Plan) *Budget {
	return &Budget{capacity: p.Capacity(), perRun: p.PerRun}
}

// Admit reserves one run's allowance. If the budget is spent it calls waiting once (the
// caller logs "waiting for memory budget") and waits until earlier runs release enough, or
// until ctx ends (then it returns an error wrapping ctx's). Runs are admitted in the order
// they asked. release gives the allowance back; it must be called exactly once.
func (b *Budget) Admit(ctx context.Context, waiting func()) (release func(), err error) {
	if b == nil {
		return func() {}, nil
	}
	n := min(b.perRun, b.capacity) // a run always fits in an empty budget
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.capacity {
		b.used += n
		b.admitted++
		b.mu.Unlock()
		return b.releaser(n), nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.waits++
	b.mu.Unlock()

	if waiting != nil {
		waiting()
	}
	start := time.Now()
	select {
	case <-w.ready:
		b.mu.Lock()
		b.waited += time.Since(start)
		b.mu.Unlock()
		return b.releaser(n), nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waited += time.Since(start)
	select {
	case <-w.ready: // granted meanwhile: give it back
		b.used -= n
		b.admitted--
		b.grantLocked()
	default:
		for i, x := range b.waiters {
			if x == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
		b.grantLocked() // the next waiter may fit now that this one left the head
	}
	return nil, fmt.Errorf("waiting for memory budget: %w", context.Cause(ctx))
}

func (b *Budget) releaser(n int64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.used -= n
			b.grantLocked()
			b.mu.Unlock()
		})
	}
}

// grantLocked admits waiters from the head of the line while they fit.
func (b *Budget) grantLocked() {
	for len(b.waiters) > 0 && b.used+b.waiters[0].n <= b.capacity {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.used += w.n
		b.admitted++
		close(w.ready)
	}
}

// Stats is a snapshot of a Budget.
type Stats struct {
	Capacity, PerRun, Reserved int64
	Waiting                    int           // runs waiting now
	Admitted, Waits            int64         // runs admitted so far; runs that had to wait
	Waited                     time.Duration // total time runs spent waiting
}

// Stats returns the budget's current state.
func (b *Budget) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{Capacity: b.capacity, PerRun: b.perRun, Reserved: b.used, Waiting: len(b.waiters),
		Admitted: b.admitted, Waits: b.waits, Waited: b.waited}
}

var (
	descCapacity = prometheus.NewDesc("sluice_memory_budget_bytes", "Bytes of the memory budget available to runs (--memory-limit-mib less the host's fixed overhead).", nil, nil)
	descPerRun   = prometheus.NewDesc("sluice_memory_budget_run_bytes", "Bytes each run reserves from the memory budget before it starts.", nil, nil)
	descReserved = prometheus.NewDesc("sluice_memory_budget_reserved_bytes", "Bytes of the memory budget reserved by executing runs.", nil, nil)
	descWaiting  = prometheus.NewDesc("sluice_memory_budget_waiting_runs", "Runs waiting for memory budget now.", nil, nil)
	descWaits    = prometheus.NewDesc("sluice_memory_budget_waits_total", "Runs that had to wait for memory budget before starting.", nil, nil)
	descWaited   = prometheus.NewDesc("sluice_memory_budget_wait_seconds_total", "Time runs spent waiting for memory budget.", nil, nil)
)

// Describe implements prometheus.Collector.
func (b *Budget) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCapacity, descPerRun, descReserved, descWaiting, descWaits, descWaited} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (b *Budget) Collect(ch chan<- prometheus.Metric) {
	s := b.Stats()
	ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(s.Capacity))
	ch <- prometheus.MustNewConstMetric(descPerRun, prometheus.GaugeValue, float64(s.PerRun))
	ch <- prometheus.MustNewConstMetric(descReserved, prometheus.GaugeValue, float64(s.Reserved))
	ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(s.Waiting))
	ch <- prometheus.MustNewConstMetric(descWaits, prometheus.CounterValue, float64(s.Waits))
	ch <- prometheus.MustNewConstMetric(descWaited, prometheus.CounterValue, s.Waited.Seconds())
}
