package sqlcap

import (
	"context"
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"reflect"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
)

// chBackend is one binding's clickhouse-go connection pool (native protocol, or HTTP with
// sql.protocol http).
type chBackend struct {
	conn     driver.Conn
	database string
}

func newCHBackend(cfg Config, s settings) (backend, error) {
	d := cfg.dialer()
	var tcfg *tls.Config
	switch s.tls {
	case "require":
		tcfg = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the admin asked for an unverified (self-signed) certificate
	case "verify-full":
		tcfg = &tls.Config{ServerName: s.host}
	}
	protocol := ch.Native
	if s.protocol == "http" {
		protocol = ch.HTTP // the HTTP interface (port 8123): servers and fronts without the native one
	}
	conn, err := ch.Open(&ch.Options{
		Protocol: protocol,
		Addr:     []string{s.addr()},
		Auth:     ch.Auth{Database: s.database, Username: s.user, Password: s.password},
		// A dialler of our own (the address check): clickhouse-go then leaves TLS to it.
		DialContext: func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil || tcfg == nil {
				return c, err
			}
			tc := tls.Client(c, tcfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			return tc, nil
		},
		DialTimeout:     DefaultDialTimeout,
		MaxOpenConns:    cfg.MaxConnsPerBinding,
		MaxIdleConns:    cfg.MaxConnsPerBinding,
		ConnMaxLifetime: cfg.IdleTimeout,
		ClientInfo:      ch.ClientInfo{Products: []struct{ Name, Version string }{{Name: "sluice", Version: "1"}}},
	})
	if err != nil {
		return nil, err
	}
	return &chBackend{conn: conn, database: s.database}, nil
}

func (c *chBackend) close() { _ = c.conn.Close() }

func (c *chBackend) session(b *Binding) session { return &chSession{c: c} }

type chSession struct{ c *chBackend }

func (s *chSession) inTx() bool                     { return false }
func (s *chSession) begin(context.Context) error    { return nil }
func (s *chSession) commit(context.Context) error   { return nil }
func (s *chSession) rollback(context.Context) error { return nil }
func chQuoteIdent(name string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(name) + "`"
}
func (s *chSession) table(t string) string { return chQuoteIdent(s.c.database) + "." + chQuoteIdent(t) }
func (s *chSession) exec(ctx context.Context, sql string, args []any) (int64, error) {
	return 0, s.c.conn.Exec(ctx, sql, args...)
}

