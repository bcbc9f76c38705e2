// Package sourcetest is the contract every source.Source implementation passes.
package sourcetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/source"
)

// Row is one seeded event. Event.InsertedAt is the insertion time; with NullInsertedAt the
// store's inserted_at is null and the fallback column (_timestamp) carries that time.
type Row struct {
	abi.Event
	NullInsertedAt bool
}

// Seeder writes events with explicit insertion times into the store behind a Source.
type Seeder interface {
	Seed(ctx context.Context, rows ...Row) error
	// SupportsNullInsertedAt reports whether the store has a fallback insertion-time column.
	SupportsNullInsertedAt() bool
}

// NewFunc returns a fresh, empty source and its seeder; it registers its own cleanup.
type NewFunc func(t *testing.T) (source.Source, Seeder)

// Base is the start of the test intervals: whole seconds (ClickHouse 18.16 DateTime).
var Base = time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)

// NewEvent builds a complete event (every nullable column set, whole-second times).
func NewEvent(name, distinctID string, team int64, ts, inserted time.Time, props string) abi.Event {
	pid := [16]byte(uuid.New())
	pp := `{"email":"` + distinctID + `@example.com"}`
	created := inserted.Add(-time.Second)
	if props == "" {
		props = "{}"
	}
	return abi.Event{
		UUID: [16]byte(uuid.New()), Event: name, DistinctID: distinctID, PersonID: &pid,
		TeamID: team, Properties: props, PersonProperties: &pp, ElementsChain: "",
		Timestamp: ts.UTC(), CreatedAt: &created, InsertedAt: inserted.UTC(),
	}
}

// Result is what one Stream call produced.
type Result struct {
	Events  []abi.Event
	Batches []BatchInfo
}

// BatchInfo describes one batch.
type BatchInfo struct {
	Records, Bytes int
	Last           source.Position
}

// Collect streams q and decodes every batch, checking the batch invariants and the order.
func Collect(t testing.TB, src source.Source, q source.Query, opts source.BatchOptions) (Result, error) {
	t.Helper()
	var res Result
	var rd abi.BatchReader
	vals := make([]abi.Value, len(abi.EventColumns))
	err := src.Stream(context.Background(), q, opts, func(b []byte, n int, last source.Position) error {
		if err := rd.Reset(b); err != nil {
			return fmt.Errorf("decode batch: %w", err)
		}
		if !abi.HasEventColumns(rd.Columns()) {
			return fmt.Errorf("batch schema %v is not EventColumns", rd.Columns())
		}
		if rd.Records() != n || n == 0 {
			return fmt.Errorf("batch declares %d records, fn got %d", rd.Records(), n)
		}
		var e abi.Event
		for {
			err := rd.Next(vals)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			abi.ReadEvent(vals, &e)
			res.Events = append(res.Events, e)
		}
		lastEv := res.Events[len(res.Events)-1]
		if !last.InsertedAt.Equal(lastEv.InsertedAt) || last.UUID != lastEv.UUID {
			return fmt.Errorf("batch last position %v does not match its last row", last)
		}
		res.Batches = append(res.Batches, BatchInfo{Records: n, Bytes: len(b), Last: last})
		return nil
	})
	for i := 1; i < len(res.Events); i++ {
		if pos(res.Events[i]).Less(pos(res.Events[i-1])) {
			t.Errorf("rows %d and %d are out of (inserted_at, uuid) order: %v then %v", i-1, i, pos(res.Events[i-1]), pos(res.Events[i]))
		}
	}
	return res, err
}

func pos(e abi.Event) source.Position { return source.Position{InsertedAt: e.InsertedAt, UUID: e.UUID} }

func mustCollect(t *testing.T, src source.Source, q source.Query, opts source.BatchOptions) Result {
	t.Helper()
	res, err := Collect(t, src, q, opts)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	checkCount(t, src, q, len(res.Events))
	return res
}

