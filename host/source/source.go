// Package source reads the events a run exports: the rows that landed in the source in
// [Start, End) by insertion time, streamed in (inserted_at, uuid) order and encoded as SLB1
// batches with the abi.EventColumns schema.
//
// Two implementations share one contract (see package sourcetest): ClickHouse (PostHog's
// events table, over the native or the HTTP protocol) and an embedded SQLite file written by
// the capture endpoint.
package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/abi"
)

// Defaults.
const (
	DefaultLookback   = 7 * 24 * time.Hour
	DefaultMaxRecords = 10_000
	DefaultMaxBytes   = 8 << 20
	// The event-timestamp guard reaches this far past End (clock skew of senders).
	timestampSlack = 24 * time.Hour
)

// Query selects the events of one run.
type Query struct {
	Start, End      time.Time // [Start, End) on insertion time, UTC
	TeamID          *int64    // optional tenant filter
	IncludeEvents   []string  // if not empty, only these event names
	ExcludeEvents   []string  // never these event names
	PropertyFilters []PropertyFilter
	// Lookback bounds the event timestamp: timestamp >= Start-Lookback AND
	// timestamp < End+1 day, so ClickHouse can prune partitions. Zero means
	// DefaultLookback; a negative value disables the guard.
	Lookback time.Duration
}

// Filter operators, PostHog's names.
const (
	OpExact     = "exact"      // the property's value (strings unquoted) equals Value
	OpIsNot     = "is_not"     // not equal to Value; a missing property counts as not equal
	OpIsSet     = "is_set"     // the key is present (even with a null value)
	OpIsNotSet  = "is_not_set" // the key is absent
	OpIContains = "icontains"  // case-insensitive substring of the value's text
)

// PropertyFilter tests one top-level key of the event properties. Values are compared as
// text: a JSON string without its quotes, any other value as its JSON text (5, true).
type PropertyFilter struct {
	Key   string `json:"key"`
	Op    string `json:"op"`
	Value string `json:"value,omitempty"`
}

// Position is a point in the stream order (inserted_at, uuid); uuids compare as bytes
// (RFC 4122 byte order, the same as their canonical text). The order is total and the
// same on every read of an interval, so a retried run sends the same rows in the same
// order (destinations that name files per run rely on it). It is not a resume point:
// a retried run re-reads its whole interval (docs/RATIONALE.md).
type Position struct {
	InsertedAt time.Time
	UUID       [16]byte
}

// Less reports whether p sorts before o.
func (p Position) Less(o Position) bool {
	if !p.InsertedAt.Equal(o.InsertedAt) {
		return p.InsertedAt.Before(o.InsertedAt)
	}
	return bytes.Compare(p.UUID[:], o.UUID[:]) < 0
}

// BatchOptions bounds each batch. A single row larger than MaxBytes is sent alone.
type BatchOptions struct {
	MaxRecords int // default 10_000
	MaxBytes   int // default 8 MiB
}

// BatchFunc receives one encoded batch. batch is only valid during the call (its buffer is
// reused); last is the position of its last row (for progress and logs). Returning an
// error stops the stream and Stream returns that error.
type BatchFunc func(batch []byte, records int, last Position) error

// Source streams the events of an interval.
type Source interface {
	// Stream calls fn with each encoded batch in (inserted_at, uuid) order, rows
	// de-duplicated on (event, distinct_id, uuid). An empty interval calls fn never.
	// Rows are read only after fn returns, so memory stays constant whatever the
	// interval size. Cancelling ctx stops the query.
	Stream(ctx context.Context, q Query, opts BatchOptions, fn BatchFunc) error
	Close() error
}

// Counter is a Source that can size a query without streaming it: backfill estimates,
// a run's records_total_count and the earliest backfill (docs/runs.md).
type Counter interface {
	Source
	// Count returns the number of rows Stream would send for q: the same interval on
	// insertion time, the same filters and timestamp guard, the same de-duplication.
	Count(ctx context.Context, q Query) (int64, error)
	// Earliest returns the smallest insertion time of a row matching q's team, event and
	// property filters (q.Start, q.End and the timestamp guard are ignored); ok is false
	// when no row matches.
	Earliest(ctx context.Context, q Query) (t time.Time, ok bool, err error)
}

