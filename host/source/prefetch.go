package source

import (
	"context"
	"sync/atomic"
)

// DefaultPrefetchBatches is how many batches a Prefetch source reads ahead of its consumer.
const DefaultPrefetchBatches = 2

// Prefetch returns a Source whose Stream reads ahead of fn: src's Stream runs on its own
// goroutine (scanning rows, building SLB1 batches) while fn runs on the caller's goroutine
// (encoding, uploading). Without it the two alternate: a source reads its next rows only
// after fn returns.
//
// Each batch is copied into a buffer of the prefetcher, and at most batches batches,
// totalling at most batches × opts.MaxBytes bytes, wait between the two goroutines (a batch
// larger than that, a single oversized row, waits alone). Memory is bounded by that, plus the
// batch fn holds and the one src is building; buffers are reused. fn sees every batch in
// src's order, on the caller's goroutine, one call at a time, as with src itself.
//
// An error from fn stops the read (src's Stream is cancelled and waited for) and Stream
// returns it. An error from src is returned after fn has seen the batches read before it.
// Cancelling ctx stops both. batches < 1 means DefaultPrefetchBatches. Close closes src.
func Prefetch(src Source, batches int) Source {
	if batches < 1 {
		batches = DefaultPrefetchBatches
	}
	return &prefetch{src: src, batches: batches}
}

type prefetch struct {
	src     Source
	batches int
}

func (p *prefetch) Close() error { return p.src.Close() }

type prefetched struct {
	buf     []byte
	records int
	last    Position
}

func (p *prefetch) Stream(ctx context.Context, q Query, opts BatchOptions, fn BatchFunc) error {
	_, opts, err := normalize(q, opts)
	if err != nil {
		return err
	}
	budget := int64(p.batches) * int64(opts.MaxBytes)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The batch bound: batches-1 in the channel and one the reader is sending.
	ready := make(chan prefetched, p.batches-1)
	free := make(chan []byte, p.batches+1) // buffers fn is done with
	taken := make(chan struct{}, 1)        // a queued batch was taken: bytes freed
	var queued atomic.Int64                // bytes in ready
	var readErr error                      // written before ready is closed

	go func() {
		defer close(ready)
		readErr = p.src.Stream(rctx, q, opts, func(batch []byte, records int, last Position) error {
			n := int64(len(batch))
			// The byte bound: wait until the batch fits, or nothing is queued.
			for {
				if q := queued.Load(); q == 0 || q+n <= budget {
					break
				}
				select {
				case <-taken:
				case <-rctx.Done():
					return rctx.Err()
				}
			}
			var buf []byte
			select {
			case buf = <-free:
			default:
			}
			buf = append(buf[:0], batch...)
			queued.Add(n)
			select {
			case ready <- prefetched{buf: buf, records: records, last: last}:
				return nil
			case <-rctx.Done():
				return rctx.Err()
			}
		})
	}()
	// Whatever ends the loop below, stop the reader and wait for it: no goroutine outlives
	// Stream, and src is not used after Stream returns.
	defer func() {
		cancel()
		for range ready {
		}
	}()
	for {
		var b prefetched
		var ok bool
		select {
		case b, ok = <-ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return readErr
		}
		queued.Add(-int64(len(b.buf)))
		select {
		case taken <- struct{}{}:
		default:
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(b.buf, b.records, b.last); err != nil {
			return err
		}
		select {
		case free <- b.buf:
		default:
		}
	}
}

var _ Source = (*prefetch)(nil)
