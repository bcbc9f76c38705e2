package source

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/abi"
	_ "modernc.org/sqlite" // driver "sqlite"
)

// SQLite is the embedded event store: a separate SQLite file (e.g. DATA_DIR/events.db) that
// the capture endpoint writes and runs read. Timestamps are integer microseconds since the
// Unix epoch (UTC); uuids are 16-byte blobs, so (inserted_at, uuid) sorts like Position.
//
// Duplicates on (event, distinct_id, uuid) are refused at write time by a unique index
// (INSERT OR IGNORE: the first arrival wins), so a stream never sees them.
//
// Inserts go through one writer goroutine that commits concurrent Inserts together
// (sqlite_writer.go); reads use the other connections of the pool (WAL: readers do not
// wait for the writer).
type SQLite struct {
	db *sql.DB
	w  *groupWriter
}

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS events (
	uuid              BLOB    NOT NULL,
	event             TEXT    NOT NULL,
	distinct_id       TEXT    NOT NULL,
	person_id         BLOB,
	team_id           INTEGER NOT NULL,
	properties        TEXT    NOT NULL DEFAULT '{}',
	person_properties TEXT,
	elements_chain    TEXT    NOT NULL DEFAULT '',
	timestamp         INTEGER NOT NULL,
	created_at        INTEGER,
	inserted_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_inserted_at_uuid ON events (inserted_at, uuid);
CREATE UNIQUE INDEX IF NOT EXISTS events_dedupe ON events (uuid, event, distinct_id);
`

// NewSQLite opens (creating if needed) the event store at path, in WAL mode with a busy
// timeout and synchronous=FULL.
func NewSQLite(path string) (*SQLite, error) {
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "journal_mode(WAL)")
	// FULL: a commit returns once the WAL is fsynced, so an Insert that returned (a capture
	// request answered 200) survives a power loss, not only a killed process. Group commit
	// shares one fsync among all the requests of a transaction (docs/sources.md).
	v.Add("_pragma", "synchronous(FULL)")
	v.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+v.Encode())
	if err != nil {
		return nil, fmt.Errorf("source: open sqlite %s: %w", path, err)
	}
	if _, err := db.Exec(sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("source: create sqlite schema in %s: %w", path, err)
	}
	w, err := newGroupWriter(context.Background(), db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("source: %s: %w", path, err)
	}
	return &SQLite{db: db, w: w}, nil
}

// DB exposes the handle (for maintenance such as retention deletes).
func (s *SQLite) DB() *sql.DB { return s.db }

// Close writes the Inserts already queued, then closes the database. Inserts after Close
// return ErrStoreClosed.
func (s *SQLite) Close() error { return errors.Join(s.w.close(), s.db.Close()) }

// Insert stores events all or nothing and returns once they are committed (possibly in
// one transaction with other concurrent Inserts, each in its own savepoint). Events whose
// (uuid, event, distinct_id) is already stored are skipped. InsertedAt must be set by the
// caller (capture sets it to the arrival time). evs must not be modified until Insert
// returns.
func (s *SQLite) Insert(ctx context.Context, evs []abi.Event) error {
	if len(evs) == 0 {
		return nil
	}
	for i := range evs {
		if evs[i].InsertedAt.IsZero() {
			return fmt.Errorf("source: event %d has no inserted_at", i)
		}
	}
	return s.w.insert(ctx, evs)
}

// sqlite property value as text: strings unquoted, other scalars and containers as JSON.
const sqliteJSONValue = `CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null'
	WHEN 'object' THEN j.value WHEN 'array' THEN j.value ELSE CAST(j.value AS TEXT) END`

func sqliteFilter(f PropertyFilter, args *[]any) string {
	switch f.Op {
	case OpIsSet:
		*args = append(*args, f.Key)
		return `EXISTS (SELECT 1 FROM json_each(events.properties) j WHERE j.key = ?)`
	case OpIsNotSet:
		*args = append(*args, f.Key)
		return `NOT EXISTS (SELECT 1 FROM json_each(events.properties) j WHERE j.key = ?)`
	case OpExact:
		*args = append(*args, f.Key, f.Value)
		return `EXISTS (SELECT 1 FROM json_each(events.properties) j WHERE j.key = ? AND ` + sqliteJSONValue + ` = ?)`
	case OpIsNot:
		*args = append(*args, f.Key, f.Value)
		return `NOT EXISTS (SELECT 1 FROM json_each(events.properties) j WHERE j.key = ? AND ` + sqliteJSONValue + ` = ?)`
	case OpIContains:
		// instr on lower() is a plain substring test: no LIKE wildcards in the value.
		*args = append(*args, f.Key, f.Value)
		return `EXISTS (SELECT 1 FROM json_each(events.properties) j WHERE j.key = ? AND instr(lower(` + sqliteJSONValue + `), lower(?)) > 0)`
	}
	panic("unreachable")
}

// where renders the conditions of q; with interval unset the [Start, End) bounds and the
// timestamp guard are left out (Earliest).
func (s *SQLite) where(q Query, interval bool) ([]string, []any) {
	var where []string
	var args []any
	if interval {
		where = append(where, "inserted_at >= ?", "inserted_at < ?")
		args = append(args, q.Start.UnixMicro(), q.End.UnixMicro())
		if lo, hi, ok := tsBounds(q); ok {
			where = append(where, "timestamp >= ?", "timestamp < ?")
			args = append(args, lo.UnixMicro(), hi.UnixMicro())
		}
	}
	if q.TeamID != nil {
		where = append(where, "team_id = ?")
		args = append(args, *q.TeamID)
	}
	if len(q.IncludeEvents) > 0 {
		where = append(where, "event IN ("+placeholders(len(q.IncludeEvents))+")")
		for _, e := range q.IncludeEvents {
			args = append(args, e)
		}
	}
	if len(q.ExcludeEvents) > 0 {
		where = append(where, "event NOT IN ("+placeholders(len(q.ExcludeEvents))+")")
		for _, e := range q.ExcludeEvents {
			args = append(args, e)
		}
	}
	for _, f := range q.PropertyFilters {
		where = append(where, sqliteFilter(f, &args))
	}
	if len(where) == 0 {
		where = append(where, "1")
	}
	return where, args
}

func (s *SQLite) buildQuery(q Query) (string, []any) {
	where, args := s.where(q, true)
	return `SELECT uuid, event, distinct_id, person_id, team_id, properties, person_properties,
		elements_chain, timestamp, created_at, inserted_at
		FROM events INDEXED BY events_inserted_at_uuid
		WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY inserted_at, uuid`, args
}

// Count implements Counter (duplicates are refused at write time, so a plain count).
func (s *SQLite) Count(ctx context.Context, q Query) (int64, error) {
	q, _, err := normalize(q, BatchOptions{})
	if err != nil {
		return 0, err
	}
	where, args := s.where(q, true)
	var n int64
	err = s.db.QueryRowContext(ctx, `SELECT count(*) FROM events INDEXED BY events_inserted_at_uuid WHERE `+
		strings.Join(where, " AND "), args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("source: sqlite count: %w", err)
	}
	return n, nil
}

// Earliest implements Counter.
func (s *SQLite) Earliest(ctx context.Context, q Query) (time.Time, bool, error) {
	where, args := s.where(q, false)
	var min sql.NullInt64
	// In index order the first matching row is the earliest: no full sort.
	err := s.db.QueryRowContext(ctx, `SELECT inserted_at FROM events INDEXED BY events_inserted_at_uuid WHERE `+
		strings.Join(where, " AND ")+` ORDER BY inserted_at LIMIT 1`, args...).Scan(&min)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("source: sqlite earliest: %w", err)
	}
	return time.UnixMicro(min.Int64).UTC(), true, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// Stream implements Source.
func (s *SQLite) Stream(ctx context.Context, q Query, opts BatchOptions, fn BatchFunc) error {
	q, opts, err := normalize(q, opts)
	if err != nil {
		return err
	}
	query, args := s.buildQuery(q)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("source: sqlite query: %w", err)
	}
	defer rows.Close()
	b := newBatcher(ctx, opts, fn)
	var (
		e                abi.Event
		uuid, pid        []byte
		pp               sql.NullString
		ts, ins          int64
		created          sql.NullInt64
		personID         [16]byte
		createdAt        time.Time
		personProperties string
		nrows            int
	)
	for rows.Next() {
		if err := rows.Scan(&uuid, &e.Event, &e.DistinctID, &pid, &e.TeamID, &e.Properties, &pp,
			&e.ElementsChain, &ts, &created, &ins); err != nil {
			return fmt.Errorf("source: sqlite scan: %w", err)
		}
		if len(uuid) != 16 {
			return fmt.Errorf("source: sqlite row has a %d-byte uuid", len(uuid))
		}
		copy(e.UUID[:], uuid)
		e.PersonID = nil
		if len(pid) == 16 {
			copy(personID[:], pid)
			e.PersonID = &personID
		}
		e.PersonProperties = nil
		if pp.Valid {
			personProperties = pp.String
			e.PersonProperties = &personProperties
		}
		e.Timestamp = time.UnixMicro(ts).UTC()
		e.CreatedAt = nil
		if created.Valid {
			createdAt = time.UnixMicro(created.Int64).UTC()
			e.CreatedAt = &createdAt
		}
		e.InsertedAt = time.UnixMicro(ins).UTC()
		if err := b.add(&e); err != nil {
			return err
		}
		if nrows++; nrows%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := rows.Err(); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return ctx.Err()
		}
		return fmt.Errorf("source: sqlite rows: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.flush()
}
