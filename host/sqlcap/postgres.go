package sqlcap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/abi"
)

// pgBackend is one binding's pgx pool.
type pgBackend struct {
	pool   *pgxpool.Pool
	schema string
}

// pgQuote quotes a keyword/value connection string value.
func pgQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func newPGBackend(cfg Config, s settings) (backend, error) {
	// sslmode: pgx's TLS for it (prefer and require encrypt without verifying, prefer
	// falling back to plain; verify-full checks the system roots and the host name).
	sslmode := s.tls
	dsn := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=%s connect_timeout=10",
		pgQuote(s.host), s.port, pgQuote(s.database), pgQuote(s.user), sslmode)
	if s.password != "" {
		dsn += " password=" + pgQuote(s.password)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The DSN holds the password: never pass pgx's message (it may quote it) on.
		return nil, badArg("invalid postgres connection settings (host, port, database, user, tls)")
	}
	pc.MaxConns = int32(cfg.MaxConnsPerBinding)
	pc.MinConns = 0
	pc.MaxConnIdleTime = cfg.IdleTimeout
	pc.HealthCheckPeriod = time.Minute
	cc := pc.ConnConfig
	cc.DialFunc = cfg.dialer().DialContext
	cc.RuntimeParams["search_path"] = pgQuoteIdent(s.schema) + ", pg_catalog"
	cc.RuntimeParams["application_name"] = "sluice"
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, err
	}
	return &pgBackend{pool: pool, schema: s.schema}, nil
}

func pgQuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func (p *pgBackend) close() { p.pool.Close() }

func (p *pgBackend) session(b *Binding) session { return &pgSession{p: p, b: b} }

// pgQuerier is what a pool and a transaction have in common.
type pgQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error)
}

type pgSession struct {
	p  *pgBackend
	b  *Binding
	tx pgx.Tx
}

func (s *pgSession) q() pgQuerier {
	if s.tx != nil {
		return s.tx
	}
	return s.p.pool
}

func (s *pgSession) inTx() bool { return s.tx != nil }

// exec runs the statement with the extended protocol (Query, not Exec, which sends a
// statement without arguments with the simple protocol, where several statements would
// run): the server too refuses more than one.
func (s *pgSession) exec(ctx context.Context, sql string, args []any) (int64, error) {
	rows, err := s.q().Query(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return rows.CommandTag().RowsAffected(), nil
}

func (s *pgSession) query(ctx context.Context, sql string, args []any, maxRows int) (abi.SQLQueryResult, error) {
	res := abi.SQLQueryResult{Columns: []string{}, Rows: [][]any{}}
	rows, err := s.q().Query(ctx, sql, args...)
	if err != nil {
		return res, err
	}
	defer rows.Close()
	for _, f := range rows.FieldDescriptions() {
		res.Columns = append(res.Columns, f.Name)
	}
	size := 0
	for rows.Next() {
		if len(res.Rows) >= maxRows || size > MaxQueryBytes {
			res.Truncated = true
			break
		}
		vals, err := rows.Values()
		if err != nil {
			return res, err
		}
		row := make([]any, len(vals))
		for i, v := range vals {
			row[i] = jsonValue(v)
		}
		doc, _ := json.Marshal(row)
		size += len(doc)
		if size > MaxQueryBytes {
			res.Truncated = true
			break
		}
		res.Rows = append(res.Rows, row)
	}
	rows.Close()
	return res, rows.Err()
}

// jsonValue turns a scanned value into JSON: timestamps as RFC 3339 in UTC, uuids as text,
// numerics as numbers or text, json as itself.
func jsonValue(v any) any {
	switch x := v.(type) {
	case nil, string, bool, int16, int32, int64, float32, float64, map[string]any, []any:
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case [16]byte:
		return uuidString(x)
	case []byte:
		return string(x)
	case pgtype.Numeric:
		if f, err := x.Float64Value(); err == nil && x.Exp >= 0 && x.Int != nil && x.Int.IsInt64() {
			return f.Float64
		}
		if x.Int == nil {
			return nil
		}
		r := new(big.Rat).SetInt(x.Int)
		if x.Exp > 0 {
			r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(x.Exp)), nil)))
		} else if x.Exp < 0 {
			r.Quo(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-x.Exp)), nil)))
		}
		return r.FloatString(int(max(0, -x.Exp)))
	case netip.Prefix:
		return x.String()
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

func (s *pgSession) begin(ctx context.Context) error {
	tx, err := s.p.pool.Begin(ctx)
	if err != nil {
		return err
	}
	s.tx = tx
	return nil
}

