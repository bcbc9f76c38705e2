package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Operations on sets of runs. Control paths use these rather than ListRuns, whose pages
// exist for the API: no decision of the host may depend on a page size.

// chunk bounds the rows or bound parameters of one statement (SQLite and PostgreSQL both
// take far more; this keeps statements small).
const chunk = 500

// Interval is one export interval [Start, End).
type Interval struct{ Start, End time.Time }

// BackfillRuns is what AddBackfillRuns did.
type BackfillRuns struct {
	// Runs are the runs the backfill executes, oldest interval first: created for it, or
	// existing finished runs moved to it as a deliberate re-run (a higher Generation).
	Runs []Run
	// Created and Rerun count Runs by origin.
	Created, Rerun int
	// InFlight are intervals whose run was waiting or running for something else
	// (the schedule, another backfill): the backfill does not take them.
	InFlight []Run
}

// AddBackfillRuns gives backfill backfillID one run per interval, in one transaction: a
// new run where the interval has none, or the existing run moved to this backfill when it
// has finished (Completed, Failed, Cancelled) and belongs to no backfill still running
// (the new backfill is Running itself: it is created before its runs). A moved run goes back to Starting with the
// next generation and its previous counts and error cleared. Runs still in flight are
// left alone and reported.
func (db *DB) AddBackfillRuns(ctx context.Context, exportID, backfillID string, intervals []Interval) (BackfillRuns, error) {
	var out BackfillRuns
	if exportID == "" || backfillID == "" {
		return out, fmt.Errorf("%w: backfill runs need an export id and a backfill id", ErrInvalid)
	}
	ends := make([]time.Time, len(intervals))
	fresh := make([]Run, len(intervals))
	t := now()
	for i, iv := range intervals {
		s, e := normTime(iv.Start), normTime(iv.End)
		if !s.Before(e) {
			return out, fmt.Errorf("%w: interval start %s is not before its end %s", ErrInvalid, s, e)
		}
		bid := backfillID
		ends[i] = e
		fresh[i] = Run{ID: uuid.NewString(), ExportID: exportID, IntervalStart: s, IntervalEnd: e,
			Status: StatusStarting, BackfillID: &bid, Checkpoint: "{}", CreatedAt: t, UpdatedAt: t}
	}
	err := db.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for lo := 0; lo < len(fresh); lo += chunk {
			batch := fresh[lo:min(lo+chunk, len(fresh))]
			res := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "export_id"}, {Name: "interval_end"}}, DoNothing: true}).Create(&batch)
			if res.Error != nil {
				return mapErr(res.Error, "create backfill runs")
			}
		}
		for lo := 0; lo < len(ends); lo += chunk {
			res := tx.Model(&Run{}).
				Where("export_id = ? AND interval_end IN ? AND status IN ? AND (backfill_id IS NULL OR backfill_id <> ?)",
					exportID, ends[lo:min(lo+chunk, len(ends))], []RunStatus{StatusCompleted, StatusFailed, StatusCancelled}, backfillID).
				// A finished run of a backfill still running stays with it.
				Where("backfill_id IS NULL OR backfill_id NOT IN (?)",
					tx.Model(&Backfill{}).Select("id").Where("status IN ?", []RunStatus{StatusStarting, StatusRunning})).
				Updates(map[string]any{
					"status": StatusStarting, "backfill_id": backfillID, "generation": gorm.Expr("generation + 1"),
					"records_completed": 0, "records_total_count": nil, "records_missing": nil, "data_checked_at": nil, "bytes_exported": 0, "latest_error": "",
					"started_at": nil, "finished_at": nil, "updated_at": t,
				})
			if res.Error != nil {
				return mapErr(res.Error, "re-run runs for a backfill")
			}
			out.Rerun += int(res.RowsAffected)
		}
		for lo := 0; lo < len(ends); lo += chunk {
			var got []Run
			err := tx.Where("export_id = ? AND interval_end IN ?", exportID, ends[lo:min(lo+chunk, len(ends))]).
				Order("interval_end").Find(&got).Error
			if err != nil {
				return mapErr(err, "read back backfill runs")
			}
			for _, r := range got {
				if r.BackfillID != nil && *r.BackfillID == backfillID {
					out.Runs = append(out.Runs, r)
				} else {
					out.InFlight = append(out.InFlight, r)
				}
			}
		}
		return tx.Model(&Backfill{}).Where("id = ?", backfillID).
			Updates(map[string]any{"total_runs": len(out.Runs), "updated_at": t}).Error
	})
	if err != nil {
		return BackfillRuns{}, err
	}
	out.Created = len(out.Runs) - out.Rerun
	return out, nil
}