func (s *chSession) query(ctx context.Context, sql string, args []any, maxRows int) (abi.SQLQueryResult, error) {
	res := abi.SQLQueryResult{Columns: []string{}, Rows: [][]any{}}
	rows, err := s.c.conn.Query(ctx, sql, args...)
	if err != nil {
		return res, err
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	for _, t := range types {
		res.Columns = append(res.Columns, t.Name())
	}
	size := 0
	for rows.Next() {
		if len(res.Rows) >= maxRows {
			res.Truncated = true
			break
		}
		dest := make([]any, len(types))
		for i, t := range types {
			dest[i] = reflect.New(t.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return res, err
		}
		row := make([]any, len(dest))
		for i, d := range dest {
			row[i] = jsonValue(deref(reflect.ValueOf(d)))
			size += approxSize(row[i])
		}
		if size > MaxQueryBytes {
			res.Truncated = true
			break
		}
		res.Rows = append(res.Rows, row)
	}
	rows.Close()
	return res, rows.Err()
}

// deref follows pointers (a Nullable column scans into **T).
func deref(v reflect.Value) any {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		return nil
	}
	switch x := v.Interface().(type) {
	case uuid.UUID:
		return x.String()
	case int8:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case int:
		return int64(x)
	case uint64:
		if x > math.MaxInt64 {
			return fmt.Sprint(x)
		}
		return int64(x)
	}
	return v.Interface()
}

func approxSize(v any) int {
	switch x := v.(type) {
	case string:
		return len(x) + 2
	case nil:
		return 4
	}
	return 16
}

// load inserts batch rows as one native block, converting each run column for its target
// column's type (SPEC 6.2 mapping).
func (s *chSession) load(ctx context.Context, table string, cols []abi.ColumnSelect, batch []byte, start, count int) (int64, error) {
	rd, err := abi.NewBatchReader(batch)
	if err != nil {
		return 0, badArg("load: %v", err)
	}
	if count, err = rowRange(rd.Records(), start, count); err != nil {
		return 0, err
	}
	if count == 0 {
		return 0, nil
	}
	targets := make([]string, len(cols))
	for i, c := range cols {
		targets[i] = chQuoteIdent(c.As)
	}
	b, err := s.c.conn.PrepareBatch(ctx, "INSERT INTO "+s.table(table)+" ("+strings.Join(targets, ", ")+")")
	if err != nil {
		return 0, err
	}
	defer func() {
		if !b.IsSent() {
			_ = b.Abort()
		}
	}()
	bcols := b.Columns()
	if len(bcols) != len(cols) {
		return 0, badArg("load: the insert has %d columns, the request %d", len(bcols), len(cols))
	}
	nulls := make([]any, len(cols))
	src, err := newRowSource(rd, cols, func(i int, k abi.Kind) (convFunc, error) {
		typ := string(bcols[i].Type())
		f, zero, err := chConverter(k, typ)
		nulls[i] = zero
		return f, err
	})
	if err != nil {
		return 0, err
	}
	src.nulls = nulls
	if err := src.skip(start); err != nil {
		return 0, err
	}
	src.left = count
	var n int64
	for src.Next() {
		if err := b.Append(src.out...); err != nil {
			return n, err
		}
		n++
	}
	if src.err != nil {
		if src.convErr != nil {
			return 0, src.convErr
		}
		return 0, badArg("load: %v", src.err)
	}
	if err := b.Send(); err != nil {
		return 0, err
	}
	return n, nil
}

// chConverter returns the conversion of a run column kind for a clickhouse column type, and
// the value a null becomes (nil for a Nullable column, else the type's zero value).
func chConverter(k abi.Kind, typ string) (convFunc, any, error) {
	base, nullable := chBase(typ)
	var f convFunc
	var zero any
	text := base == "String" || strings.HasPrefix(base, "FixedString(")
	switch {
	case text:
		zero = ""
		switch k {
		case abi.KindString, abi.KindJSON:
			f = convString
		case abi.KindUUID:
			f = convUUIDString
		case abi.KindInt64:
			f = convIntText
		case abi.KindTimestamp:
			f = convTimeText
		case abi.KindFloat64:
			f = convFloatText
		case abi.KindBool:
			f = convBoolText
		}
	case base == "UUID":
		zero = uuid.Nil
		switch k {
		case abi.KindUUID:
			f = func(v abi.Value) (any, error) { return uuid.UUID(v.Bytes), nil }
		case abi.KindString:
			f = func(v abi.Value) (any, error) {
				u, err := parseUUID(string(v.Bytes))
				return uuid.UUID(u), err
			}
		}
	case strings.HasPrefix(base, "DateTime") || base == "Date" || base == "Date32":
		zero = time.Unix(0, 0).UTC()
		if k == abi.KindTimestamp {
			f = convTime
		}
	case base == "Float64" || base == "Float32":
		zero = 0.0
		if k == abi.KindFloat64 {
			f = convFloat
			if base == "Float32" {
				zero = float32(0)
				f = func(v abi.Value) (any, error) { return float32(v.Float), nil }
			}
		}
	case base == "Bool":
		zero = false
		if k == abi.KindBool {
			f = convBool
		}
	default:
		if lo, hi, mk, ok := chIntRange(base); ok {
			zero = mk(0)
			if k == abi.KindInt64 || k == abi.KindBool {
				f = func(v abi.Value) (any, error) {
					if v.Int < lo || (hi >= 0 && v.Int > hi) {
						return nil, fmt.Errorf("%d is out of range for %s", v.Int, base)
					}
					return mk(v.Int), nil
				}
			}
		}
	}
	if nullable {
		zero = nil
	}
	if f == nil {
		return nil, nil, fmt.Errorf("%s cannot be loaded into a %s column", k, typ)
	}
	return f, zero, nil
}

// chBase strips LowCardinality(...) and Nullable(...).
func chBase(typ string) (string, bool) {
	nullable := false
	for {
		switch {
		case strings.HasPrefix(typ, "LowCardinality(") && strings.HasSuffix(typ, ")"):
			typ = typ[len("LowCardinality(") : len(typ)-1]
		case strings.HasPrefix(typ, "Nullable(") && strings.HasSuffix(typ, ")"):
			typ, nullable = typ[len("Nullable("):len(typ)-1], true
		default:
			return typ, nullable
		}
	}
}

// chIntRange gives an integer type's range (hi -1: no upper bound below int64's) and the Go
// value clickhouse-go takes for it.
func chIntRange(base string) (lo, hi int64, mk func(int64) any, ok bool) {
	switch base {
	case "Int8":
		return math.MinInt8, math.MaxInt8, func(n int64) any { return int8(n) }, true
	case "Int16":
		return math.MinInt16, math.MaxInt16, func(n int64) any { return int16(n) }, true
	case "Int32":
		return math.MinInt32, math.MaxInt32, func(n int64) any { return int32(n) }, true
	case "Int64":
		return math.MinInt64, math.MaxInt64, func(n int64) any { return n }, true
	case "UInt8":
		return 0, math.MaxUint8, func(n int64) any { return uint8(n) }, true
	case "UInt16":
		return 0, math.MaxUint16, func(n int64) any { return uint16(n) }, true
	case "UInt32":
		return 0, math.MaxUint32, func(n int64) any { return uint32(n) }, true
	case "UInt64":
		return 0, -1, func(n int64) any { return uint64(n) }, true
	}
	return 0, 0, nil, false
}
