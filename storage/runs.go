package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm/clause"
)

// runColumns are the columns TransitionRun writes.
var runColumns = []string{
	"status", "attempt", "generation", "backfill_id", "records_completed", "records_total_count", "records_missing", "data_checked_at", "bytes_exported",
	"latest_error", "plugin_version", "plugin_sha256", "checkpoint", "started_at", "finished_at", "updated_at",
}

// CreateRunIfAbsent inserts run unless a run of the same (ExportID,
// IntervalEnd) exists, and returns the stored run and whether this call
// created it. It is race-safe across goroutines and processes: the insert is
// INSERT ... ON CONFLICT DO NOTHING on the unique (export_id, interval_end).
// Empty Status defaults to Starting; ID, CreatedAt and UpdatedAt are set here.
func (db *DB) CreateRunIfAbsent(ctx context.Context, run Run) (Run, bool, error) {
	if run.ExportID == "" || run.IntervalEnd.IsZero() {
		return Run{}, false, fmt.Errorf("%w: run needs an export id and an interval end", ErrInvalid)
	}
	run.IntervalStart, run.IntervalEnd = normTime(run.IntervalStart), normTime(run.IntervalEnd)
	if !run.IntervalStart.Before(run.IntervalEnd) {
		return Run{}, false, fmt.Errorf("%w: run interval start must be before its end", ErrInvalid)
	}
	if run.Status == "" {
		run.Status = StatusStarting
	}
	if !run.Status.Valid() {
		return Run{}, false, fmt.Errorf("%w: unknown run status %q", ErrInvalid, run.Status)
	}
	var err error
	if run.Checkpoint, err = jsonText("checkpoint", run.Checkpoint, "{}"); err != nil {
		return Run{}, false, err
	}
	if run.ID == "" {
		run.ID = uuid.NewString()
	}
	run.CreatedAt, run.UpdatedAt = now(), now()
	run.StartedAt, run.FinishedAt = normTimePtr(run.StartedAt), normTimePtr(run.FinishedAt)

	g := db.gdb.WithContext(ctx)
	res := g.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "export_id"}, {Name: "interval_end"}},
		DoNothing: true,
	}).Create(&run)
	if res.Error != nil {
		return Run{}, false, mapErr(res.Error, "create run")
	}
	created := res.RowsAffected == 1
	var got Run
	if err := g.Where("export_id = ? AND interval_end = ?", run.ExportID, run.IntervalEnd).Take(&got).Error; err != nil {
		return Run{}, false, mapErr(err, "create run: read back")
	}
	return got, created, nil
}

// GetRun returns the run with the id.
func (db *DB) GetRun(ctx context.Context, id string) (Run, error) {
	var r Run
	err := db.gdb.WithContext(ctx).Where("id = ?", id).Take(&r).Error
	return r, mapErr(err, "run "+id)
}

// GetRunByInterval returns the run of an export for the interval ending at end.
func (db *DB) GetRunByInterval(ctx context.Context, exportID string, end time.Time) (Run, error) {
	var r Run
	err := db.gdb.WithContext(ctx).Where("export_id = ? AND interval_end = ?", exportID, normTime(end)).Take(&r).Error
	return r, mapErr(err, "run of "+exportID+" at "+end.UTC().Format(time.RFC3339))
}

// TransitionRun moves a run to status `to` if its current status is one of
// `from` (any status when from is empty), applying mutate to the loaded run
// first (mutate may change Attempt, Generation, BackfillID, RecordsCompleted,
// BytesExported, LatestError, Checkpoint, StartedAt, FinishedAt; other fields
// are ignored). It returns ErrConflict if the status is not in from, or if
// another writer changed the status or generation between the read and the
// write (optimistic check). Entering Running sets StartedAt if unset; entering a
// terminal status sets FinishedAt if unset.
func (db *DB) TransitionRun(ctx context.Context, id string, from []RunStatus, to RunStatus, mutate func(*Run)) (Run, error) {
	return db.transitionRun(ctx, id, -1, from, to, mutate)
}

// TransitionRunOf is TransitionRun for the queue job of one generation: it
// returns ErrConflict unless the run's current generation is generation, so a
// job superseded by a deliberate re-run can neither start nor finish the run.
func (db *DB) TransitionRunOf(ctx context.Context, id string, generation int, from []RunStatus, to RunStatus, mutate func(*Run)) (Run, error) {
	if generation < 0 {
		return Run{}, fmt.Errorf("%w: negative run generation", ErrInvalid)
	}
	return db.transitionRun(ctx, id, generation, from, to, mutate)
}

