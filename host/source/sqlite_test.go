package source_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/host/source/sourcetest"
)

type sqliteSeeder struct{ s *source.SQLite }

func (s sqliteSeeder) Seed(ctx context.Context, rows ...sourcetest.Row) error {
	evs := make([]abi.Event, len(rows))
	for i, r := range rows {
		evs[i] = r.Event
	}
	return s.s.Insert(ctx, evs)
}

func (sqliteSeeder) SupportsNullInsertedAt() bool { return false }

func newSQLite(t *testing.T) (source.Source, sourcetest.Seeder) {
	t.Helper()
	s, err := source.NewSQLite(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, sqliteSeeder{s}
}

func TestSQLiteContract(t *testing.T) {
	sourcetest.Run(t, newSQLite)
}

func TestSQLiteNullableColumnsRoundTrip(t *testing.T) {
	src, seed := newSQLite(t)
	e := abi.Event{UUID: [16]byte{1}, Event: "e", DistinctID: "d", TeamID: 3, Properties: `{"a":1}`,
		Timestamp: sourcetest.Base.Add(123456 * time.Microsecond), InsertedAt: sourcetest.Base.Add(time.Microsecond)}
	if err := seed.Seed(context.Background(), sourcetest.Row{Event: e}); err != nil {
		t.Fatal(err)
	}
	res, err := sourcetest.Collect(t, src, source.Query{Start: sourcetest.Base, End: sourcetest.Base.Add(time.Second)}, source.BatchOptions{})
	if err != nil || len(res.Events) != 1 {
		t.Fatalf("err %v, %d events", err, len(res.Events))
	}
	g := res.Events[0]
	if g.PersonID != nil || g.PersonProperties != nil || g.CreatedAt != nil {
		t.Errorf("nulls not kept: %+v", g)
	}
	if !g.Timestamp.Equal(e.Timestamp) || !g.InsertedAt.Equal(e.InsertedAt) {
		t.Errorf("microseconds lost: %s %s", g.Timestamp, g.InsertedAt)
	}
	// sub-second interval bounds are exact on microseconds
	res, _ = sourcetest.Collect(t, src, source.Query{Start: sourcetest.Base.Add(2 * time.Microsecond), End: sourcetest.Base.Add(time.Second)}, source.BatchOptions{})
	if len(res.Events) != 0 {
		t.Errorf("row inserted 1µs after base returned for start base+2µs")
	}
}

func TestSQLiteInsertNeedsInsertedAt(t *testing.T) {
	s, err := source.NewSQLite(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Insert(context.Background(), []abi.Event{{Event: "e", DistinctID: "d"}}); err == nil {
		t.Fatal("insert without inserted_at succeeded")
	}
}