// checkCount: a Counter's Count of q is what Stream sent (every query of the suite goes
// through it, so every filter kind, the guard and the de-duplication are covered).
func checkCount(t *testing.T, src source.Source, q source.Query, want int) {
	t.Helper()
	c, ok := src.(source.Counter)
	if !ok {
		return
	}
	n, err := c.Count(context.Background(), q)
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	if n != int64(want) {
		t.Errorf("Count = %d, Stream sent %d rows", n, want)
	}
}

func seed(t *testing.T, s Seeder, rows ...Row) {
	t.Helper()
	if err := s.Seed(context.Background(), rows...); err != nil {
		t.Fatalf("seed: %v", err)
	}
}

func rowsOf(evs ...abi.Event) []Row {
	r := make([]Row, len(evs))
	for i, e := range evs {
		r[i] = Row{Event: e}
	}
	return r
}

// sorted returns the events in stream order.
func sorted(evs ...abi.Event) []abi.Event {
	out := append([]abi.Event(nil), evs...)
	sort.Slice(out, func(i, j int) bool { return pos(out[i]).Less(pos(out[j])) })
	return out
}

func eqEvent(a, b abi.Event) string {
	var d []string
	if a.UUID != b.UUID {
		d = append(d, fmt.Sprintf("uuid %x != %x", a.UUID, b.UUID))
	}
	if a.Event != b.Event {
		d = append(d, fmt.Sprintf("event %q != %q", a.Event, b.Event))
	}
	if a.DistinctID != b.DistinctID {
		d = append(d, fmt.Sprintf("distinct_id %q != %q", a.DistinctID, b.DistinctID))
	}
	if a.TeamID != b.TeamID {
		d = append(d, fmt.Sprintf("team_id %d != %d", a.TeamID, b.TeamID))
	}
	if a.Properties != b.Properties {
		d = append(d, fmt.Sprintf("properties differ (%d vs %d bytes) %.60q vs %.60q", len(a.Properties), len(b.Properties), a.Properties, b.Properties))
	}
	if (a.PersonID == nil) != (b.PersonID == nil) || (a.PersonID != nil && *a.PersonID != *b.PersonID) {
		d = append(d, "person_id differs")
	}
	if (a.PersonProperties == nil) != (b.PersonProperties == nil) || (a.PersonProperties != nil && *a.PersonProperties != *b.PersonProperties) {
		d = append(d, "person_properties differ")
	}
	if a.ElementsChain != b.ElementsChain {
		d = append(d, "elements_chain differs")
	}
	if !a.Timestamp.Equal(b.Timestamp) {
		d = append(d, fmt.Sprintf("timestamp %s != %s", a.Timestamp, b.Timestamp))
	}
	if (a.CreatedAt == nil) != (b.CreatedAt == nil) || (a.CreatedAt != nil && !a.CreatedAt.Equal(*b.CreatedAt)) {
		d = append(d, "created_at differs")
	}
	if !a.InsertedAt.Equal(b.InsertedAt) {
		d = append(d, fmt.Sprintf("inserted_at %s != %s", a.InsertedAt, b.InsertedAt))
	}
	return strings.Join(d, "; ")
}

// expectEvents checks got equals want in stream order.
func expectEvents(t *testing.T, got []abi.Event, want ...abi.Event) {
	t.Helper()
	want = sorted(want...)
	if len(got) != len(want) {
		t.Fatalf("got %d events %v, want %d %v", len(got), names(got), len(want), names(want))
	}
	for i := range want {
		if d := eqEvent(got[i], want[i]); d != "" {
			t.Errorf("event %d (%s): %s", i, want[i].Event, d)
		}
	}
}

func names(evs []abi.Event) []string {
	var n []string
	for _, e := range evs {
		n = append(n, e.Event)
	}
	return n
}

func interval() source.Query {
	return source.Query{Start: Base, End: Base.Add(time.Hour)}
}

