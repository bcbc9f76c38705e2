package storage

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// CreateBackfill stores b for a live export. Empty Status defaults to Starting.
func (db *DB) CreateBackfill(ctx context.Context, b Backfill) (Backfill, error) {
	b.StartAt, b.EndAt = normTime(b.StartAt), normTime(b.EndAt)
	if b.ExportID == "" || b.StartAt.IsZero() || !b.StartAt.Before(b.EndAt) {
		return Backfill{}, fmt.Errorf("%w: backfill needs an export id and start before end", ErrInvalid)
	}
	if b.Status == "" {
		b.Status = StatusStarting
	}
	if !b.Status.Valid() {
		return Backfill{}, fmt.Errorf("%w: unknown backfill status %q", ErrInvalid, b.Status)
	}
	if b.TotalRuns < 0 {
		return Backfill{}, fmt.Errorf("%w: negative total runs", ErrInvalid)
	}
	if _, err := db.GetExport(ctx, b.ExportID); err != nil {
		return Backfill{}, fmt.Errorf("create backfill: %w", err)
	}
	if b.ID == "" {
		b.ID = uuid.NewString()
	}
	if !ValidRecordsCountStatus(b.TotalRecordsStatus) {
		return Backfill{}, fmt.Errorf("%w: unknown total_records_status %q", ErrInvalid, b.TotalRecordsStatus)
	}
	if b.TotalRecordsCount != nil && *b.TotalRecordsCount < 0 {
		return Backfill{}, fmt.Errorf("%w: negative total records count", ErrInvalid)
	}
	b.CreatedAt, b.UpdatedAt, b.FinishedAt = now(), now(), normTimePtr(b.FinishedAt)
	b.AdjustedStartAt = normTimePtr(b.AdjustedStartAt)
	if err := db.gdb.WithContext(ctx).Create(&b).Error; err != nil {
		return Backfill{}, mapErr(err, "create backfill")
	}
	return b, nil
}

// GetBackfill returns the backfill with the id.
func (db *DB) GetBackfill(ctx context.Context, id string) (Backfill, error) {
	var b Backfill
	err := db.gdb.WithContext(ctx).Where("id = ?", id).Take(&b).Error
	return b, mapErr(err, "backfill "+id)
}

// ListBackfills returns every backfill of an export, newest first. It is not
// paged: the host's control paths use it; the API pages with ListBackfillsPage.
func (db *DB) ListBackfills(ctx context.Context, exportID string) ([]Backfill, error) {
	var out []Backfill
	err := db.gdb.WithContext(ctx).Where("export_id = ?", exportID).
		Order("created_at DESC").Order("id DESC").Find(&out).Error
	return out, mapErr(err, "list backfills of "+exportID)
}

// ListBackfillsPage returns one page of ListBackfills: newest first by
// (created_at, id), the rows after p.After, at most p.Limit of them.
func (db *DB) ListBackfillsPage(ctx context.Context, exportID string, p Page) ([]Backfill, error) {
	var out []Backfill
	err := p.apply(db.gdb.WithContext(ctx).Where("export_id = ?", exportID), true).Find(&out).Error
	return out, mapErr(err, "list backfills of "+exportID)
}

// UpdateBackfillStatus moves a backfill to status `to` if its status is one of
// from (any when empty); ErrConflict otherwise. A terminal status sets
// FinishedAt.
func (db *DB) UpdateBackfillStatus(ctx context.Context, id string, from []RunStatus, to RunStatus) (Backfill, error) {
	if !to.Valid() {
		return Backfill{}, fmt.Errorf("%w: unknown backfill status %q", ErrInvalid, to)
	}
	cur, err := db.GetBackfill(ctx, id)
	if err != nil {
		return Backfill{}, err
	}
	if !statusIn(cur.Status, from) {
		return cur, fmt.Errorf("backfill %s: status is %s, want one of %v: %w", id, cur.Status, from, ErrConflict)
	}
	t := now()
	set := map[string]any{"status": to, "updated_at": t}
	if to.Terminal() && cur.FinishedAt == nil {
		set["finished_at"] = t
	}
	res := db.gdb.WithContext(ctx).Model(&Backfill{}).Where("id = ? AND status = ?", id, cur.Status).Updates(set)
	if res.Error != nil {
		return cur, mapErr(res.Error, "update backfill "+id)
	}
	if res.RowsAffected == 0 {
		return cur, fmt.Errorf("backfill %s: status changed concurrently: %w", id, ErrConflict)
	}
	return db.GetBackfill(ctx, id)
}

