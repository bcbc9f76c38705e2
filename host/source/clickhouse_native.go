package source

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/source/chnative"
)

// The native reader. clickhouse-go decodes every block into fresh column buffers (grown by
// doubling) and Scan copies every string value once more: about 4 bytes allocated per byte
// of event data, garbage the GC must collect under the host's soft memory limit
// (docs/performance.md). streamNative reads the same query with package chnative and
// ch-go's column types instead: each block
// is decoded into the same column buffers (grown to the largest block, then reused) and
// the SLB1 rows are built straight from them, so reading allocates next to nothing per row.
// Its strings alias the column buffers and live only until the batcher has copied them
// into the batch (batcher.add), before the next block is decoded.

// nativeColumns is the number of columns buildQuery selects.
const nativeColumns = 12

// streamNative runs query on a connection of its own (one per Stream call) and hands the
// rows to b.
func (s *ClickHouse) streamNative(ctx context.Context, query string, b *batcher) error {
	conn, err := chnative.Dial(ctx, s.nativeOptions())
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("source: clickhouse: %w", err)
	}
	defer conn.Close()
	// Settings go in a SET on the session: below revision 54429 a query's settings are
	// binary, typed by the server's setting.
	set, err := s.setStatement()
	if err != nil {
		return err
	}
	if err := conn.Exec(ctx, set); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("source: clickhouse settings: %w", err)
	}
	results := make(proto.Results, nativeColumns)
	for i := range results {
		results[i].Data = &proto.ColAuto{}
	}
	var (
		r      nativeRows
		e      abi.Event
		addErr error // the batch function's error, returned as is
	)
	err = conn.Query(ctx, query, results, func(rows int) error {
		if err := r.bind(results); err != nil {
			return err
		}
		for i := range rows {
			if err := r.fill(i, &e); err != nil {
				return err
			}
			if err := b.add(&e); err != nil {
				addErr = err
				return err
			}
		}
		return ctx.Err()
	})
	if addErr != nil {
		return addErr
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("source: clickhouse query: %w", err)
	}
	return nil
}

// nativeOptions maps the parsed DSN to the native reader's options: addresses,
// credentials, TLS, compression and timeouts.
func (s *ClickHouse) nativeOptions() chnative.Options {
	o := s.opts
	co := chnative.Options{
		Addrs:       o.Addr,
		Database:    o.Auth.Database,
		User:        o.Auth.Username,
		Password:    o.Auth.Password,
		TLS:         o.TLS,
		DialTimeout: o.DialTimeout,
		ReadTimeout: o.ReadTimeout,
		ClientName:  "sluice",
	}
	if o.Compression != nil {
		switch o.Compression.Method {
		case clickhouse.CompressionLZ4, clickhouse.CompressionLZ4HC:
			co.Compress, co.Compression = true, compress.LZ4
		case clickhouse.CompressionZSTD:
			co.Compress, co.Compression = true, compress.ZSTD
		}
	}
	return co
}

// setStatement renders the DSN's settings and max_block_size as one SET statement.
func (s *ClickHouse) setStatement() (string, error) {
	settings := map[string]any{}
	for k, v := range s.opts.Settings {
		settings[k] = v
	}
	settings["max_block_size"] = s.cfg.MaxBlockSize
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		if k == "" || strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
			return "", fmt.Errorf("source: clickhouse: setting name %q is not an identifier", k)
		}
		parts[i] = k + " = " + settingLiteral(settings[k])
	}
	return "SET " + strings.Join(parts, ", "), nil
}

// settingLiteral renders a DSN setting's value (ParseDSN gives int or string).
func settingLiteral(v any) string {
	switch v := v.(type) {
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case bool:
		if v {
			return "1"
		}
		return "0"
	case clickhouse.CustomSetting:
		return chString(v.Value)
	default:
		return chString(fmt.Sprint(v))
	}
}

// rowOf is a decoded column's row accessor (ch-go's typed columns).
type rowOf[T any] interface{ Row(i int) T }

// nativeCol reads a column of T or Nullable(T) through its Row method.
type nativeCol[T any] struct {
	name string
	v    rowOf[T]
	nv   rowOf[proto.Nullable[T]]
}

func (c *nativeCol[T]) bind(name string, col proto.ColResult) error {
	c.name, c.v, c.nv = name, nil, nil
	switch x := col.(type) {
	case rowOf[T]:
		c.v = x
	case rowOf[proto.Nullable[T]]:
		c.nv = x
	default:
		return fmt.Errorf("source: clickhouse: column %s has type %s, which the native reader does not read as %T", name, col.Type(), *new(T))
	}
	return nil
}

