package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

// testRunsInBatches: ExportsByID and CreateRunsIfAbsent, the scheduler's path for a tick
// of many exports.
func testRunsInBatches(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	p := mkPlugin(t, db, "s3", "1")
	e1, e2, gone := mkExport(t, db, p, "e1"), mkExport(t, db, p, "e2"), mkExport(t, db, p, "gone")
	if err := db.SoftDeleteExport(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	got := check(db.ExportsByID(ctx, []string{e1.ID, gone.ID, "missing", e2.ID}))(t)
	if len(got) != 3 || got[e1.ID].Interval != storage.IntervalHour || got[gone.ID].DeletedAt == nil || got[e2.ID].DeletedAt != nil {
		t.Fatalf("ExportsByID: %+v", got)
	}
	if _, ok := got["missing"]; ok {
		t.Fatal("ExportsByID returned an export for a missing id")
	}
	if got[e1.ID].SealedSecret != "" || got[e1.ID].SecretConfig != nil {
		t.Fatal("ExportsByID read the sealed secrets")
	}

	// One run exists and finished: the batch returns it as it is.
	done, _, err := db.CreateRunIfAbsent(ctx, runAt(e1.ID, base))
	if err != nil {
		t.Fatal(err)
	}
	done = check(db.TransitionRun(ctx, done.ID, []storage.RunStatus{storage.StatusStarting}, storage.StatusCompleted, nil))(t)
	asked := []storage.Run{runAt(e1.ID, base), runAt(e2.ID, base), runAt(e1.ID, base.Add(time.Hour)),
		runAt(e2.ID, base.In(time.FixedZone("X", 3600)))} // the same interval as the second
	first := check(db.CreateRunsIfAbsent(ctx, asked))(t)
	byKey := func(rs []storage.Run) map[string]storage.Run {
		m := map[string]storage.Run{}
		for _, r := range rs {
			m[r.ExportID+"@"+r.IntervalEnd.Format(time.RFC3339)] = r
		}
		return m
	}
	m := byKey(first)
	if len(first) != 3 || len(m) != 3 {
		t.Fatalf("CreateRunsIfAbsent returned %d runs (%d distinct), want 3: %+v", len(first), len(m), first)
	}
	if r := m[e1.ID+"@"+base.Format(time.RFC3339)]; r.ID != done.ID || r.Status != storage.StatusCompleted {
		t.Fatalf("the existing run came back as %+v", r)
	}
	for k, r := range m {
		if r.ID != done.ID && (r.Status != storage.StatusStarting || r.Checkpoint != "{}" || r.IntervalEnd.Location() != time.UTC) {
			t.Fatalf("%s: %+v", k, r)
		}
	}
	// Again: the same runs, nothing new.
	again := byKey(check(db.CreateRunsIfAbsent(ctx, asked))(t))
	for k, r := range m {
		if again[k].ID != r.ID {
			t.Fatalf("%s: second call returned run %s, first %s", k, again[k].ID, r.ID)
		}
	}
	// More runs than one statement takes.
	var many []storage.Run
	for i := range 1100 {
		many = append(many, runAt(e2.ID, base.Add(time.Duration(10+i)*time.Hour)))
	}
	if n := len(check(db.CreateRunsIfAbsent(ctx, many))(t)); n != 1100 {
		t.Fatalf("1100 runs asked, %d returned", n)
	}
	total := 0
	if err := db.ForEachRun(ctx, storage.RunSet{}, func(storage.Run) error { total++; return nil }); err != nil {
		t.Fatal(err)
	}
	if total != 1103 {
		t.Fatalf("%d runs stored, want 1103", total)
	}
	_, err = db.CreateRunsIfAbsent(ctx, []storage.Run{runAt(e1.ID, base), {ExportID: e1.ID, IntervalStart: base, IntervalEnd: base}})
	wantErr(t, err, storage.ErrInvalid)
}