// Run runs the contract suite.
func Run(t *testing.T, newSource NewFunc) {
	t.Run("Edges", func(t *testing.T) {
		src, s := newSource(t)
		q := interval()
		atStart := NewEvent("at_start", "u1", 1, q.Start, q.Start, "")
		beforeStart := NewEvent("before_start", "u1", 1, q.Start, q.Start.Add(-time.Second), "")
		lastSecond := NewEvent("last_second", "u1", 1, q.Start, q.End.Add(-time.Second), "")
		atEnd := NewEvent("at_end", "u1", 1, q.Start, q.End, "")
		seed(t, s, rowsOf(atStart, beforeStart, lastSecond, atEnd)...)
		res := mustCollect(t, src, q, source.BatchOptions{})
		expectEvents(t, res.Events, atStart, lastSecond)
		if len(res.Batches) != 1 {
			t.Errorf("%d batches, want 1", len(res.Batches))
		}
		// The neighbouring intervals take the others: nothing lost, nothing twice.
		prev := mustCollect(t, src, source.Query{Start: q.Start.Add(-time.Hour), End: q.Start}, source.BatchOptions{})
		expectEvents(t, prev.Events, beforeStart)
		next := mustCollect(t, src, source.Query{Start: q.End, End: q.End.Add(time.Hour)}, source.BatchOptions{})
		expectEvents(t, next.Events, atEnd)
	})

	t.Run("EmptyInterval", func(t *testing.T) {
		src, s := newSource(t)
		seed(t, s, rowsOf(NewEvent("elsewhere", "u", 1, Base, Base.Add(-2*time.Hour), ""))...)
		res := mustCollect(t, src, interval(), source.BatchOptions{})
		if len(res.Batches) != 0 || len(res.Events) != 0 {
			t.Fatalf("empty interval produced %d batches", len(res.Batches))
		}
	})

	t.Run("InvalidQuery", func(t *testing.T) {
		src, _ := newSource(t)
		for _, q := range []source.Query{
			{Start: Base, End: Base},
			{Start: Base.Add(time.Hour), End: Base},
			{Start: Base, End: Base.Add(time.Hour), PropertyFilters: []source.PropertyFilter{{Key: "a", Op: "regex"}}},
		} {
			err := src.Stream(context.Background(), q, source.BatchOptions{}, func([]byte, int, source.Position) error { return nil })
			if !errors.Is(err, source.ErrInvalidQuery) {
				t.Errorf("query %+v: err %v, want ErrInvalidQuery", q, err)
			}
			if c, ok := src.(source.Counter); ok {
				if _, err := c.Count(context.Background(), q); !errors.Is(err, source.ErrInvalidQuery) {
					t.Errorf("Count %+v: err %v, want ErrInvalidQuery", q, err)
				}
			}
		}
	})

	t.Run("Earliest", func(t *testing.T) {
		src, s := newSource(t)
		c, ok := src.(source.Counter)
		if !ok {
			t.Skip("not a Counter")
		}
		ctx := context.Background()
		if _, ok, err := c.Earliest(ctx, source.Query{}); err != nil || ok {
			t.Fatalf("empty store: ok %v, err %v", ok, err)
		}
		// The event timestamp does not matter (no guard): the insertion time does.
		old := NewEvent("click", "u", 2, Base.Add(-30*24*time.Hour), Base.Add(-48*time.Hour), `{"plan":"free"}`)
		mid := NewEvent("$pageview", "u", 1, Base, Base.Add(-24*time.Hour), `{"plan":"pro"}`)
		last := NewEvent("click", "u", 1, Base, Base.Add(-time.Hour), `{"plan":"pro"}`)
		seed(t, s, rowsOf(last, mid, old)...)
		one := int64(1)
		cases := []struct {
			name string
			q    source.Query
			want time.Time // zero: none
		}{
			{"all", source.Query{}, old.InsertedAt},
			{"team", source.Query{TeamID: &one}, mid.InsertedAt},
			{"include", source.Query{IncludeEvents: []string{"click"}}, old.InsertedAt},
			{"exclude", source.Query{ExcludeEvents: []string{"click"}}, mid.InsertedAt},
			{"property", source.Query{PropertyFilters: []source.PropertyFilter{{Key: "plan", Op: "exact", Value: "pro"}}}, mid.InsertedAt},
			{"team and event", source.Query{TeamID: &one, IncludeEvents: []string{"click"}}, last.InsertedAt},
			{"none", source.Query{IncludeEvents: []string{"nothing"}}, time.Time{}},
		}
		for _, tc := range cases {
			got, ok, err := c.Earliest(ctx, tc.q)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if ok != !tc.want.IsZero() || !got.Equal(tc.want) {
				t.Errorf("%s: Earliest = %s (ok %v), want %s", tc.name, got, ok, tc.want)
			}
		}
	})

	t.Run("NullInsertedAtFallsBack", func(t *testing.T) {
		src, s := newSource(t)
		if !s.SupportsNullInsertedAt() {
			t.Skip("store has no fallback insertion-time column")
		}
		q := interval()
		in := Row{Event: NewEvent("null_in", "u", 1, Base, Base.Add(10*time.Minute), ""), NullInsertedAt: true}
		out := Row{Event: NewEvent("null_out", "u", 1, Base, Base.Add(-10*time.Minute), ""), NullInsertedAt: true}
		normal := NewEvent("normal", "u", 1, Base, Base.Add(5*time.Minute), "")
		seed(t, s, in, out, Row{Event: normal})
		res := mustCollect(t, src, q, source.BatchOptions{})
		expectEvents(t, res.Events, in.Event, normal)
	})

	t.Run("LateArrivingByInsertionTime", func(t *testing.T) {
		src, s := newSource(t)
		q := interval()
		late := NewEvent("late", "u", 1, Base.Add(-3*24*time.Hour), Base.Add(30*time.Minute), "")
		early := NewEvent("sent_in_interval_stored_before", "u", 1, Base.Add(10*time.Minute), Base.Add(-time.Minute), "")
		tooOld := NewEvent("older_than_lookback", "u", 1, Base.Add(-8*24*time.Hour), Base.Add(20*time.Minute), "")
		future := NewEvent("clock_skew_future", "u", 1, Base.Add(3*time.Hour), Base.Add(40*time.Minute), "")
		seed(t, s, rowsOf(late, early, tooOld, future)...)
		res := mustCollect(t, src, q, source.BatchOptions{})
		expectEvents(t, res.Events, late, future)
		q.Lookback = -1 // guard off
		res = mustCollect(t, src, q, source.BatchOptions{})
		expectEvents(t, res.Events, late, tooOld, future)
		q.Lookback = 10 * 24 * time.Hour
		res = mustCollect(t, src, q, source.BatchOptions{})
		expectEvents(t, res.Events, late, tooOld, future)
	})

	t.Run("UnicodeAndLargeProperties", func(t *testing.T) {
		src, s := newSource(t)
		q := interval()
		uni := NewEvent("café ☕ 注文", "ユーザー🙂", 1, Base, Base.Add(time.Minute),
			`{"name":"Zoë 🙂","quote":"she said \"hi\"\n","cjk":"日本語","esc":"\u00e9\\/"}`)
		uni.ElementsChain = `a.nav:text="Ünïcode"`
		big := NewEvent("big", "u", 1, Base, Base.Add(2*time.Minute), `{"blob":"`+strings.Repeat("x🙂y", 1<<20/6)+`"}`)
		if len(big.Properties) < 1<<20 {
			t.Fatalf("big properties only %d bytes", len(big.Properties))
		}
		seed(t, s, rowsOf(uni, big)...)
		res := mustCollect(t, src, q, source.BatchOptions{})
		expectEvents(t, res.Events, uni, big)
	})

	t.Run("EventFilters", func(t *testing.T) {
		src, s := newSource(t)
		q := interval()
		pv := NewEvent("$pageview", "u", 1, Base, Base.Add(time.Minute), "")
		click := NewEvent("click", "u", 1, Base, Base.Add(2*time.Minute), "")
		ident := NewEvent("$identify", "u", 1, Base, Base.Add(3*time.Minute), "")
		seed(t, s, rowsOf(pv, click, ident)...)
		q.IncludeEvents = []string{"$pageview", "click"}
		expectEvents(t, mustCollect(t, src, q, source.BatchOptions{}).Events, pv, click)
		q.ExcludeEvents = []string{"click"}
		expectEvents(t, mustCollect(t, src, q, source.BatchOptions{}).Events, pv)
		q.IncludeEvents = nil
		expectEvents(t, mustCollect(t, src, q, source.BatchOptions{}).Events, pv, ident)
		q.ExcludeEvents = []string{"x') OR 1=1 --"}
		expectEvents(t, mustCollect(t, src, q, source.BatchOptions{}).Events, pv, click, ident)
	})

	t.Run("TeamFilter", func(t *testing.T) {
		src, s := newSource(t)
		q := interval()
		a := NewEvent("a", "u", 1, Base, Base.Add(time.Minute), "")
		b := NewEvent("b", "u", 2, Base, Base.Add(2*time.Minute), "")
		seed(t, s, rowsOf(a, b)...)
		two := int64(2)
		q.TeamID = &two
		expectEvents(t, mustCollect(t, src, q, source.BatchOptions{}).Events, b)
		q.TeamID = nil
		expectEvents(t, mustCollect(t, src, q, source.BatchOptions{}).Events, a, b)
	})

	t.Run("PropertyFilters", func(t *testing.T) {
		src, s := newSource(t)
		q := interval()
		a := NewEvent("a", "u", 1, Base, Base.Add(time.Minute), `{"plan":"Pro","n":5,"flag":true}`)
		b := NewEvent("b", "u", 1, Base, Base.Add(2*time.Minute), `{"plan":"free"}`)
		c := NewEvent("c", "u", 1, Base, Base.Add(3*time.Minute), `{}`)
		d := NewEvent("d", "u", 1, Base, Base.Add(4*time.Minute), `{"plan":"ENTERPRISE pro","$current_url":"https://x.test/é"}`)
		seed(t, s, rowsOf(a, b, c, d)...)
		cases := []struct {
			name string
			f    []source.PropertyFilter
			want []abi.Event
		}{
			{"exact string", []source.PropertyFilter{{Key: "plan", Op: "exact", Value: "Pro"}}, []abi.Event{a}},
			{"exact number", []source.PropertyFilter{{Key: "n", Op: "exact", Value: "5"}}, []abi.Event{a}},
			{"exact bool", []source.PropertyFilter{{Key: "flag", Op: "exact", Value: "true"}}, []abi.Event{a}},
			{"is_not", []source.PropertyFilter{{Key: "plan", Op: "is_not", Value: "free"}}, []abi.Event{a, c, d}},
			{"is_set", []source.PropertyFilter{{Key: "plan", Op: "is_set"}}, []abi.Event{a, b, d}},
			{"is_not_set", []source.PropertyFilter{{Key: "plan", Op: "is_not_set"}}, []abi.Event{c}},
			{"icontains", []source.PropertyFilter{{Key: "plan", Op: "icontains", Value: "PRO"}}, []abi.Event{a, d}},
			{"icontains unicode", []source.PropertyFilter{{Key: "$current_url", Op: "icontains", Value: "/é"}}, []abi.Event{d}},
			{"and", []source.PropertyFilter{{Key: "plan", Op: "icontains", Value: "pro"}, {Key: "flag", Op: "is_set"}}, []abi.Event{a}},
			{"injection in value", []source.PropertyFilter{{Key: "plan", Op: "exact", Value: "' OR '1'='1"}}, nil},
			{"injection in key", []source.PropertyFilter{{Key: "plan') OR 1=1 --", Op: "is_set"}}, nil},
			{"wildcards are literal", []source.PropertyFilter{{Key: "plan", Op: "icontains", Value: "%"}}, nil},
		}
		for _, tc := range cases {
			q.PropertyFilters = tc.f
			res, err := Collect(t, src, q, source.BatchOptions{})
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			checkCount(t, src, q, len(tc.want))
			if got, want := strings.Join(names(res.Events), ","), strings.Join(names(sorted(tc.want...)), ","); got != want {
				t.Errorf("%s: got [%s], want [%s]", tc.name, got, want)
			}
		}
	})

	t.Run("StableOrder", func(t *testing.T) {
		// A retried run re-reads its whole interval: it must get the same rows in the same
		// order whatever the batch size (destinations name files per run and rely on it).
		src, s := newSource(t)
		q := interval()
		var evs []abi.Event
		for i := 0; i < 40; i++ {
			// several rows share each second: the uuid (as bytes) breaks the tie
			evs = append(evs, NewEvent(fmt.Sprintf("e%02d", i), "u", 1, Base, Base.Add(time.Duration(i/4)*time.Second), ""))
		}
		seed(t, s, rowsOf(evs...)...)
		all := mustCollect(t, src, q, source.BatchOptions{MaxRecords: 7})
		expectEvents(t, all.Events, evs...)
		if len(all.Batches) != 6 {
			t.Errorf("%d batches of <=7 for 40 rows, want 6", len(all.Batches))
		}
		for _, opts := range []source.BatchOptions{{}, {MaxRecords: 5}, {MaxRecords: 1}} {
			again := mustCollect(t, src, q, opts)
			if len(again.Events) != len(all.Events) {
				t.Fatalf("batches of %d: %d rows, want %d", opts.MaxRecords, len(again.Events), len(all.Events))
			}
			for i := range again.Events {
				if again.Events[i].UUID != all.Events[i].UUID {
					t.Fatalf("batches of %d: row %d is %s, first read had %s", opts.MaxRecords, i, again.Events[i].Event, all.Events[i].Event)
				}
			}
		}
	})

	t.Run("BatchingByRows", func(t *testing.T) {
		src, s := newSource(t)
		var evs []abi.Event
		for i := 0; i < 25; i++ {
			evs = append(evs, NewEvent("e", fmt.Sprint("u", i), 1, Base, Base.Add(time.Duration(i)*time.Second), ""))
		}
		seed(t, s, rowsOf(evs...)...)
		res := mustCollect(t, src, interval(), source.BatchOptions{MaxRecords: 10})
		expectEvents(t, res.Events, evs...)
		var got []int
		for _, b := range res.Batches {
			got = append(got, b.Records)
		}
		if fmt.Sprint(got) != "[10 10 5]" {
			t.Errorf("batch sizes %v, want [10 10 5]", got)
		}
	})

	t.Run("BatchingByBytes", func(t *testing.T) {
		src, s := newSource(t)
		var evs []abi.Event
		for i := 0; i < 30; i++ {
			evs = append(evs, NewEvent("e", "u", 1, Base, Base.Add(time.Duration(i)*time.Second),
				`{"pad":"`+strings.Repeat("p", 10_000)+`"}`))
		}
		huge := NewEvent("huge", "u", 1, Base, Base.Add(40*time.Second), `{"pad":"`+strings.Repeat("h", 100_000)+`"}`)
		evs = append(evs, huge)
		seed(t, s, rowsOf(evs...)...)
		const maxBytes = 64 << 10
		res := mustCollect(t, src, interval(), source.BatchOptions{MaxBytes: maxBytes})
		expectEvents(t, res.Events, evs...)
		if len(res.Batches) < 5 {
			t.Errorf("only %d batches for ~400 KB under a 64 KiB cap", len(res.Batches))
		}
		for i, b := range res.Batches {
			if b.Bytes > maxBytes && b.Records != 1 {
				t.Errorf("batch %d: %d bytes with %d records exceeds %d", i, b.Bytes, b.Records, maxBytes)
			}
		}
		if last := res.Batches[len(res.Batches)-1]; last.Records != 1 || last.Bytes <= maxBytes {
			t.Errorf("oversized row should travel alone: last batch %+v", last)
		}
	})

	t.Run("DuplicatesRemoved", func(t *testing.T) {
		src, s := newSource(t)
		q := interval()
		x := NewEvent("x", "u", 1, Base, Base.Add(time.Minute), `{"v":1}`)
		dupSame := x // same insertion time
		dupLater := x
		dupLater.InsertedAt = Base.Add(30 * time.Minute)
		// another day: a different ReplacingMergeTree sort key, so a background merge cannot
		// collapse it into x (the duplicate must be removed by the query)
		dupLater.Timestamp = Base.Add(-24 * time.Hour)
		otherEvent := x // same uuid, different event: not a duplicate
		otherEvent.Event = "x2"
		otherEvent.InsertedAt = Base.Add(20 * time.Minute)
		y := NewEvent("y", "u", 1, Base, Base.Add(10*time.Minute), "")
		seed(t, s, rowsOf(x, dupSame, y)...)
		seed(t, s, rowsOf(dupLater, otherEvent)...)
		res := mustCollect(t, src, q, source.BatchOptions{MaxRecords: 2})
		expectEvents(t, res.Events, x, otherEvent, y)
		// a re-read of the interval (a retried run) keeps the same, first copy
		again := mustCollect(t, src, q, source.BatchOptions{MaxRecords: 1})
		expectEvents(t, again.Events, x, otherEvent, y)
	})

	t.Run("CallbackErrorStops", func(t *testing.T) {
		src, s := newSource(t)
		var evs []abi.Event
		for i := 0; i < 50; i++ {
			evs = append(evs, NewEvent("e", "u", 1, Base, Base.Add(time.Duration(i)*time.Second), ""))
		}
		seed(t, s, rowsOf(evs...)...)
		stop := errors.New("destination full")
		calls := 0
		err := src.Stream(context.Background(), interval(), source.BatchOptions{MaxRecords: 10}, func([]byte, int, source.Position) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("err %v after %d calls, want the callback's error after 1", err, calls)
		}
	})

	t.Run("CancellationStops", func(t *testing.T) {
		src, s := newSource(t)
		var evs []abi.Event
		for i := 0; i < 3000; i++ {
			evs = append(evs, NewEvent("e", "u", 1, Base, Base.Add(time.Duration(i)*time.Second/2), ""))
		}
		seed(t, s, rowsOf(evs...)...)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls, rows := 0, 0
		err := src.Stream(ctx, interval(), source.BatchOptions{MaxRecords: 100}, func(_ []byte, n int, _ source.Position) error {
			calls++
			rows += n
			if calls == 2 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		if calls != 2 || rows != 200 {
			t.Fatalf("fn called %d times (%d rows) after cancelling at the 2nd batch", calls, rows)
		}
		// an already cancelled context does not start the stream
		err = src.Stream(ctx, interval(), source.BatchOptions{}, func([]byte, int, source.Position) error {
			t.Error("fn called with a cancelled context")
			return nil
		})
		if err == nil {
			t.Fatal("Stream with a cancelled context returned nil")
		}
	})

	t.Run("BatchBufferReused", func(t *testing.T) {
		// fn may not keep the bytes: check the documented aliasing holds (and that copying works)
		src, s := newSource(t)
		var evs []abi.Event
		for i := 0; i < 6; i++ {
			evs = append(evs, NewEvent(fmt.Sprint("e", i), "u", 1, Base, Base.Add(time.Duration(i)*time.Second), ""))
		}
		seed(t, s, rowsOf(evs...)...)
		var copies [][]byte
		err := src.Stream(context.Background(), interval(), source.BatchOptions{MaxRecords: 2}, func(b []byte, _ int, _ source.Position) error {
			copies = append(copies, bytes.Clone(b))
			return nil
		})
		if err != nil || len(copies) != 3 {
			t.Fatalf("err %v, %d batches", err, len(copies))
		}
		if bytes.Equal(copies[0], copies[1]) {
			t.Fatal("distinct batches are equal")
		}
	})
}