func (s *pgSession) commit(ctx context.Context) error {
	tx := s.tx
	s.tx = nil // a failed commit leaves no transaction (pgx rolls it back)
	return tx.Commit(ctx)
}

func (s *pgSession) rollback(ctx context.Context) error {
	tx := s.tx
	s.tx = nil
	if tx == nil {
		return nil
	}
	return tx.Rollback(ctx)
}

// load copies batch rows with COPY FROM STDIN (binary), converting each run column for its
// target column's type (SPEC 6.2 mapping).
func (s *pgSession) load(ctx context.Context, table string, cols []abi.ColumnSelect, batch []byte, start, count int) (int64, error) {
	rd, err := abi.NewBatchReader(batch)
	if err != nil {
		return 0, badArg("load: %v", err)
	}
	if count, err = rowRange(rd.Records(), start, count); err != nil {
		return 0, err
	}
	if err := checkRunColumns(rd, cols); err != nil {
		return 0, err
	}
	targets := make([]string, len(cols))
	for i, c := range cols {
		targets[i] = c.As
	}
	oids, err := s.columnTypes(ctx, table, targets)
	if err != nil {
		return 0, err
	}
	src, err := newRowSource(rd, cols, func(i int, k abi.Kind) (convFunc, error) { return pgConverter(k, oids[i]) })
	if err != nil {
		return 0, err
	}
	if err := src.skip(start); err != nil {
		return 0, err
	}
	src.left = count
	if count == 0 {
		return 0, nil
	}
	if s.b.s.loadMethod == "insert" {
		return s.insertLoad(ctx, table, targets, src) // pginsert.go
	}
	n, err := s.q().CopyFrom(ctx, pgx.Identifier{s.p.schema, table}, targets, src)
	if src.convErr != nil {
		return n, src.convErr
	}
	return n, err
}

// columnTypes reads the target columns' type OIDs (in the run's transaction, if any, where
// a table it created is visible).
func (s *pgSession) columnTypes(ctx context.Context, table string, cols []string) ([]uint32, error) {
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgQuoteIdent(c)
	}
	rows, err := s.q().Query(ctx, "SELECT "+strings.Join(quoted, ", ")+" FROM "+pgQuoteIdent(s.p.schema)+"."+pgQuoteIdent(table)+" LIMIT 0")
	if err != nil {
		return nil, err
	}
	fds := rows.FieldDescriptions()
	oids := make([]uint32, len(fds))
	for i, f := range fds {
		oids[i] = f.DataTypeOID
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return oids, nil
}

var pgTypeNames = map[uint32]string{pgtype.TextOID: "text", pgtype.VarcharOID: "varchar", pgtype.BPCharOID: "char",
	pgtype.NameOID: "name", pgtype.JSONOID: "json", pgtype.JSONBOID: "jsonb", pgtype.Int2OID: "int2",
	pgtype.Int4OID: "int4", pgtype.Int8OID: "int8", pgtype.NumericOID: "numeric", pgtype.TimestamptzOID: "timestamptz",
	pgtype.TimestampOID: "timestamp", pgtype.DateOID: "date", pgtype.UUIDOID: "uuid", pgtype.Float8OID: "float8",
	pgtype.Float4OID: "float4", pgtype.BoolOID: "bool"}

func pgTypeName(oid uint32) string {
	if n, ok := pgTypeNames[oid]; ok {
		return n
	}
	return fmt.Sprintf("type oid %d", oid)
}

func isPGText(oid uint32) bool {
	return oid == pgtype.TextOID || oid == pgtype.VarcharOID || oid == pgtype.BPCharOID || oid == pgtype.NameOID
}

