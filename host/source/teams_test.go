package source_test

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/host/source/sourcetest"
)

// Issue 17: the API asks the source whether it holds more than one team (then an export
// must name its team_id), and the team is pushed into the query so that only its rows are
// read.
func testTeams(t *testing.T, newSource sourcetest.NewFunc) {
	ctx := context.Background()
	src, seeder := newSource(t)
	tl, ok := src.(source.TeamLister)
	if !ok {
		t.Fatalf("%T does not list its teams", src)
	}
	if got, err := tl.TeamIDs(ctx, 2); err != nil || len(got) != 0 {
		t.Fatalf("empty source: %v %v", got, err)
	}
	base := sourcetest.Base
	var rows []sourcetest.Row
	for i, team := range []int64{7, 3, 7, 42, 3, 7} {
		ev := sourcetest.NewEvent("e", "u", team, base, base.Add(time.Duration(i+1)*time.Minute), `{"i":1}`)
		rows = append(rows, sourcetest.Row{Event: ev})
	}
	if err := seeder.Seed(ctx, rows...); err != nil {
		t.Fatal(err)
	}
	if got, err := tl.TeamIDs(ctx, 0); err != nil || !slices.Equal(got, []int64{3, 7, 42}) {
		t.Fatalf("all teams: %v %v", got, err)
	}
	got, err := tl.TeamIDs(ctx, 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("two teams: %v %v", got, err)
	}
	// Pushdown: only team 7's rows.
	seven := int64(7)
	n := 0
	err = src.Stream(ctx, source.Query{Start: base, End: base.Add(time.Hour), TeamID: &seven}, source.BatchOptions{},
		func(batch []byte, records int, _ source.Position) error {
			r, err := abi.NewBatchReader(batch)
			if err != nil {
				return err
			}
			vals := make([]abi.Value, len(r.Columns()))
			for {
				if err := r.Next(vals); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				var e abi.Event
				abi.ReadEvent(vals, &e)
				if e.TeamID != 7 {
					t.Errorf("team %d exported", e.TeamID)
				}
				n++
			}
		})
	if err != nil || n != 3 {
		t.Fatalf("team 7: %d rows, %v", n, err)
	}
}

func TestSQLiteTeams(t *testing.T)     { testTeams(t, newSQLite) }
func TestClickHouseTeams(t *testing.T) { testTeams(t, newCH) }
func TestChDBTeams(t *testing.T)       { testTeams(t, newCHDB) }
