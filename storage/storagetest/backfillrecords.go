package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

// testBackfillRecords: a backfill's earliest flag, adjusted start and records count, its
// progress in records, and a run's records_total_count (docs/runs.md, "Backfills").
func testBackfillRecords(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	adj := base.Add(time.Hour)
	b := check(db.CreateBackfill(ctx, storage.Backfill{ExportID: e.ID, StartAt: base.Add(30 * time.Minute), EndAt: base.Add(4 * time.Hour),
		TotalRuns: 3, Earliest: true, AdjustedStartAt: &adj, TotalRecordsStatus: storage.RecordsCountPending}))(t)
	got := check(db.GetBackfill(ctx, b.ID))(t)
	if !got.Earliest || got.AdjustedStartAt == nil || !got.AdjustedStartAt.Equal(adj) || got.TotalRecordsCount != nil || got.TotalRecordsStatus != storage.RecordsCountPending {
		t.Fatalf("stored %+v", got)
	}
	for _, bad := range []storage.Backfill{
		{ExportID: e.ID, StartAt: base, EndAt: base.Add(time.Hour), TotalRecordsStatus: "maybe"},
		{ExportID: e.ID, StartAt: base, EndAt: base.Add(time.Hour), TotalRecordsCount: ptr(int64(-1))},
	} {
		_, err := db.CreateBackfill(ctx, bad)
		wantErr(t, err, storage.ErrInvalid)
	}
	// Progress without a count: no records fraction.
	p := check(db.GetBackfillProgress(ctx, b.ID))(t)
	if p.TotalRecords != nil || p.RecordsFraction != nil {
		t.Fatalf("progress before the count: %+v", p)
	}
	for _, c := range []struct {
		n      *int64
		status string
	}{{ptr(int64(5)), storage.RecordsCountTimedOut}, {nil, storage.RecordsCounted}, {ptr(int64(-1)), storage.RecordsCounted}, {nil, ""}, {nil, "maybe"}} {
		wantErr(t, db.SetBackfillRecordsTotal(ctx, b.ID, c.n, c.status), storage.ErrInvalid)
	}
	wantErr(t, db.SetBackfillRecordsTotal(ctx, "missing", nil, storage.RecordsCountFailed), storage.ErrNotFound)
	if err := db.SetBackfillRecordsTotal(ctx, b.ID, ptr(int64(400)), storage.RecordsCounted); err != nil {
		t.Fatal(err)
	}
	var runs []storage.Run
	for i, s := range []storage.RunStatus{storage.StatusCompleted, storage.StatusCompleted, storage.StatusRunning} {
		r := runAt(e.ID, adj.Add(time.Duration(i+1)*time.Hour))
		r.BackfillID, r.Status = &b.ID, s
		if s == storage.StatusCompleted {
			r.RecordsCompleted = 100
		}
		r, _, err := db.CreateRunIfAbsent(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	p = check(db.GetBackfillProgress(ctx, b.ID))(t)
	if p.TotalRecords == nil || *p.TotalRecords != 400 || p.RecordsFraction == nil || *p.RecordsFraction != 0.5 || p.RecordsCompleted != 200 {
		t.Fatalf("progress %+v", p)
	}
	if err := db.SetBackfillRecordsTotal(ctx, b.ID, nil, storage.RecordsCountTimedOut); err != nil {
		t.Fatal(err)
	}
	if got := check(db.GetBackfill(ctx, b.ID))(t); got.TotalRecordsCount != nil || got.TotalRecordsStatus != storage.RecordsCountTimedOut {
		t.Fatalf("after a timeout: %+v", got)
	}
	// An empty backfill counted 0 is done in records.
	if err := db.SetBackfillRecordsTotal(ctx, b.ID, ptr(int64(0)), storage.RecordsCounted); err != nil {
		t.Fatal(err)
	}
	if p := check(db.GetBackfillProgress(ctx, b.ID))(t); p.RecordsFraction == nil || *p.RecordsFraction != 1 {
		t.Fatalf("progress of a 0 count %+v", p)
	}

	// records_total_count: set by the current generation only; a transition keeps it; a
	// re-run (a retry's mutate, a new backfill over the interval) clears it.
	r := runs[2]
	if r.RecordsTotalCount != nil {
		t.Fatalf("new run has a total %v", *r.RecordsTotalCount)
	}
	if err := db.SetRunRecordsTotal(ctx, r.ID, r.Generation, 1234); err != nil {
		t.Fatal(err)
	}
	wantErr(t, db.SetRunRecordsTotal(ctx, r.ID, r.Generation+1, 1), storage.ErrConflict)
	wantErr(t, db.SetRunRecordsTotal(ctx, "missing", 0, 1), storage.ErrNotFound)
	wantErr(t, db.SetRunRecordsTotal(ctx, r.ID, r.Generation, -1), storage.ErrInvalid)
	done := check(db.TransitionRunOf(ctx, r.ID, r.Generation, nil, storage.StatusCompleted, func(x *storage.Run) { x.RecordsCompleted = 1234 }))(t)
	if done.RecordsTotalCount == nil || *done.RecordsTotalCount != 1234 {
		t.Fatalf("after finishing: %+v", done.RecordsTotalCount)
	}
	if got := check(db.GetRun(ctx, r.ID))(t); got.RecordsTotalCount == nil || *got.RecordsTotalCount != 1234 || got.RecordsCompleted != 1234 {
		t.Fatalf("stored run %+v", got)
	}
	retried := check(db.TransitionRun(ctx, r.ID, nil, storage.StatusStarting, func(x *storage.Run) { x.Generation++; x.RecordsTotalCount = nil }))(t)
	if got := check(db.GetRun(ctx, retried.ID))(t); got.RecordsTotalCount != nil {
		t.Fatalf("retried run keeps %d", *got.RecordsTotalCount)
	}
	if err := db.SetRunRecordsTotal(ctx, runs[0].ID, runs[0].Generation, 7); err != nil {
		t.Fatal(err)
	}
	// The missing-data check: Completed runs of the current generation only; a re-run
	// clears it (below).
	checked := base.Add(100 * time.Hour)
	if err := db.SetRunDataCheck(ctx, runs[0].ID, runs[0].Generation, 3, checked); err != nil {
		t.Fatal(err)
	}
	if got := check(db.GetRun(ctx, runs[0].ID))(t); got.RecordsMissing == nil || *got.RecordsMissing != 3 || got.DataCheckedAt == nil || !got.DataCheckedAt.Equal(checked) {
		t.Fatalf("checked run %+v", got)
	}
	wantErr(t, db.SetRunDataCheck(ctx, runs[0].ID, runs[0].Generation+1, 0, checked), storage.ErrConflict)
	wantErr(t, db.SetRunDataCheck(ctx, runs[2].ID, runs[2].Generation, 0, checked), storage.ErrConflict) // retried: Starting
	wantErr(t, db.SetRunDataCheck(ctx, runs[0].ID, runs[0].Generation, -1, checked), storage.ErrInvalid)
	wantErr(t, db.SetRunDataCheck(ctx, "missing", 0, 0, checked), storage.ErrNotFound)
	if _, err := db.UpdateBackfillStatus(ctx, b.ID, nil, storage.StatusCompleted); err != nil {
		t.Fatal(err)
	}
	b2 := check(db.CreateBackfill(ctx, storage.Backfill{ExportID: e.ID, StartAt: runs[0].IntervalStart, EndAt: runs[0].IntervalEnd, Status: storage.StatusRunning}))(t)
	moved := check(db.AddBackfillRuns(ctx, e.ID, b2.ID, []storage.Interval{{Start: runs[0].IntervalStart, End: runs[0].IntervalEnd}}))(t)
	if moved.Rerun != 1 || moved.Runs[0].RecordsTotalCount != nil || moved.Runs[0].RecordsMissing != nil || moved.Runs[0].DataCheckedAt != nil {
		t.Fatalf("re-run by a backfill: %+v", moved)
	}
}

func ptr[T any](v T) *T { return &v }
