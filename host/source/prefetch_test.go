package source_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/host/source/sourcetest"
)

// The whole source contract holds through a Prefetch (order, batching, de-duplication,
// filters, errors), here on the SQLite source.
func TestPrefetchSQLiteContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T) (source.Source, sourcetest.Seeder) {
		src, seed := newSQLite(t)
		return source.Prefetch(src, 2), seed
	})
}

// counting is a Source producing n batches of size bytes each (the first 8 bytes: the
// batch's index), counting them as it goes. It stops early with fail after failAfter
// batches (0: never), and honours ctx between batches like the real sources.
type counting struct {
	n, size   int
	failAfter int
	fail      error
	produced  atomic.Int64  // fn called
	accepted  atomic.Int64  // fn returned nil
	returned  chan struct{} // closed when Stream returns
	once      sync.Once
}

func (c *counting) Stream(ctx context.Context, q source.Query, opts source.BatchOptions, fn source.BatchFunc) error {
	defer c.once.Do(func() { close(c.returned) })
	buf := make([]byte, c.size)
	for i := 0; i < c.n; i++ {
		if c.failAfter > 0 && i == c.failAfter {
			return c.fail
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		clear(buf)
		binary.LittleEndian.PutUint64(buf, uint64(i))
		c.produced.Add(1)
		if err := fn(buf, 1, source.Position{InsertedAt: time.Unix(int64(i), 0)}); err != nil {
			return err
		}
		c.accepted.Add(1)
	}
	return nil
}

func (c *counting) Close() error { return nil }

func newCounting(n, size int) *counting {
	return &counting{n: n, size: size, returned: make(chan struct{})}
}

var prefetchQuery = source.Query{Start: time.Unix(0, 0), End: time.Unix(3600, 0)}

// The overlap: while the consumer works on a batch, the reader runs ahead, by exactly the
// configured number of batches; without Prefetch the source produces the next batch only
// after fn returns.
func TestPrefetchReadsAheadOfASlowConsumer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wrap    func(source.Source) source.Source
		minLead int64 // batches produced beyond the one being consumed, while fn sleeps
	}{
		{"direct", func(s source.Source) source.Source { return s }, 0},
		{"prefetch 1", func(s source.Source) source.Source { return source.Prefetch(s, 1) }, 1},
		{"prefetch 3", func(s source.Source) source.Source { return source.Prefetch(s, 3) }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newCounting(10, 1000)
			var leads []int64
			var got []uint64
			err := tc.wrap(src).Stream(context.Background(), prefetchQuery, source.BatchOptions{MaxBytes: 1 << 20},
				func(b []byte, n int, last source.Position) error {
					i := binary.LittleEndian.Uint64(b)
					got = append(got, i)
					if last.InsertedAt.Unix() != int64(i) {
						t.Errorf("batch %d arrived with the position of %d", i, last.InsertedAt.Unix())
					}
					time.Sleep(20 * time.Millisecond) // a slow encoder
					leads = append(leads, src.produced.Load()-int64(i)-1)
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			for k, i := range got {
				if i != uint64(k) {
					t.Fatalf("batches out of order: %v", got)
				}
			}
			if len(got) != 10 {
				t.Fatalf("%d batches, want 10", len(got))
			}
			// While the first batches are consumed the reader is ahead by the full bound
			// (one batch waiting in each of the bound's slots), never by more.
			for k, lead := range leads[:5] {
				if lead != tc.minLead {
					t.Errorf("while batch %d was consumed the source had produced %d more, want %d (leads %v)", k, lead, tc.minLead, leads)
				}
			}
		})
	}
}