// unfinished are the statuses of a run that will still change on its own.
var unfinished = []RunStatus{StatusStarting, StatusRunning, StatusFailedRetryable}

// BackfillHasUnfinishedRuns reports whether any run of the backfill is Starting, Running or
// FailedRetryable (an index lookup, whatever the backfill's size).
func (db *DB) BackfillHasUnfinishedRuns(ctx context.Context, backfillID string) (bool, error) {
	var ids []string
	err := db.gdb.WithContext(ctx).Model(&Run{}).Where("backfill_id = ? AND status IN ?", backfillID, unfinished).
		Limit(1).Pluck("id", &ids).Error
	if err != nil {
		return false, mapErr(err, "unfinished runs of backfill "+backfillID)
	}
	return len(ids) > 0, nil
}

// CancelWaitingBackfillRuns cancels, in one statement, the backfill's runs that are not
// executing (Starting, FailedRetryable), and returns how many it cancelled. Running runs
// are the caller's: they stop through their host.
func (db *DB) CancelWaitingBackfillRuns(ctx context.Context, backfillID, reason string) (int64, error) {
	t := now()
	res := db.gdb.WithContext(ctx).Model(&Run{}).
		Where("backfill_id = ? AND status IN ?", backfillID, []RunStatus{StatusStarting, StatusFailedRetryable}).
		Updates(map[string]any{"status": StatusCancelled, "latest_error": reason, "finished_at": t, "updated_at": t})
	if res.Error != nil {
		return 0, mapErr(res.Error, "cancel runs of backfill "+backfillID)
	}
	return res.RowsAffected, nil
}

// RunSet selects runs for ForEachRun. Zero values mean no restriction.
type RunSet struct {
	ExportID   string
	BackfillID string
	Statuses   []RunStatus
	// UpdatedBefore keeps the runs whose row last changed before this time (zero: any).
	UpdatedBefore time.Time
}

// ForEachRun calls fn for every run in the set, reading them a page at a time by id, so
// the set may be of any size. An error from fn stops the walk and is returned.
func (db *DB) ForEachRun(ctx context.Context, set RunSet, fn func(Run) error) error {
	after := ""
	for {
		q := db.gdb.WithContext(ctx).Where("id > ?", after)
		if set.ExportID != "" {
			q = q.Where("export_id = ?", set.ExportID)
		}
		if set.BackfillID != "" {
			q = q.Where("backfill_id = ?", set.BackfillID)
		}
		if len(set.Statuses) > 0 {
			q = q.Where("status IN ?", set.Statuses)
		}
		if !set.UpdatedBefore.IsZero() {
			q = q.Where("updated_at < ?", normTime(set.UpdatedBefore))
		}
		var page []Run
		if err := q.Order("id").Limit(chunk).Find(&page).Error; err != nil {
			return mapErr(err, "walk runs")
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < chunk {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// RecentFailures counts the Failed runs among an export's last n finished runs (Completed
// or Failed, newest finished first; cancelled runs are not a destination's failure), and
// returns that count and how many runs it looked at.
func (db *DB) RecentFailures(ctx context.Context, exportID string, n int) (failed, considered int, err error) {
	var statuses []RunStatus
	err = db.gdb.WithContext(ctx).Model(&Run{}).
		Where("export_id = ? AND status IN ?", exportID, []RunStatus{StatusCompleted, StatusFailed}).
		Order("finished_at DESC").Order("id DESC").Limit(n).Pluck("status", &statuses).Error
	if err != nil {
		return 0, 0, mapErr(err, "recent failures of "+exportID)
	}
	for _, s := range statuses {
		if s == StatusFailed {
			failed++
		}
	}
	return failed, len(statuses), nil
}
