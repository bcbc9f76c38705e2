package storage

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// AppendLog stores one log line and returns it with its ID.
func (db *DB) AppendLog(ctx context.Context, e LogEntry) (LogEntry, error) {
	entries := []LogEntry{e}
	if err := db.AppendLogs(ctx, entries); err != nil {
		return LogEntry{}, err
	}
	return entries[0], nil
}

// AppendLogs stores log lines in one statement per 200 lines, setting their
// IDs in place. A zero Time becomes now; empty Attrs becomes {}.
func (db *DB) AppendLogs(ctx context.Context, entries []LogEntry) error {
	if len(entries) == 0 {
		return nil
	}
	for i := range entries {
		e := &entries[i]
		if e.ExportID == "" {
			return fmt.Errorf("%w: log line %d has no export id", ErrInvalid, i)
		}
		if e.Level == "" {
			e.Level = LevelInfo
		}
		e.Level = LogLevel(strings.ToUpper(string(e.Level)))
		if !e.Level.Valid() {
			return fmt.Errorf("%w: unknown log level %q", ErrInvalid, e.Level)
		}
		var err error
		if e.Attrs, err = jsonText("attrs", e.Attrs, "{}"); err != nil {
			return err
		}
		e.Time = normTime(e.Time)
		if e.Time.IsZero() {
			e.Time = now()
		}
		e.ID = 0
	}
	err := db.gdb.WithContext(ctx).CreateInBatches(entries, 200).Error
	return mapErr(err, "append logs")
}

// LogFilter narrows QueryLogs. Zero values mean no restriction; Limit 0 means 100.
type LogFilter struct {
	ExportID string
	RunID    string
	MinLevel LogLevel  // lines at this level or more severe
	Search   string    // case-insensitive substring of the message
	After    time.Time // time > After
	Before   time.Time // time < Before
	// Cursor, when set, starts after this line in (time, id) descending order: the next
	// page. A line's id need not follow its time (concurrent writers take the time before
	// inserting), so the cursor is both.
	Cursor *LogCursor
	Limit  int
}

// LogCursor is the position of the last line of a page.
type LogCursor struct {
	Time time.Time
	ID   int64
}

// QueryLogs returns log lines, newest first.
func (db *DB) QueryLogs(ctx context.Context, f LogFilter) ([]LogEntry, error) {
	q := db.gdb.WithContext(ctx)
	if f.ExportID != "" {
		q = q.Where("export_id = ?", f.ExportID)
	}
	if f.RunID != "" {
		q = q.Where("run_id = ?", f.RunID)
	}
	if f.MinLevel != "" {
		lvl := LogLevel(strings.ToUpper(string(f.MinLevel)))
		rank, ok := levelRank[lvl]
		if !ok {
			return nil, fmt.Errorf("%w: unknown log level %q", ErrInvalid, f.MinLevel)
		}
		var levels []LogLevel
		for l, r := range levelRank {
			if r >= rank {
				levels = append(levels, l)
			}
		}
		q = q.Where("level IN ?", levels)
	}
	if f.Search != "" {
		q = q.Where(`LOWER(message) LIKE ? ESCAPE '\'`, "%"+escapeLike(strings.ToLower(f.Search))+"%")
	}
	if !f.After.IsZero() {
		q = q.Where("time > ?", normTime(f.After))
	}
	if !f.Before.IsZero() {
		q = q.Where("time < ?", normTime(f.Before))
	}
	if c := f.Cursor; c != nil {
		t := normTime(c.Time)
		q = q.Where("(time < ? OR (time = ? AND id < ?))", t, t, c.ID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []LogEntry
	err := q.Order("time DESC").Order("id DESC").Limit(limit).Find(&out).Error
	return out, mapErr(err, "query logs")
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