// The byte bound: no more than batches × MaxBytes bytes wait between the goroutines,
// whatever the count bound allows; a batch larger than that waits alone.
func TestPrefetchBoundsQueuedBytes(t *testing.T) {
	const maxBytes = 1000 // Prefetch(src, 3): 3000 bytes
	for _, tc := range []struct {
		name string
		size int
		// batches the prefetcher has accepted beyond the one being consumed: with 3, two
		// wait in the channel and a third, when it fits, is being handed over.
		lead int64
	}{
		{"small batches: the count bound", 100, 2},
		{"1000 bytes: three fit in 3000", 1000, 2},
		{"1600 bytes: one waits, the second would pass 3000", 1600, 1},
		{"oversized batch: alone", 5000, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newCounting(8, tc.size)
			var leads []int64
			err := source.Prefetch(src, 3).Stream(context.Background(), prefetchQuery, source.BatchOptions{MaxBytes: maxBytes},
				func(b []byte, n int, _ source.Position) error {
					if len(b) != tc.size {
						t.Errorf("batch of %d bytes, want %d", len(b), tc.size)
					}
					time.Sleep(15 * time.Millisecond)
					leads = append(leads, src.accepted.Load()-int64(binary.LittleEndian.Uint64(b))-1)
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			for k, lead := range leads[:4] {
				if lead != tc.lead {
					t.Errorf("while batch %d was consumed %d more were accepted, want %d (leads %v)", k, lead, tc.lead, leads)
				}
			}
		})
	}
}

// The consumer's batches are copies: the source reusing its buffer right after handing a
// batch over does not change what fn sees.
func TestPrefetchCopiesBatches(t *testing.T) {
	src := newCounting(50, 4096)
	want := 0
	err := source.Prefetch(src, 2).Stream(context.Background(), prefetchQuery, source.BatchOptions{},
		func(b []byte, n int, _ source.Position) error {
			exp := make([]byte, 4096)
			binary.LittleEndian.PutUint64(exp, uint64(want))
			if !bytes.Equal(b, exp) {
				t.Fatalf("batch %d holds %x...", want, b[:8])
			}
			want++
			return nil
		})
	if err != nil || want != 50 {
		t.Fatalf("err %v after %d batches", err, want)
	}
}

func TestPrefetchErrors(t *testing.T) {
	boom := errors.New("boom")
	t.Run("consumer error stops the source", func(t *testing.T) {
		src := newCounting(1000, 100)
		calls := 0
		err := source.Prefetch(src, 2).Stream(context.Background(), prefetchQuery, source.BatchOptions{},
			func([]byte, int, source.Position) error {
				if calls++; calls == 3 {
					return boom
				}
				return nil
			})
		if !errors.Is(err, boom) {
			t.Fatalf("err %v, want boom", err)
		}
		select {
		case <-src.returned:
		default:
			t.Fatal("Stream returned while the source was still streaming")
		}
		if p := src.produced.Load(); p > 3+2+1 {
			t.Errorf("source produced %d batches after the consumer failed at 3", p)
		}
	})
	t.Run("source error after the batches read before it", func(t *testing.T) {
		src := newCounting(10, 100)
		src.failAfter, src.fail = 4, boom
		calls := 0
		err := source.Prefetch(src, 2).Stream(context.Background(), prefetchQuery, source.BatchOptions{},
			func([]byte, int, source.Position) error { calls++; return nil })
		if !errors.Is(err, boom) || calls != 4 {
			t.Fatalf("err %v after %d batches, want boom after 4", err, calls)
		}
	})
	t.Run("cancel while the consumer works", func(t *testing.T) {
		src := newCounting(1000, 100)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		err := source.Prefetch(src, 2).Stream(ctx, prefetchQuery, source.BatchOptions{},
			func([]byte, int, source.Position) error {
				if calls++; calls == 2 {
					cancel()
				}
				return nil
			})
		if !errors.Is(err, context.Canceled) || calls != 2 {
			t.Fatalf("err %v after %d batches, want context.Canceled after 2", err, calls)
		}
		select {
		case <-src.returned:
		default:
			t.Fatal("Stream returned while the source was still streaming")
		}
	})
	t.Run("cancel while the consumer waits for the source", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		stuck := &blocking{started: make(chan struct{})}
		go func() { <-stuck.started; cancel() }()
		err := source.Prefetch(stuck, 2).Stream(ctx, prefetchQuery, source.BatchOptions{},
			func([]byte, int, source.Position) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		if !stuck.done.Load() {
			t.Fatal("Stream returned before the source did")
		}
	})
	t.Run("invalid query", func(t *testing.T) {
		src := newCounting(1, 1)
		err := source.Prefetch(src, 2).Stream(context.Background(), source.Query{}, source.BatchOptions{},
			func([]byte, int, source.Position) error { return nil })
		if !errors.Is(err, source.ErrInvalidQuery) || src.produced.Load() != 0 {
			t.Fatalf("err %v, produced %d", err, src.produced.Load())
		}
	})
}

// blocking is a source stuck in its query until ctx is cancelled.
type blocking struct {
	started chan struct{}
	done    atomic.Bool
}

func (b *blocking) Stream(ctx context.Context, _ source.Query, _ source.BatchOptions, _ source.BatchFunc) error {
	close(b.started)
	<-ctx.Done()
	time.Sleep(10 * time.Millisecond)
	b.done.Store(true)
	return ctx.Err()
}

func (b *blocking) Close() error { return nil }