// pgConverter returns the conversion of one run column kind into a value pgx encodes in
// binary for the column's type; nil when the pair is not in the mapping.
func pgConverter(k abi.Kind, oid uint32) (convFunc, error) {
	text := isPGText(oid)
	switch k {
	case abi.KindString:
		switch {
		case text:
			return convBytes, nil
		case oid == pgtype.UUIDOID:
			return convUUIDText, nil
		case oid == pgtype.JSONOID || oid == pgtype.JSONBOID:
			return convBytes, nil
		}
	case abi.KindJSON:
		switch {
		case oid == pgtype.JSONOID || oid == pgtype.JSONBOID, text:
			return convBytes, nil
		}
	case abi.KindInt64:
		switch {
		case oid == pgtype.Int2OID || oid == pgtype.Int4OID || oid == pgtype.Int8OID || oid == pgtype.NumericOID:
			return convInt, nil
		case text:
			return convIntText, nil
		}
	case abi.KindTimestamp:
		switch {
		case oid == pgtype.TimestamptzOID || oid == pgtype.TimestampOID || oid == pgtype.DateOID:
			return convTime, nil
		case text:
			return convTimeText, nil
		}
	case abi.KindUUID:
		switch {
		case oid == pgtype.UUIDOID:
			return convUUID, nil
		case text:
			return convUUIDString, nil
		}
	case abi.KindFloat64:
		switch {
		case oid == pgtype.Float8OID || oid == pgtype.Float4OID || oid == pgtype.NumericOID:
			return convFloat, nil
		case text:
			return convFloatText, nil
		}
	case abi.KindBool:
		switch {
		case oid == pgtype.BoolOID:
			return convBool, nil
		case text:
			return convBoolText, nil
		}
	}
	return nil, fmt.Errorf("%s cannot be loaded into a %s column", k, pgTypeName(oid))
}

// rowSource feeds CopyFrom (pgx.CopyFromSource) from a batch.
type rowSource struct {
	rd      *abi.BatchReader
	vals    []abi.Value
	idx     []int // batch column of each target column
	conv    []convFunc
	names   []string
	out     []any
	nulls   []any // what a null becomes per target column (nil: NULL)
	left    int
	pos     int // rows of the batch consumed so far
	err     error
	convErr error
}

// checkRunColumns: every column the load names is a column of the run.
func checkRunColumns(rd *abi.BatchReader, cols []abi.ColumnSelect) error {
	_, err := newRowSource(rd, cols, func(int, abi.Kind) (convFunc, error) { return convString, nil })
	return err
}

func newRowSource(rd *abi.BatchReader, cols []abi.ColumnSelect, conv func(i int, k abi.Kind) (convFunc, error)) (*rowSource, error) {
	bcols := rd.Columns()
	src := &rowSource{rd: rd, vals: make([]abi.Value, len(bcols)), out: make([]any, len(cols))}
	for i, c := range cols {
		j := -1
		for k, bc := range bcols {
			if bc.Name == c.Name {
				j = k
				break
			}
		}
		if j < 0 {
			return nil, badArg("load: the run has no column %q", c.Name)
		}
		f, err := conv(i, bcols[j].Kind)
		if err != nil {
			return nil, badArg("load: column %q → %q: %v", c.Name, c.As, err)
		}
		src.idx = append(src.idx, j)
		src.conv = append(src.conv, f)
		src.names = append(src.names, c.Name)
	}
	return src, nil
}

func (r *rowSource) skip(n int) error {
	for range n {
		if err := r.rd.Next(r.vals); err != nil {
			return badArg("load: %v", err)
		}
		r.pos++
	}
	return nil
}

// Next decodes the next row (CopyFromSource).
func (r *rowSource) Next() bool {
	if r.err != nil {
		return false
	}
	if r.left == 0 {
		r.checkEnd()
		return false
	}
	if err := r.rd.Next(r.vals); err != nil {
		if err != io.EOF {
			r.err = err
		}
		return false
	}
	r.left--
	r.pos++
	for i, j := range r.idx {
		v := r.vals[j]
		if v.Null {
			r.out[i] = nil
			if r.nulls != nil {
				r.out[i] = r.nulls[i]
			}
			continue
		}
		out, err := r.conv[i](v)
		if err != nil {
			r.convErr = badArg("load: column %q: %v", r.names[i], err)
			r.err = r.convErr
			return false
		}
		r.out[i] = out
	}
	return true
}

// checkEnd, once a range that ends at the batch's last row is consumed, reads past it so
// that a malformed tail (trailing bytes) fails the load as the whole batch's decode would,
// instead of being loaded as if the batch were sound (SPEC 8: such a batch is rejected).
func (r *rowSource) checkEnd() {
	if r.pos != r.rd.Records() {
		return
	}
	r.pos++ // once
	if err := r.rd.Next(r.vals); err != io.EOF {
		if err == nil {
			err = errors.New("a row past the declared record count")
		}
		r.convErr = badArg("load: %v", err)
		r.err = r.convErr
	}
}

// Values is the current row (CopyFromSource).
func (r *rowSource) Values() ([]any, error) { return r.out, nil }

// Err is the decoding error, if any (CopyFromSource).
func (r *rowSource) Err() error { return r.err }

var _ pgx.CopyFromSource = (*rowSource)(nil)