// ErrInvalidQuery is wrapped by every validation error.
var ErrInvalidQuery = errors.New("source: invalid query")

// normalize checks q and fills defaults.
func normalize(q Query, opts BatchOptions) (Query, BatchOptions, error) {
	if q.Start.IsZero() || q.End.IsZero() {
		return q, opts, fmt.Errorf("%w: start and end are required", ErrInvalidQuery)
	}
	q.Start, q.End = q.Start.UTC(), q.End.UTC()
	if !q.Start.Before(q.End) {
		return q, opts, fmt.Errorf("%w: start %s is not before end %s", ErrInvalidQuery, q.Start.Format(time.RFC3339Nano), q.End.Format(time.RFC3339Nano))
	}
	if q.Lookback == 0 {
		q.Lookback = DefaultLookback
	}
	for i, f := range q.PropertyFilters {
		if f.Key == "" {
			return q, opts, fmt.Errorf("%w: property filter %d has an empty key", ErrInvalidQuery, i)
		}
		switch f.Op {
		case OpExact, OpIsNot, OpIsSet, OpIsNotSet, OpIContains:
		default:
			return q, opts, fmt.Errorf("%w: property filter %d (%q) has unknown op %q", ErrInvalidQuery, i, f.Key, f.Op)
		}
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	return q, opts, nil
}

// tsBounds returns the event-timestamp guard, ok=false when disabled.
func tsBounds(q Query) (lo, hi time.Time, ok bool) {
	if q.Lookback < 0 {
		return time.Time{}, time.Time{}, false
	}
	return q.Start.Add(-q.Lookback), q.End.Add(timestampSlack), true
}

// batcher packs rows into batches and hands them to fn. It reuses one buffer.
type batcher struct {
	ctx  context.Context
	w    *abi.BatchWriter
	opts BatchOptions
	fn   BatchFunc
	last Position
	// previous row, for dropping adjacent duplicates (event, distinct_id, uuid); copied,
	// because a row's strings may alias the source's reused buffers (streamNative)
	prevOK            bool
	prevUUID          [16]byte
	prevEvent, prevID []byte
}

func newBatcher(ctx context.Context, opts BatchOptions, fn BatchFunc) *batcher {
	return &batcher{ctx: ctx, w: abi.NewBatchWriter(abi.EventColumns, make([]byte, 0, 64<<10)), opts: opts, fn: fn}
}

// rowSizeBound is an upper bound of a row's encoded size.
func rowSizeBound(e *abi.Event) int {
	n := 16 + 17 + 11*10 + len(e.Event) + len(e.DistinctID) + len(e.Properties) + len(e.ElementsChain)
	if e.PersonProperties != nil {
		n += len(*e.PersonProperties)
	}
	return n
}

// add appends one row, flushing before it when the byte bound would be passed and after it
// when the record bound is reached. Rows equal to the previous one on (event, distinct_id,
// uuid) are dropped. e's strings are copied: they need to stay valid only during the call.
func (b *batcher) add(e *abi.Event) error {
	if b.prevOK && e.UUID == b.prevUUID && e.Event == string(b.prevEvent) && e.DistinctID == string(b.prevID) {
		return nil
	}
	b.prevOK, b.prevUUID = true, e.UUID
	b.prevEvent = append(b.prevEvent[:0], e.Event...)
	b.prevID = append(b.prevID[:0], e.DistinctID...)
	if b.w.Records() > 0 && b.w.Len()+rowSizeBound(e) > b.opts.MaxBytes {
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.w.AppendEvent(e)
	b.w.EndRow()
	b.last = Position{InsertedAt: e.InsertedAt, UUID: e.UUID}
	if b.w.Records() >= b.opts.MaxRecords {
		return b.flush()
	}
	return nil
}

func (b *batcher) flush() error {
	n := b.w.Records()
	if n == 0 {
		return nil
	}
	if err := b.ctx.Err(); err != nil {
		return err
	}
	err := b.fn(b.w.Bytes(), n, b.last)
	b.w.Reset()
	return err
}