func (db *DB) transitionRun(ctx context.Context, id string, generation int, from []RunStatus, to RunStatus, mutate func(*Run)) (Run, error) {
	if !to.Valid() {
		return Run{}, fmt.Errorf("%w: unknown run status %q", ErrInvalid, to)
	}
	g := db.gdb.WithContext(ctx)
	var cur Run
	if err := g.Where("id = ?", id).Take(&cur).Error; err != nil {
		return Run{}, mapErr(err, "transition run "+id)
	}
	if generation >= 0 && cur.Generation != generation {
		return cur, fmt.Errorf("transition run %s: generation %d superseded by %d: %w", id, generation, cur.Generation, ErrConflict)
	}
	if !statusIn(cur.Status, from) {
		return cur, fmt.Errorf("transition run %s: status is %s, want one of %v: %w", id, cur.Status, from, ErrConflict)
	}
	next := cur
	if mutate != nil {
		mutate(&next)
	}
	next.Status = to
	var err error
	if next.Checkpoint, err = jsonText("checkpoint", next.Checkpoint, "{}"); err != nil {
		return cur, err
	}
	if next.Generation < 0 {
		return cur, fmt.Errorf("%w: negative run generation", ErrInvalid)
	}
	t := now()
	next.UpdatedAt = t
	next.StartedAt, next.FinishedAt = normTimePtr(next.StartedAt), normTimePtr(next.FinishedAt)
	if to == StatusRunning && next.StartedAt == nil {
		next.StartedAt = &t
	}
	if to.Terminal() && next.FinishedAt == nil {
		next.FinishedAt = &t
	}
	res := g.Model(&Run{}).Where("id = ? AND status = ? AND generation = ?", id, cur.Status, cur.Generation).Select(runColumns).Updates(&next)
	if res.Error != nil {
		return cur, mapErr(res.Error, "transition run "+id)
	}
	if res.RowsAffected == 0 {
		return cur, fmt.Errorf("transition run %s: status changed concurrently: %w", id, ErrConflict)
	}
	return db.GetRun(ctx, id)
}

func statusIn(s RunStatus, set []RunStatus) bool {
	if len(set) == 0 {
		return true
	}
	for _, v := range set {
		if s == v {
			return true
		}
	}
	return false
}

// RunFilter narrows ListRuns. Zero values mean no restriction; Limit 0 means 100.
type RunFilter struct {
	Statuses   []RunStatus
	After      time.Time // interval_end > After
	Before     time.Time // interval_end <= Before
	BackfillID string
	// DataUnchecked keeps only runs the missing-data check has not counted in their
	// current generation (data_checked_at IS NULL).
	DataUnchecked bool
	Limit         int
	Offset        int
}

// ListRuns returns an export's runs, newest interval first.
func (db *DB) ListRuns(ctx context.Context, exportID string, f RunFilter) ([]Run, error) {
	q := db.gdb.WithContext(ctx).Where("export_id = ?", exportID)
	if len(f.Statuses) > 0 {
		q = q.Where("status IN ?", f.Statuses)
	}
	if !f.After.IsZero() {
		q = q.Where("interval_end > ?", normTime(f.After))
	}
	if !f.Before.IsZero() {
		q = q.Where("interval_end <= ?", normTime(f.Before))
	}
	if f.BackfillID != "" {
		q = q.Where("backfill_id = ?", f.BackfillID)
	}
	if f.DataUnchecked {
		q = q.Where("data_checked_at IS NULL")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []Run
	err := q.Order("interval_end DESC").Order("id DESC").Limit(limit).Offset(max(f.Offset, 0)).Find(&out).Error
	return out, mapErr(err, "list runs of "+exportID)
}

// CountRunsByStatus counts an export's runs per status (absent statuses are 0).
func (db *DB) CountRunsByStatus(ctx context.Context, exportID string) (map[RunStatus]int64, error) {
	var rows []struct {
		Status RunStatus
		N      int64
	}
	err := db.gdb.WithContext(ctx).Model(&Run{}).Select("status, COUNT(*) AS n").
		Where("export_id = ?", exportID).Group("status").Scan(&rows).Error
	if err != nil {
		return nil, mapErr(err, "count runs of "+exportID)
	}
	out := make(map[RunStatus]int64, len(AllStatuses))
	for _, s := range AllStatuses {
		out[s] = 0
	}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}

// SetRunRecordsTotal records what the source held for the run's interval when the
// attempt of generation gen started. ErrConflict when the run is in another generation
// (re-requested meanwhile: the new attempt counts again).
func (db *DB) SetRunRecordsTotal(ctx context.Context, id string, gen int, n int64) error {
	if n < 0 {
		return fmt.Errorf("%w: negative records total count", ErrInvalid)
	}
	res := db.gdb.WithContext(ctx).Model(&Run{}).Where("id = ? AND generation = ?", id, gen).
		Updates(map[string]any{"records_total_count": n, "updated_at": now()})
	if res.Error != nil {
		return mapErr(res.Error, "update run "+id)
	}
	if res.RowsAffected == 0 {
		if _, err := db.GetRun(ctx, id); err != nil {
			return err
		}
		return fmt.Errorf("run %s: generation %d superseded: %w", id, gen, ErrConflict)
	}
	return nil
}

// SetRunDataCheck records a missing-data check of a Completed run of generation gen:
// missing records found in the source beyond its records_completed (0: none), at t.
// ErrConflict when the run is no longer Completed in that generation (re-run meanwhile).
func (db *DB) SetRunDataCheck(ctx context.Context, id string, gen int, missing int64, t time.Time) error {
	if missing < 0 {
		return fmt.Errorf("%w: negative missing records", ErrInvalid)
	}
	at := normTime(t)
	res := db.gdb.WithContext(ctx).Model(&Run{}).Where("id = ? AND generation = ? AND status = ?", id, gen, StatusCompleted).
		Updates(map[string]any{"records_missing": missing, "data_checked_at": at})
	if res.Error != nil {
		return mapErr(res.Error, "update run "+id)
	}
	if res.RowsAffected == 0 {
		if _, err := db.GetRun(ctx, id); err != nil {
			return err
		}
		return fmt.Errorf("run %s: not Completed in generation %d: %w", id, gen, ErrConflict)
	}
	return nil
}