// at returns row i; ok is false for a null.
func (c *nativeCol[T]) at(i int) (v T, ok bool) {
	if c.v != nil {
		return c.v.Row(i), true
	}
	n := c.nv.Row(i)
	return n.Value, n.Set
}

// must returns row i of a column that may not hold nulls.
func (c *nativeCol[T]) must(i int) (T, error) {
	v, ok := c.at(i)
	if !ok {
		return v, fmt.Errorf("source: clickhouse: column %s is null in row %d of a block", c.name, i)
	}
	return v, nil
}

// strCol reads a String or Nullable(String) column without copying its values (the
// strings alias the column's buffer); other string columns (LowCardinality(String)) go
// through their Row method, which returns strings ch-go already made.
type strCol struct {
	name  string
	str   *proto.ColStr
	nulls []uint8 // Nullable(String): 1 marks a null
	other nativeCol[string]
}

func (c *strCol) bind(name string, col proto.ColResult) error {
	c.name, c.str, c.nulls = name, nil, nil
	switch x := col.(type) {
	case *proto.ColStr:
		c.str = x
		return nil
	case *proto.ColNullable[string]:
		if str, ok := x.Values.(*proto.ColStr); ok {
			c.str, c.nulls = str, x.Nulls
			return nil
		}
	}
	return c.other.bind(name, col)
}

func (c *strCol) at(i int) (string, bool) {
	if c.str == nil {
		return c.other.at(i)
	}
	if c.nulls != nil && c.nulls[i] == 1 {
		return "", false
	}
	b := c.str.RowBytes(i)
	return unsafe.String(unsafe.SliceData(b), len(b)), true
}

func (c *strCol) must(i int) (string, error) {
	v, ok := c.at(i)
	if !ok {
		return v, fmt.Errorf("source: clickhouse: column %s is null in row %d of a block", c.name, i)
	}
	return v, nil
}

// nativeRows reads buildQuery's columns, in its order, from a decoded block.
type nativeRows struct {
	uuid                                       nativeCol[uuid.UUID]
	event, distinctID, properties, personProps strCol
	elementsChain                              strCol
	personID                                   nativeCol[uuid.UUID]
	teamID                                     nativeCol[int64]
	timestamp, createdAt, insertedAt           nativeCol[time.Time]
	personIDBuf                                [16]byte
	personPropsBuf                             string
	createdAtBuf                               time.Time
}

func (r *nativeRows) bind(res proto.Results) error {
	col := func(i int) (string, proto.ColResult) {
		c := res[i]
		if a, ok := c.Data.(*proto.ColAuto); ok {
			return c.Name, a.Data
		}
		return c.Name, c.Data
	}
	for _, err := range []error{
		r.uuid.bind(col(0)),
		r.event.bind(col(1)),
		r.distinctID.bind(col(2)),
		r.personID.bind(col(3)),
		r.teamID.bind(col(4)),
		r.properties.bind(col(5)),
		r.personProps.bind(col(6)),
		r.elementsChain.bind(col(7)),
		r.timestamp.bind(col(8)),
		r.createdAt.bind(col(9)),
		r.insertedAt.bind(col(10)),
		// column 11, toString(uuid), is there for the ORDER BY only
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// fill fills e from row i. e's strings alias the block's buffers.
func (r *nativeRows) fill(i int, e *abi.Event) error {
	var err error
	id, err := r.uuid.must(i)
	if err != nil {
		return err
	}
	e.UUID = id
	if e.Event, err = r.event.must(i); err != nil {
		return err
	}
	if e.DistinctID, err = r.distinctID.must(i); err != nil {
		return err
	}
	e.PersonID = nil
	if pid, ok := r.personID.at(i); ok {
		r.personIDBuf = pid
		e.PersonID = &r.personIDBuf
	}
	if e.TeamID, err = r.teamID.must(i); err != nil {
		return err
	}
	if e.Properties, err = r.properties.must(i); err != nil {
		return err
	}
	e.PersonProperties = nil
	if pp, ok := r.personProps.at(i); ok {
		r.personPropsBuf = pp
		e.PersonProperties = &r.personPropsBuf
	}
	if e.ElementsChain, err = r.elementsChain.must(i); err != nil {
		return err
	}
	ts, err := r.timestamp.must(i)
	if err != nil {
		return err
	}
	e.Timestamp = ts.UTC()
	e.CreatedAt = nil
	if c, ok := r.createdAt.at(i); ok {
		r.createdAtBuf = c.UTC()
		e.CreatedAt = &r.createdAtBuf
	}
	ins, err := r.insertedAt.must(i)
	if err != nil {
		return err
	}
	e.InsertedAt = ins.UTC()
	return nil
}