// SetBackfillTotalRuns records the expected number of runs.
func (db *DB) SetBackfillTotalRuns(ctx context.Context, id string, total int) error {
	if total < 0 {
		return fmt.Errorf("%w: negative total runs", ErrInvalid)
	}
	res := db.gdb.WithContext(ctx).Model(&Backfill{}).Where("id = ?", id).
		Updates(map[string]any{"total_runs": total, "updated_at": now()})
	if res.Error != nil {
		return mapErr(res.Error, "update backfill "+id)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("backfill %s: %w", id, ErrNotFound)
	}
	return nil
}

// SetBackfillRecordsTotal records the outcome of a backfill's count: n with
// RecordsCounted, nil with any other status.
func (db *DB) SetBackfillRecordsTotal(ctx context.Context, id string, n *int64, status string) error {
	if !ValidRecordsCountStatus(status) || status == "" {
		return fmt.Errorf("%w: unknown total_records_status %q", ErrInvalid, status)
	}
	if (n != nil) != (status == RecordsCounted) || n != nil && *n < 0 {
		return fmt.Errorf("%w: a total records count goes with status %q only, and is not negative", ErrInvalid, RecordsCounted)
	}
	res := db.gdb.WithContext(ctx).Model(&Backfill{}).Where("id = ?", id).
		Updates(map[string]any{"total_records_count": n, "total_records_status": status, "updated_at": now()})
	if res.Error != nil {
		return mapErr(res.Error, "update backfill "+id)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("backfill %s: %w", id, ErrNotFound)
	}
	return nil
}

// BackfillProgress summarises the runs of a backfill.
type BackfillProgress struct {
	TotalRuns        int     // expected runs (Backfill.TotalRuns)
	CreatedRuns      int64   // runs that exist so far
	FinishedRuns     int64   // runs in a terminal status
	CompletedRuns    int64   // runs Completed
	FailedRuns       int64   // runs Failed or Cancelled
	RecordsCompleted int64   // sum over all its runs
	BytesExported    int64   // sum over all its runs
	Fraction         float64 // FinishedRuns / TotalRuns, in [0, 1]; 0 when TotalRuns is 0
	// TotalRecords is Backfill.TotalRecordsCount (nil until counted); RecordsFraction is
	// RecordsCompleted / TotalRecords in [0, 1], nil without a count (1 when it is 0).
	TotalRecords    *int64
	RecordsFraction *float64
}

// GetBackfillProgress counts finished runs and exported records of a backfill.
func (db *DB) GetBackfillProgress(ctx context.Context, id string) (BackfillProgress, error) {
	b, err := db.GetBackfill(ctx, id)
	if err != nil {
		return BackfillProgress{}, err
	}
	var rows []struct {
		Status  RunStatus
		N       int64
		Records int64
		Bytes   int64
	}
	err = db.gdb.WithContext(ctx).Model(&Run{}).
		Select("status, COUNT(*) AS n, COALESCE(SUM(records_completed), 0) AS records, COALESCE(SUM(bytes_exported), 0) AS bytes").
		Where("backfill_id = ?", id).Group("status").Scan(&rows).Error
	if err != nil {
		return BackfillProgress{}, mapErr(err, "backfill progress "+id)
	}
	p := BackfillProgress{TotalRuns: b.TotalRuns}
	for _, r := range rows {
		p.CreatedRuns += r.N
		p.RecordsCompleted += r.Records
		p.BytesExported += r.Bytes
		if r.Status.Terminal() {
			p.FinishedRuns += r.N
		}
		switch r.Status {
		case StatusCompleted:
			p.CompletedRuns += r.N
		case StatusFailed, StatusCancelled:
			p.FailedRuns += r.N
		}
	}
	if p.TotalRuns > 0 {
		p.Fraction = min(float64(p.FinishedRuns)/float64(p.TotalRuns), 1)
	}
	if b.TotalRecordsCount != nil {
		n := *b.TotalRecordsCount
		p.TotalRecords = &n
		f := 1.0
		if n > 0 {
			f = min(float64(p.RecordsCompleted)/float64(n), 1)
		}
		p.RecordsFraction = &f
	}
	return p, nil
}
