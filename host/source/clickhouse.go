package source

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
)

// ClickHouseColumns names the columns of the events table. Empty fields take PostHog's names.
type ClickHouseColumns struct {
	UUID, Event, Properties, DistinctID, TeamID, PersonID, PersonProperties,
	ElementsChain, Timestamp, CreatedAt, InsertedAt string
	// FallbackInsertedAt is used when InsertedAt is null: coalesce(inserted_at, _timestamp).
	// Default "_timestamp"; "-" disables the fallback.
	FallbackInsertedAt string
}

// ClickHouseConfig configures the ClickHouse source.
type ClickHouseConfig struct {
	// DSN: clickhouse://127.0.0.1:9000/default (native protocol) or
	// http://127.0.0.1:8123/default (HTTP; https:// with TLS), parsed by clickhouse.ParseDSN.
	DSN     string
	Table   string // default "events"; may be "db.table"
	Columns ClickHouseColumns
	// MaxBlockSize bounds the rows per block the server sends (default
	// DefaultMaxBlockSize), which bounds the client's memory together with the row size.
	MaxBlockSize int
}

// DefaultMaxBlockSize is the rows per ClickHouse block when none is set: about 2 MB of
// decoded event data at PostHog's typical 500 bytes per event.
const DefaultMaxBlockSize = 4096

func (c *ClickHouseColumns) defaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.UUID, "uuid")
	def(&c.Event, "event")
	def(&c.Properties, "properties")
	def(&c.DistinctID, "distinct_id")
	def(&c.TeamID, "team_id")
	def(&c.PersonID, "person_id")
	def(&c.PersonProperties, "person_properties")
	def(&c.ElementsChain, "elements_chain")
	def(&c.Timestamp, "timestamp")
	def(&c.CreatedAt, "created_at")
	def(&c.InsertedAt, "inserted_at")
	def(&c.FallbackInsertedAt, "_timestamp")
}

// ClickHouse streams PostHog's events table over the native protocol or HTTP. Tested against
// ClickHouse 18.16 over the native protocol (DateTime('UTC'), Nullable, UUID) and against a
// current engine (chDB 26.x behind internal/chdbfront) over HTTP with PostHog's real types
// (DateTime64(6, 'UTC'), Nullable, LowCardinality); DateTime64 columns are detected and
// compared with microsecond literals.
type ClickHouse struct {
	conn  driver.Conn
	cfg   ClickHouseConfig
	table string
	c     quotedColumns
	// column types by configured name, from system.columns
	types map[string]string
}

type quotedColumns struct {
	uuid, event, properties, distinctID, teamID, personID, personProperties,
	elementsChain, timestamp, createdAt, insertedAt, fallback string
}

// quoteIdent quotes an identifier with backquotes (config, not user input, but quoted anyway).
func quoteIdent(s string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(s) + "`"
}

// NewClickHouse connects and checks the table's columns.
func NewClickHouse(ctx context.Context, cfg ClickHouseConfig) (*ClickHouse, error) {
	if cfg.Table == "" {
		cfg.Table = "events"
	}
	if cfg.MaxBlockSize <= 0 {
		cfg.MaxBlockSize = DefaultMaxBlockSize
	}
	cfg.Columns.defaults()
	opts, err := clickhouse.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("source: clickhouse dsn: %w", err)
	}
	if opts.BlockBufferSize == 0 {
		// The client decodes blocks ahead of the reader into a channel (2 by default). The
		// host reads ahead already, in SLB1 batches (Prefetch), so one block of slack is
		// enough; each one held is max_block_size rows of decoded strings.
		opts.BlockBufferSize = 1
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("source: clickhouse open: %w", err)
	}
	s := &ClickHouse{conn: conn, cfg: cfg, types: map[string]string{}}
	db, tbl := "", cfg.Table
	if i := strings.IndexByte(cfg.Table, '.'); i >= 0 {
		db, tbl = cfg.Table[:i], cfg.Table[i+1:]
		s.table = quoteIdent(db) + "." + quoteIdent(tbl)
	} else {
		s.table = quoteIdent(tbl)
	}
	if err := s.loadTypes(ctx, db, tbl); err != nil {
		conn.Close()
		return nil, err
	}
	col := cfg.Columns
	s.c = quotedColumns{quoteIdent(col.UUID), quoteIdent(col.Event), quoteIdent(col.Properties),
		quoteIdent(col.DistinctID), quoteIdent(col.TeamID), quoteIdent(col.PersonID),
		quoteIdent(col.PersonProperties), quoteIdent(col.ElementsChain), quoteIdent(col.Timestamp),
		quoteIdent(col.CreatedAt), quoteIdent(col.InsertedAt), ""}
	if col.FallbackInsertedAt != "-" {
		s.c.fallback = quoteIdent(col.FallbackInsertedAt)
	}
	return s, nil
}

