package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

func hourly(from time.Time, n int) []storage.Interval {
	out := make([]storage.Interval, n)
	for i := range out {
		s := from.Add(time.Duration(i) * time.Hour)
		out[i] = storage.Interval{Start: s, End: s.Add(time.Hour)}
	}
	return out
}

// testBackfillRuns: a backfill larger than every page and statement chunk gets every
// interval, oldest first; a second backfill over the same range moves the finished runs to
// itself with a new generation and leaves runs in flight alone.
func testBackfillRuns(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	const n = 1234 // > ListRuns' default page (100) and > the statement chunk (500)
	ivs := hourly(base, n)
	b1 := check(db.CreateBackfill(ctx, storage.Backfill{ExportID: e.ID, StartAt: base, EndAt: base.Add(n * time.Hour), Status: storage.StatusRunning}))(t)
	got := check(db.AddBackfillRuns(ctx, e.ID, b1.ID, ivs))(t)
	if len(got.Runs) != n || got.Created != n || got.Rerun != 0 || len(got.InFlight) != 0 {
		t.Fatalf("first backfill: %d runs, %d created, %d re-run, %d in flight", len(got.Runs), got.Created, got.Rerun, len(got.InFlight))
	}
	for i, r := range got.Runs {
		if !r.IntervalEnd.Equal(ivs[i].End) || r.Status != storage.StatusStarting || r.Generation != 0 || r.BackfillID == nil || *r.BackfillID != b1.ID {
			t.Fatalf("run %d: %+v", i, r)
		}
	}
	if b := check(db.GetBackfill(ctx, b1.ID))(t); b.TotalRuns != n {
		t.Fatalf("total runs %d, want %d", b.TotalRuns, n)
	}
	if !check(db.BackfillHasUnfinishedRuns(ctx, b1.ID))(t) {
		t.Fatal("a fresh backfill has no unfinished runs")
	}

	// Finish every run but two: one Running, one Completed with counts.
	for i, r := range got.Runs {
		to := storage.StatusCompleted
		switch i {
		case 0:
			to = storage.StatusRunning
		case 1:
			to = storage.StatusFailed
		}
		check(db.TransitionRun(ctx, r.ID, nil, to, func(r *storage.Run) { r.RecordsCompleted, r.LatestError = 7, "x" }))(t)
	}
	if !check(db.BackfillHasUnfinishedRuns(ctx, b1.ID))(t) {
		t.Fatal("a Running run is unfinished")
	}

	// While the first backfill runs, its finished runs stay with it.
	held := check(db.CreateBackfill(ctx, storage.Backfill{ExportID: e.ID, StartAt: base, EndAt: base.Add(n * time.Hour), Status: storage.StatusRunning}))(t)
	if got := check(db.AddBackfillRuns(ctx, e.ID, held.ID, ivs))(t); len(got.Runs) != 0 || len(got.InFlight) != n {
		t.Fatalf("a backfill took %d runs of a running one (%d in flight)", len(got.Runs), len(got.InFlight))
	}
	check(db.UpdateBackfillStatus(ctx, b1.ID, nil, storage.StatusFailed))(t)

	b2 := check(db.CreateBackfill(ctx, storage.Backfill{ExportID: e.ID, StartAt: base, EndAt: base.Add(n * time.Hour), Status: storage.StatusRunning}))(t)
	again := check(db.AddBackfillRuns(ctx, e.ID, b2.ID, ivs))(t)
	if len(again.Runs) != n-1 || again.Created != 0 || again.Rerun != n-1 || len(again.InFlight) != 1 || again.InFlight[0].ID != got.Runs[0].ID {
		t.Fatalf("second backfill: %d runs, %d created, %d re-run, in flight %+v", len(again.Runs), again.Created, again.Rerun, again.InFlight)
	}
	for _, r := range again.Runs {
		if r.Status != storage.StatusStarting || r.Generation != 1 || *r.BackfillID != b2.ID || r.RecordsCompleted != 0 || r.LatestError != "" || r.FinishedAt != nil {
			t.Fatalf("re-run: %+v", r)
		}
	}
	p1 := check(db.GetBackfillProgress(ctx, b1.ID))(t)
	p2 := check(db.GetBackfillProgress(ctx, b2.ID))(t)
	if p1.CreatedRuns != 1 || p2.CreatedRuns != n-1 || p2.TotalRuns != n-1 || p2.FinishedRuns != 0 {
		t.Fatalf("progress: first %+v, second %+v", p1, p2)
	}

	// Cancelling the second backfill's waiting runs is one statement over all of them.
	check(db.TransitionRun(ctx, again.Runs[5].ID, nil, storage.StatusFailedRetryable, nil))(t)
	check(db.TransitionRun(ctx, again.Runs[6].ID, nil, storage.StatusRunning, nil))(t)
	if c := check(db.CancelWaitingBackfillRuns(ctx, b2.ID, "cancelled"))(t); c != int64(n-2) {
		t.Fatalf("cancelled %d, want %d", c, n-2)
	}
	if !check(db.BackfillHasUnfinishedRuns(ctx, b2.ID))(t) {
		t.Fatal("the Running run is unfinished")
	}
	check(db.TransitionRun(ctx, again.Runs[6].ID, nil, storage.StatusCancelled, nil))(t)
	if check(db.BackfillHasUnfinishedRuns(ctx, b2.ID))(t) {
		t.Fatal("every run is finished")
	}
	if p := check(db.GetBackfillProgress(ctx, b2.ID))(t); p.FinishedRuns != int64(n-1) || p.FailedRuns != int64(n-1) {
		t.Fatalf("progress after cancel: %+v", p)
	}
	_, err := db.AddBackfillRuns(ctx, e.ID, b2.ID, []storage.Interval{{Start: base, End: base}})
	wantErr(t, err, storage.ErrInvalid)
}

