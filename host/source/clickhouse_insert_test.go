package source_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/host/source/sourcetest"
)

// insertSeeder seeds through ClickHouse.Insert, the capture endpoint's writer.
type insertSeeder struct{ ch *source.ClickHouse }

func (s insertSeeder) Seed(ctx context.Context, rows ...sourcetest.Row) error {
	evs := make([]abi.Event, len(rows))
	for i, r := range rows {
		evs[i] = r.Event
	}
	return s.ch.Insert(ctx, evs)
}

func (insertSeeder) SupportsNullInsertedAt() bool { return false }

// TestClickHouseInsertContract runs the source contract with every row written by Insert:
// what capture stores is read back exactly, by the same interval rules.
func TestClickHouseInsertContract(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T) (source.Source, sourcetest.Seeder) {
		src, _ := newCH(t)
		return src, insertSeeder{src.(*source.ClickHouse)}
	})
}

// TestClickHouseInsertPrecision: a receipt time inside a second lands in the interval of
// that receipt time on an 18.16 DateTime column (truncated, never rounded into the next
// interval), and an event without person or created_at is stored with the column defaults.
func TestClickHouseInsertPrecision(t *testing.T) {
	ctx := context.Background()
	src, _ := newCH(t)
	ch := src.(*source.ClickHouse)
	end := sourcetest.Base.Add(time.Hour)
	late := abi.Event{UUID: [16]byte(uuid.New()), Event: "e", DistinctID: "d", TeamID: 1,
		Timestamp: end.Add(-time.Second), InsertedAt: end.Add(-time.Millisecond)}
	next := late
	next.UUID, next.InsertedAt = [16]byte(uuid.New()), end
	if err := ch.Insert(ctx, []abi.Event{late, next}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		start, end time.Time
		want       [16]byte
	}{{end.Add(-time.Hour), end, late.UUID}, {end, end.Add(time.Hour), next.UUID}} {
		res, err := sourcetest.Collect(t, ch, source.Query{Start: tc.start, End: tc.end}, source.BatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Events) != 1 || res.Events[0].UUID != tc.want {
			t.Fatalf("[%s, %s): got %d events, want only %s", tc.start, tc.end, len(res.Events), uuid.UUID(tc.want))
		}
		if e := res.Events[0]; e.PersonProperties == nil || *e.PersonProperties != "" || e.Properties != "{}" {
			t.Errorf("defaults: person_properties %v, properties %q", e.PersonProperties, e.Properties)
		}
	}
}

// TestCaptureInserterDeadline: events received longer ago than MaxDelay are refused
// before anything is written (the client retries with a new receipt time); fresh ones are
// stored.
func TestCaptureInserterDeadline(t *testing.T) {
	ctx := context.Background()
	src, seeder := newCH(t)
	ch := src.(*source.ClickHouse)
	ins := source.CaptureInserter{CH: ch, MaxDelay: 2 * time.Second}
	now := time.Now().UTC()
	stale := abi.Event{UUID: [16]byte(uuid.New()), Event: "e", DistinctID: "d", TeamID: 1, Timestamp: now, InsertedAt: now.Add(-3 * time.Second)}
	fresh := stale
	fresh.UUID, fresh.InsertedAt = [16]byte(uuid.New()), now
	if err := ins.Insert(ctx, []abi.Event{fresh, stale}); !errors.Is(err, source.ErrInsertTooLate) {
		t.Fatalf("stale batch: err %v, want ErrInsertTooLate", err)
	}
	if err := ins.Insert(ctx, []abi.Event{fresh}); err != nil {
		t.Fatal(err)
	}
	var n uint64
	s := seeder.(chSeeder)
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("table holds %d rows, want only the fresh event", n)
	}
}
