package source

import (
	"context"
	"fmt"
	"strconv"
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
	conn driver.Conn
	opts *clickhouse.Options // parsed DSN: the native reader dials its own connection from it
	// viaRows makes Stream read through clickhouse-go's rows whatever the protocol (tests
	// and benchmarks compare the two readers).
	viaRows bool
	cfg     ClickHouseConfig
	table   string
	c       quotedColumns
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
	s := &ClickHouse{conn: conn, opts: opts, cfg: cfg, types: map[string]string{}}
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
func (s *ClickHouse) timeArg(colName string, t time.Time, up bool) string {
	if strings.Contains(s.types[colName], "DateTime64") {
		return "toDateTime64(" + chString(t.UTC().Format("2006-01-02 15:04:05.000000")) + ", 6, 'UTC')"
	}
	sec := t.Unix()
	if up && t.Nanosecond() != 0 {
		sec++
	}
	return "toDateTime(" + strconv.FormatInt(sec, 10) + ", 'UTC')"
}

// chQuote escapes a string literal the way clickhouse-go's client-side binding does.
var chQuote = strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`)

// chString renders s as a ClickHouse string literal. Queries carry their values as
// literals (no client-side binding): the native reader (ch-go) has no binding, and
// ClickHouse 18.16 has no query parameters.
func chString(s string) string { return "'" + chQuote.Replace(s) + "'" }

// chValue is a property's value as text: strings unquoted, other values as raw JSON text.
// 18.16 has no JSONExtract; visitParam* find the first "key": anywhere in the text (a
// nested object's key can match) and expect PostHog's compact JSON (no space before ':').
func chValue(props, key string) string {
	raw := "visitParamExtractRaw(" + props + ", " + key + ")"
	return "if(substring(" + raw + ", 1, 1) = '\"', visitParamExtractString(" + props + ", " + key + "), " + raw + ")"
}

func (s *ClickHouse) filter(f PropertyFilter) string {
	p, k, v := s.c.properties, chString(f.Key), chString(f.Value)
	has := "visitParamHas(" + p + ", " + k + ")"
	switch f.Op {
	case OpIsSet:
		return has
	case OpIsNotSet:
		return "NOT " + has
	case OpExact:
		return "(" + has + " AND " + chValue(p, k) + " = " + v + ")"
	case OpIsNot:
		return "NOT (" + has + " AND " + chValue(p, k) + " = " + v + ")"
	case OpIContains:
		return "(" + has + " AND positionCaseInsensitiveUTF8(" + chValue(p, k) + ", " + v + ") > 0)"
	}
	panic("unreachable")
}

const (
	aliasIns  = "_sluice_inserted_at"
	aliasUUID = "_sluice_uuid"
)

// insExpr is the insertion-time expression: the column, or its coalesce with the fallback.
func (s *ClickHouse) insExpr() string {
	if s.c.fallback != "" {
		return "assumeNotNull(coalesce(" + s.c.insertedAt + ", " + s.c.fallback + "))"
	}
	return s.c.insertedAt
}

// where renders the conditions of q, on the alias aliasIns for the insertion time, with
// values as literals. With interval unset the [Start, End) bounds and the timestamp guard
// are left out (Earliest).
func (s *ClickHouse) where(q Query, interval bool) []string {
	c := s.c
	insCol := s.cfg.Columns.InsertedAt
	var where []string
	if interval {
		where = append(where, aliasIns+" >= "+s.timeArg(insCol, q.Start, true))
		where = append(where, aliasIns+" < "+s.timeArg(insCol, q.End, true))
		if lo, hi, ok := tsBounds(q); ok {
			tsCol := s.cfg.Columns.Timestamp
			where = append(where, c.timestamp+" >= "+s.timeArg(tsCol, lo, false))
			where = append(where, c.timestamp+" < "+s.timeArg(tsCol, hi, true))
		}
	}
	if q.TeamID != nil {
		where = append(where, c.teamID+" = "+strconv.FormatInt(*q.TeamID, 10))
	}
	if len(q.IncludeEvents) > 0 {
		where = append(where, c.event+" IN ("+chStrings(q.IncludeEvents)+")")
	}
	if len(q.ExcludeEvents) > 0 {
		where = append(where, c.event+" NOT IN ("+chStrings(q.ExcludeEvents)+")")
	}
	for _, f := range q.PropertyFilters {
		where = append(where, s.filter(f))
	}
	if len(where) == 0 {
		where = append(where, "1")
	}
	return where
}

// chStrings renders a list of string literals.
func chStrings(vs []string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = chString(v)
	}
	return strings.Join(out, ", ")
}

// dedupe is Stream's de-duplication: one row per (event, distinct_id, uuid).
func (s *ClickHouse) dedupe() string {
	return "LIMIT 1 BY " + s.c.event + ", cityHash64(" + s.c.distinctID + "), " + s.c.uuid
}

// buildQuery renders the query; see docs/sources.md for its shape.
func (s *ClickHouse) buildQuery(q Query) string {
	c := s.c
	where := s.where(q, true)
	// uuids are ordered by their canonical text: byte order, like Position and SQLite.
	// (ClickHouse orders the UUID type by its halves, not bytewise.)
	query := `SELECT ` + c.uuid + `, ` + c.event + `, ` + c.distinctID + `, toNullable(` + c.personID + `), toInt64(` + c.teamID + `), ` +
		c.properties + `, toNullable(` + c.personProperties + `), ` + c.elementsChain + `, ` + c.timestamp + `, toNullable(` + c.createdAt + `), ` +
		s.insExpr() + ` AS ` + aliasIns + `, toString(` + c.uuid + `) AS ` + aliasUUID + `
FROM ` + s.table + `
WHERE ` + strings.Join(where, "\n  AND ") + `
ORDER BY ` + aliasIns + `, ` + aliasUUID + `
` + s.dedupe()
	return query
}

// Count implements Counter: the rows Stream sends for q, de-duplicated the same way (a
// LIMIT 1 BY subquery without the sort and without reading the wide columns).
func (s *ClickHouse) Count(ctx context.Context, q Query) (int64, error) {
	q, _, err := normalize(q, BatchOptions{})
	if err != nil {
		return 0, err
	}
	c := s.c
	where := s.where(q, true)
	query := `SELECT count() FROM (SELECT ` + c.event + `, ` + c.distinctID + `, ` + c.uuid + `, ` + s.insExpr() + ` AS ` + aliasIns + `
FROM ` + s.table + `
WHERE ` + strings.Join(where, "\n  AND ") + `
` + s.dedupe() + `)`
	var n uint64
	if err := s.conn.QueryRow(ctx, query).Scan(&n); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("source: clickhouse count: %w", err)
	}
	return int64(n), nil
}

// Earliest implements Counter: the smallest insertion time of the rows q's filters select,
// whatever the interval; ok is false when there is none.
func (s *ClickHouse) Earliest(ctx context.Context, q Query) (time.Time, bool, error) {
	where := s.where(q, false)
	query := `SELECT count(), min(` + aliasIns + `) FROM (SELECT ` + s.insExpr() + ` AS ` + aliasIns + `
FROM ` + s.table + `
WHERE ` + strings.Join(where, "\n  AND ") + `)`
	var (
		n   uint64
		min time.Time
	)
	if err := s.conn.QueryRow(ctx, query).Scan(&n, &min); err != nil {
		if ctx.Err() != nil {
			return time.Time{}, false, ctx.Err()
		}
		return time.Time{}, false, fmt.Errorf("source: clickhouse earliest: %w", err)
	}
	if n == 0 {
		return time.Time{}, false, nil
	}
	return min.UTC(), true, nil
}

// Stream implements Source. The server sorts; rows arrive block by block. Over the native
// protocol the blocks are decoded into reused column buffers (streamNative); over HTTP
// through clickhouse-go's rows (streamRows).
func (s *ClickHouse) Stream(ctx context.Context, q Query, opts BatchOptions, fn BatchFunc) error {
	q, opts, err := normalize(q, opts)
	if err != nil {
		return err
	}
	query := s.buildQuery(q)
	b := newBatcher(ctx, opts, fn)
	if s.opts.Protocol == clickhouse.Native && !s.viaRows {
		err = s.streamNative(ctx, query, b)
	} else {
		err = s.streamRows(ctx, query, b)
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.flush()
}

// streamRows reads the query through clickhouse-go's rows (the HTTP protocol): each block
// is decoded into fresh buffers and each string value copied once more by Scan.
func (s *ClickHouse) streamRows(ctx context.Context, query string, b *batcher) error {
	qctx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"max_block_size": s.cfg.MaxBlockSize,
	}))
	rows, err := s.conn.Query(qctx, query)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("source: clickhouse query: %w", err)
	}
	defer rows.Close()
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
	return nil
}

var _ Counter = (*ClickHouse)(nil)
var _ Counter = (*SQLite)(nil)