// testRunGenerations: only the current generation's job may move a run.
func testRunGenerations(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	r, _, err := db.CreateRunIfAbsent(ctx, runAt(e.ID, base))
	must(t, r, err)
	check(db.TransitionRunOf(ctx, r.ID, 0, nil, storage.StatusCompleted, nil))(t)
	re := check(db.TransitionRun(ctx, r.ID, nil, storage.StatusStarting, func(r *storage.Run) { r.Generation++ }))(t)
	if re.Generation != 1 {
		t.Fatalf("generation %d, want 1", re.Generation)
	}
	_, err = db.TransitionRunOf(ctx, r.ID, 0, nil, storage.StatusRunning, nil)
	wantErr(t, err, storage.ErrConflict)
	if cur := check(db.GetRun(ctx, r.ID))(t); cur.Status != storage.StatusStarting {
		t.Fatalf("a superseded job moved the run to %s", cur.Status)
	}
	check(db.TransitionRunOf(ctx, r.ID, 1, []storage.RunStatus{storage.StatusStarting}, storage.StatusRunning, nil))(t)
	_, err = db.TransitionRunOf(ctx, r.ID, -1, nil, storage.StatusRunning, nil)
	wantErr(t, err, storage.ErrInvalid)
}

func testForEachRunAndRecentFailures(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	other := mkExport(t, db, mkPlugin(t, db, "s3", "2"), "other")
	const n = 1100
	b := check(db.CreateBackfill(ctx, storage.Backfill{ExportID: e.ID, StartAt: base, EndAt: base.Add(n * time.Hour)}))(t)
	runs := check(db.AddBackfillRuns(ctx, e.ID, b.ID, hourly(base, n)))(t).Runs
	if _, _, err := db.CreateRunIfAbsent(ctx, runAt(other.ID, base.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	// 60 finished runs, newest finished last: the 50 newest hold 9 failures, the older 10
	// hold 5 more.
	for i := range 60 {
		to := storage.StatusCompleted
		if (i < 10 && i%2 == 0) || (i >= 10 && i%5 == 0 && i < 55) {
			to = storage.StatusFailed
		}
		check(db.TransitionRun(ctx, runs[i].ID, nil, to, func(r *storage.Run) {
			f := base.Add(time.Duration(i) * time.Minute)
			r.FinishedAt = &f
		}))(t)
	}
	failed, considered := 0, 0
	var err error
	if failed, considered, err = db.RecentFailures(ctx, e.ID, 50); err != nil || failed != 9 || considered != 50 {
		t.Fatalf("recent failures = %d of %d (%v), want 9 of 50", failed, considered, err)
	}
	seen := map[string]bool{}
	err = db.ForEachRun(ctx, storage.RunSet{ExportID: e.ID, Statuses: []storage.RunStatus{storage.StatusStarting}}, func(r storage.Run) error {
		if seen[r.ID] || r.ExportID != e.ID || r.Status != storage.StatusStarting {
			t.Fatalf("walk gave %+v (seen %v)", r, seen[r.ID])
		}
		seen[r.ID] = true
		return nil
	})
	if err != nil || len(seen) != n-60 {
		t.Fatalf("walk saw %d runs (%v), want %d", len(seen), err, n-60)
	}
	all := 0
	if err := db.ForEachRun(ctx, storage.RunSet{}, func(storage.Run) error { all++; return nil }); err != nil || all != n+1 {
		t.Fatalf("walk over everything: %d (%v), want %d", all, err, n+1)
	}
}
