package control_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

// One tick of many exports goes through the scheduler's batches (schedule.Batch,
// enqueueDue) with the rules of a single fire: every live export gets exactly one run for
// the interval; an export paused or deleted behind the scheduler's back (through another
// host) gets none; an interval whose run already finished is not run again.
func TestOneTickOfManyExports(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	db := e.host.DB()
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.createExport(fmt.Sprintf("tick-%02d", i), localConfig(fmt.Sprintf("tick%02d", i)))
	}
	paused, deleted, done := ids[0], ids[1], ids[2]
	if _, err := db.SetExportPaused(ctx, paused, true); err != nil {
		t.Fatal(err)
	}
	if err := db.SoftDeleteExport(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	end := t0.Truncate(time.Hour).Add(time.Hour)
	finished, _, err := db.CreateRunIfAbsent(ctx, storage.Run{ExportID: done, IntervalStart: end.Add(-time.Hour), IntervalEnd: end})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.TransitionRun(ctx, finished.ID, []storage.RunStatus{storage.StatusStarting}, storage.StatusCompleted, nil); err != nil {
		t.Fatal(err)
	}

	e.clock.Advance(time.Hour) // every export's end comes due at once (1 s settle delay)
	for _, id := range ids[3:] {
		rs := e.waitRuns(id, "the tick's run", allFinished(1))
		if r := rs[0]; r.Status != "Completed" || !r.IntervalEnd.Equal(end) || r.Attempt != 1 {
			t.Errorf("export %s: run %+v, want one Completed first attempt ending %s", id, r, end)
		}
	}
	for _, id := range []string{paused, deleted} {
		var got []storage.Run
		if err := db.ForEachRun(ctx, storage.RunSet{ExportID: id}, func(r storage.Run) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("export %s (paused or deleted) got runs: %+v", id, got)
		}
	}
	rs := e.runs(done)
	if len(rs) != 1 || rs[0].ID != finished.ID || rs[0].Attempt != 0 {
		t.Errorf("the finished interval ran again: %+v", rs)
	}
	// The paused and deleted exports are off the schedule: the next tick gives them nothing.
	e.clock.Advance(time.Hour)
	e.waitRuns(ids[3], "the next tick's run", allFinished(2))
	for _, id := range []string{paused, deleted} {
		n := 0
		if err := db.ForEachRun(ctx, storage.RunSet{ExportID: id}, func(storage.Run) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("export %s got %d runs at the next tick", id, n)
		}
	}
}
