package schedule

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Due is one interval end of one export, handed to a BatchFunc.
type Due struct {
	ExportID string
	End      time.Time
}

// BatchFunc handles many interval ends at once. An error fails every one of them: each
// stays pending in its export's entry and is handed over again at the next trigger.
type BatchFunc func(ctx context.Context, due []Due) error

// Batch coalesces the fires of exports that come due together (every `every 5 minutes`
// export of a host fires in the same second) into calls of one BatchFunc, at most Max ends
// per call, one call at a time. A host with 10,000 exports then stores a tick's runs and
// jobs in a few dozen statements instead of one transaction per export, all 10,000 of them
// fighting for the database at once (docs/performance.md, issue 16).
//
// Fire(exportID) is the FireFunc to register with Upsert: it joins the batch being
// gathered and returns that batch's result, so the Scheduler's bookkeeping (an end is
// done only once handed over) is unchanged.
type Batch struct {
	ctx    context.Context
	fn     BatchFunc
	max    int
	window time.Duration

	run sync.Mutex // one BatchFunc call at a time

	mu      sync.Mutex
	pending *pendingBatch
}

type pendingBatch struct {
	due  []Due
	done chan struct{}
	err  error
}

// NewBatch returns a Batch calling fn with up to max ends (default 500), gathered for
// window (default 20 ms) after the first one arrives. fn runs with ctx, not with the
// context of any one fire: gocron cancels an export's context when the export is removed,
// which must not fail the other exports of its batch. Scheduler.NewBatch passes the
// Scheduler's own context, cancelled by Stop.
func NewBatch(ctx context.Context, fn BatchFunc, max int, window time.Duration) *Batch {
	if max <= 0 {
		max = 500
	}
	if window <= 0 {
		window = 20 * time.Millisecond
	}
	return &Batch{ctx: ctx, fn: fn, max: max, window: window}
}

// Fire returns the FireFunc of one export: it hands (exportID, end) to the next batch and
// waits for that batch's result, or for ctx.
func (b *Batch) Fire(exportID string) FireFunc {
	return func(ctx context.Context, end time.Time) error {
		p := b.join(Due{ExportID: exportID, End: end})
		select {
		case <-p.done:
			return p.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// join adds d to the batch being gathered, starting one (and its flush) if none is.
func (b *Batch) join(d Due) *pendingBatch {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pending
	if p == nil {
		p = &pendingBatch{done: make(chan struct{})}
		b.pending = p
		go b.flush(p, true)
	}
	p.due = append(p.due, d)
	if len(p.due) >= b.max {
		b.pending = nil // full: flush it now, the next end starts a new one
		go b.flush(p, false)
	}
	return p
}

// flush calls fn with p's ends after the gathering window (wait) or at once, unless the
// other path has already taken p.
func (b *Batch) flush(p *pendingBatch, wait bool) {
	ctx := b.ctx
	if wait {
		t := time.NewTimer(b.window)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		b.mu.Lock()
		if b.pending != p { // taken full by join: its own flush runs it
			b.mu.Unlock()
			return
		}
		b.pending = nil
		b.mu.Unlock()
	}
	b.run.Lock()
	defer b.run.Unlock()
	defer close(p.done)
	defer func() {
		if r := recover(); r != nil {
			p.err = fmt.Errorf("schedule: batch of %d interval ends panicked: %v", len(p.due), r)
		}
	}()
	if err := ctx.Err(); err != nil {
		p.err = err
		return
	}
	p.err = b.fn(ctx, p.due)
}
