package storage

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm/clause"
)

// ExportsByID returns the exports with these ids, soft-deleted ones included, keyed by id,
// without their secrets (SecretConfig is nil): the scheduler needs only their schedule and
// state. Ids with no export are absent from the map.
func (db *DB) ExportsByID(ctx context.Context, ids []string) (map[string]BatchExport, error) {
	out := make(map[string]BatchExport, len(ids))
	for lo := 0; lo < len(ids); lo += chunk {
		var page []BatchExport
		err := db.gdb.WithContext(ctx).Omit("secret_config").Where("id IN ?", ids[lo:min(lo+chunk, len(ids))]).Find(&page).Error
		if err != nil {
			return nil, mapErr(err, "exports by id")
		}
		for _, e := range page {
			out[e.ID] = e
		}
	}
	return out, nil
}

// CreateRunsIfAbsent is CreateRunIfAbsent for many runs: each is inserted unless its
// (ExportID, IntervalEnd) has a run, a few hundred per statement, and the stored run of
// every (ExportID, IntervalEnd) asked for is returned, created now or before (in no
// particular order). Status defaults to Starting; an empty ID gets a new one; CreatedAt and
// UpdatedAt are set here. A returned run whose ID is the one asked for was created by this call.
func (db *DB) CreateRunsIfAbsent(ctx context.Context, runs []Run) ([]Run, error) {
	t := now()
	fresh := make([]Run, len(runs))
	for i, r := range runs {
		if r.ExportID == "" || r.IntervalEnd.IsZero() {
			return nil, fmt.Errorf("%w: run needs an export id and an interval end", ErrInvalid)
		}
		r.IntervalStart, r.IntervalEnd = normTime(r.IntervalStart), normTime(r.IntervalEnd)
		if !r.IntervalStart.Before(r.IntervalEnd) {
			return nil, fmt.Errorf("%w: run interval start must be before its end", ErrInvalid)
		}
		if r.Status == "" {
			r.Status = StatusStarting
		}
		if !r.Status.Valid() {
			return nil, fmt.Errorf("%w: unknown run status %q", ErrInvalid, r.Status)
		}
		if r.Checkpoint == "" {
			r.Checkpoint = "{}"
		}
		if r.ID == "" {
			r.ID = uuid.NewString()
		}
		r.CreatedAt, r.UpdatedAt = t, t
		r.StartedAt, r.FinishedAt = normTimePtr(r.StartedAt), normTimePtr(r.FinishedAt)
		fresh[i] = r
	}
	g := db.gdb.WithContext(ctx)
	out := make([]Run, 0, len(fresh))
	for lo := 0; lo < len(fresh); lo += chunk {
		batch := fresh[lo:min(lo+chunk, len(fresh))]
		res := g.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "export_id"}, {Name: "interval_end"}}, DoNothing: true}).Create(&batch)
		if res.Error != nil {
			return nil, mapErr(res.Error, "create runs")
		}
		type key struct {
			export string
			end    time.Time
		}
		want := make(map[key]bool, len(batch))
		var ids []string
		var ends []time.Time
		for _, r := range batch {
			want[key{r.ExportID, r.IntervalEnd}] = true
			ids = append(ids, r.ExportID)
			if !slices.ContainsFunc(ends, r.IntervalEnd.Equal) {
				ends = append(ends, r.IntervalEnd)
			}
		}
		var got []Run
		if err := g.Where("export_id IN ? AND interval_end IN ?", ids, ends).Find(&got).Error; err != nil {
			return nil, mapErr(err, "create runs: read back")
		}
		for _, r := range got {
			if want[key{r.ExportID, r.IntervalEnd}] {
				out = append(out, r)
			}
		}
	}
	return out, nil
}