func (s *ClickHouse) loadTypes(ctx context.Context, db, tbl string) error {
	q := `SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?`
	args := []any{tbl}
	if db != "" {
		q = `SELECT name, type FROM system.columns WHERE database = ? AND table = ?`
		args = []any{db, tbl}
	}
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("source: clickhouse: read columns of %s: %w", s.cfg.Table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var n, t string
		if err := rows.Scan(&n, &t); err != nil {
			return err
		}
		s.types[n] = t
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(s.types) == 0 {
		return fmt.Errorf("source: clickhouse: table %s not found", s.cfg.Table)
	}
	c := s.cfg.Columns
	need := []string{c.UUID, c.Event, c.Properties, c.DistinctID, c.TeamID, c.PersonID,
		c.PersonProperties, c.ElementsChain, c.Timestamp, c.CreatedAt, c.InsertedAt}
	if c.FallbackInsertedAt != "-" {
		need = append(need, c.FallbackInsertedAt)
	}
	var missing []string
	for _, n := range need {
		if _, ok := s.types[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("source: clickhouse: table %s lacks columns %s", s.cfg.Table, strings.Join(missing, ", "))
	}
	return nil
}

// Close closes the connection.
func (s *ClickHouse) Close() error { return s.conn.Close() }

// Conn exposes the connection (tests and tooling).
func (s *ClickHouse) Conn() driver.Conn { return s.conn }

// timeArg renders a bound time comparison operand for a column: DateTime columns hold
// whole seconds, so a bound is rounded up (x >= 10.5 <=> x >= 11 for integer x) when up is
// set, which keeps [Start, End) exact; DateTime64 columns get a microsecond literal.
func (s *ClickHouse) timeArg(colName string, t time.Time, up bool, args *[]any) string {
	if strings.Contains(s.types[colName], "DateTime64") {
		*args = append(*args, t.UTC().Format("2006-01-02 15:04:05.000000"))
		return "toDateTime64(?, 6, 'UTC')"
	}
	sec := t.Unix()
	if up && t.Nanosecond() != 0 {
		sec++
	}
	*args = append(*args, sec)
	return "toDateTime(?, 'UTC')"
}

// chValue is a property's value as text: strings unquoted, other values as raw JSON text.
// 18.16 has no JSONExtract; visitParam* find the first "key": anywhere in the text (a
// nested object's key can match) and expect PostHog's compact JSON (no space before ':').
func chValue(props string) string {
	raw := "visitParamExtractRaw(" + props + ", ?)"
	return "if(substring(" + raw + ", 1, 1) = '\"', visitParamExtractString(" + props + ", ?), " + raw + ")"
}

func (s *ClickHouse) filter(f PropertyFilter, args *[]any) string {
	p := s.c.properties
	switch f.Op {
	case OpIsSet:
		*args = append(*args, f.Key)
		return "visitParamHas(" + p + ", ?)"
	case OpIsNotSet:
		*args = append(*args, f.Key)
		return "NOT visitParamHas(" + p + ", ?)"
	case OpExact:
		*args = append(*args, f.Key, f.Key, f.Key, f.Key, f.Value) // visitParamHas + chValue (3)
		return "(visitParamHas(" + p + ", ?) AND " + chValue(p) + " = ?)"
	case OpIsNot:
		*args = append(*args, f.Key, f.Key, f.Key, f.Key, f.Value) // visitParamHas + chValue (3)
		return "NOT (visitParamHas(" + p + ", ?) AND " + chValue(p) + " = ?)"
	case OpIContains:
		*args = append(*args, f.Key, f.Key, f.Key, f.Key, f.Value) // visitParamHas + chValue (3)
		return "(visitParamHas(" + p + ", ?) AND positionCaseInsensitiveUTF8(" + chValue(p) + ", ?) > 0)"
	}
	panic("unreachable")
}

const (
	aliasIns  = "_sluice_inserted_at"
	aliasUUID = "_sluice_uuid"
)

// buildQuery renders the query; see docs/sources.md for its shape.
func (s *ClickHouse) buildQuery(q Query) (string, []any) {
	c := s.c
	ins := c.insertedAt
	insCol := s.cfg.Columns.InsertedAt
	if c.fallback != "" {
		ins = "assumeNotNull(coalesce(" + c.insertedAt + ", " + c.fallback + "))"
	}
	var args []any
	var where []string
	where = append(where, aliasIns+" >= "+s.timeArg(insCol, q.Start, true, &args))
	where = append(where, aliasIns+" < "+s.timeArg(insCol, q.End, true, &args))
	if lo, hi, ok := tsBounds(q); ok {
		tsCol := s.cfg.Columns.Timestamp
		where = append(where, c.timestamp+" >= "+s.timeArg(tsCol, lo, false, &args))
		where = append(where, c.timestamp+" < "+s.timeArg(tsCol, hi, true, &args))
	}
	if q.TeamID != nil {
		where = append(where, c.teamID+" = ?")
		args = append(args, *q.TeamID)
	}
	if len(q.IncludeEvents) > 0 {
		where = append(where, c.event+" IN ("+placeholders(len(q.IncludeEvents))+")")
		for _, e := range q.IncludeEvents {
			args = append(args, e)
		}
	}
	if len(q.ExcludeEvents) > 0 {
		where = append(where, c.event+" NOT IN ("+placeholders(len(q.ExcludeEvents))+")")
		for _, e := range q.ExcludeEvents {
			args = append(args, e)
		}
	}
	for _, f := range q.PropertyFilters {
		where = append(where, s.filter(f, &args))
	}
	// uuids are ordered by their canonical text: byte order, like Position and SQLite.
	// (ClickHouse orders the UUID type by its halves, not bytewise.)
	query := `SELECT ` + c.uuid + `, ` + c.event + `, ` + c.distinctID + `, toNullable(` + c.personID + `), toInt64(` + c.teamID + `), ` +
		c.properties + `, toNullable(` + c.personProperties + `), ` + c.elementsChain + `, ` + c.timestamp + `, toNullable(` + c.createdAt + `), ` +
		ins + ` AS ` + aliasIns + `, toString(` + c.uuid + `) AS ` + aliasUUID + `
FROM ` + s.table + `
WHERE ` + strings.Join(where, "\n  AND ") + `
ORDER BY ` + aliasIns + `, ` + aliasUUID + `
LIMIT 1 BY ` + c.event + `, cityHash64(` + c.distinctID + `), ` + c.uuid
	return query, args
}

// Stream implements Source. Rows are read with rows.Next() block by block; the server sorts.
func (s *ClickHouse) Stream(ctx context.Context, q Query, opts BatchOptions, fn BatchFunc) error {
	q, opts, err := normalize(q, opts)
	if err != nil {
		return err
	}
	query, args := s.buildQuery(q)
	qctx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"max_block_size": s.cfg.MaxBlockSize,
	}))
	rows, err := s.conn.Query(qctx, query, args...)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("source: clickhouse query: %w", err)
	}
	defer rows.Close()
	b := newBatcher(ctx, opts, fn)
	var (
		e          abi.Event
		id         uuid.UUID
		pid        *uuid.UUID
		pp         *string
		created    *time.Time
		personID   [16]byte
		suuid      string
		nrows      int
		insertedAt time.Time
	)
	for rows.Next() {
		if err := rows.Scan(&id, &e.Event, &e.DistinctID, &pid, &e.TeamID, &e.Properties, &pp,
			&e.ElementsChain, &e.Timestamp, &created, &insertedAt, &suuid); err != nil {
			return fmt.Errorf("source: clickhouse scan: %w", err)
		}
		e.UUID = id
		e.PersonID = nil
		if pid != nil {
			personID = *pid
			e.PersonID = &personID
		}
		e.PersonProperties = pp
		e.Timestamp = e.Timestamp.UTC()
		e.CreatedAt = nil
		if created != nil {
			c := created.UTC()
			e.CreatedAt = &c
		}
		e.InsertedAt = insertedAt.UTC()
		if err := b.add(&e); err != nil {
			return err
		}
		if nrows++; nrows%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := rows.Err(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("source: clickhouse rows: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.flush()
}

var _ Source = (*ClickHouse)(nil)
var _ Source = (*SQLite)(nil)
