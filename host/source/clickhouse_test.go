package source_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/host/source/chnative"
	"github.com/sluicehq/sluice/host/source/sourcetest"
)

// PostHog's events table, in the types ClickHouse 18.16 has (DateTime instead of
// DateTime64(6)), with its engine and sort key.
const chEventsDDL = `CREATE TABLE %s (
	uuid UUID,
	event String,
	properties String,
	timestamp DateTime('UTC'),
	team_id Int64,
	distinct_id String,
	elements_chain String,
	created_at DateTime('UTC'),
	person_id UUID,
	person_properties String,
	inserted_at Nullable(DateTime('UTC')),
	_timestamp DateTime,
	_offset UInt64
) ENGINE = ReplacingMergeTree(_timestamp)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(toString(uuid)))` // 18.16: no cityHash64(UUID)

var chTableSeq atomic.Int64

func chDSN(t testing.TB) string {
	dsn := os.Getenv("SLUICE_TEST_CLICKHOUSE_DSN")
	if dsn == "" {
		t.Skip("SLUICE_TEST_CLICKHOUSE_DSN not set (run .ci/services/clickhouse.sh)")
	}
	return dsn
}

func chConn(t testing.TB, dsn string) driver.Conn {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// newCHTable creates a fresh events table and drops it when the test ends.
func newCHTable(t testing.TB, conn driver.Conn) string {
	name := fmt.Sprintf("sluice_test_%d_%d", time.Now().UnixNano(), chTableSeq.Add(1))
	if err := conn.Exec(context.Background(), fmt.Sprintf(chEventsDDL, name)); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("SLUICE_TEST_KEEP_TABLES") == "" {
			conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+name)
		}
	})
	return name
}

type chSeeder struct {
	conn  driver.Conn
	table string
}

func (s chSeeder) Seed(ctx context.Context, rows ...sourcetest.Row) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table+` (uuid, event, properties, timestamp, team_id,
		distinct_id, elements_chain, created_at, person_id, person_properties, inserted_at, _timestamp, _offset)`)
	if err != nil {
		return err
	}
	for i, r := range rows {
		e := r.Event
		var ins *time.Time
		if !r.NullInsertedAt {
			t := e.InsertedAt
			ins = &t
		}
		var pid uuid.UUID
		if e.PersonID != nil {
			pid = *e.PersonID
		}
		pp, created := "", time.Unix(0, 0)
		if e.PersonProperties != nil {
			pp = *e.PersonProperties
		}
		if e.CreatedAt != nil {
			created = *e.CreatedAt
		}
		if err := b.Append(uuid.UUID(e.UUID), e.Event, e.Properties, e.Timestamp, e.TeamID, e.DistinctID,
			e.ElementsChain, created, pid, pp, ins, e.InsertedAt, uint64(i)); err != nil {
			return err
		}
	}
	return b.Send()
}

func (chSeeder) SupportsNullInsertedAt() bool { return true }

func newCH(t *testing.T) (source.Source, sourcetest.Seeder) {
	dsn := chDSN(t)
	conn := chConn(t, dsn)
	t.Cleanup(func() { conn.Close() })
	table := newCHTable(t, conn)
	src, err := source.NewClickHouse(context.Background(), source.ClickHouseConfig{DSN: dsn, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src, chSeeder{conn: conn, table: table}
}

func TestClickHouseContract(t *testing.T) {
	sourcetest.Run(t, newCH)
}

func TestClickHouseConfigErrors(t *testing.T) {
	dsn := chDSN(t)
	ctx := context.Background()
	if _, err := source.NewClickHouse(ctx, source.ClickHouseConfig{DSN: dsn, Table: "no_such_table_sluice"}); err == nil {
		t.Error("missing table accepted")
	}
	conn := chConn(t, dsn)
	defer conn.Close()
	table := newCHTable(t, conn)
	_, err := source.NewClickHouse(ctx, source.ClickHouseConfig{DSN: dsn, Table: table,
		Columns: source.ClickHouseColumns{InsertedAt: "ingested"}})
	if err == nil {
		t.Error("missing column accepted")
	} else {
		t.Log(err)
	}
}

// batchBytes streams q and returns every batch's bytes, in order.
func batchBytes(t *testing.T, src source.Source, q source.Query, opts source.BatchOptions) [][]byte {
	t.Helper()
	var out [][]byte
	err := src.Stream(context.Background(), q, opts, func(b []byte, _ int, _ source.Position) error {
		out = append(out, append([]byte(nil), b...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// seedVaried creates a table of n events: nulls, empty and multi-byte strings, a null
// inserted_at (the fallback column) every 11th row.
func seedVaried(t *testing.T, n int) (dsn, table string) {
	dsn = chDSN(t)
	conn := chConn(t, dsn)
	t.Cleanup(func() { conn.Close() })
	table = newCHTable(t, conn)
	var rows []sourcetest.Row
	for i := range n {
		ins := sourcetest.Base.Add(time.Duration(i%300) * time.Second)
		e := sourcetest.NewEvent([]string{"$pageview", "", "ünïcødé ✓", "click"}[i%4], fmt.Sprintf("user-%d", i%37),
			int64(1+i%3), ins.Add(-time.Minute), ins, fmt.Sprintf(`{"n":%d,"s":"%s"}`, i, strings.Repeat("x", i%200)))
		e.ElementsChain = strings.Repeat("a:b;", i%5)
		if i%7 == 0 {
			e.PersonID, e.PersonProperties, e.CreatedAt = nil, nil, nil
		}
		rows = append(rows, sourcetest.Row{Event: e, NullInsertedAt: i%11 == 0})
	}
	if err := (chSeeder{conn: conn, table: table}).Seed(context.Background(), rows...); err != nil {
		t.Fatal(err)
	}
	return dsn, table
}

// withParam adds a query parameter to a DSN.
func withParam(dsn, kv string) string {
	if strings.Contains(dsn, "?") {
		return dsn + "&" + kv
	}
	return dsn + "?" + kv
}

// TestClickHouseReadersSameBatches: the native reader (reused column buffers, strings
// aliasing them) and clickhouse-go's rows produce byte-identical SLB1 batches, over blocks
// of 7 rows (many block boundaries inside a batch), and over a compressed connection.
func TestClickHouseReadersSameBatches(t *testing.T) {
	dsn, table := seedVaried(t, 500)
	q := source.Query{Start: sourcetest.Base, End: sourcetest.Base.Add(time.Hour)}
	opts := source.BatchOptions{MaxRecords: 64}
	read := func(dsn string, viaRows bool) [][]byte {
		src, err := source.NewClickHouse(context.Background(), source.ClickHouseConfig{DSN: dsn, Table: table, MaxBlockSize: 7})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if viaRows {
			source.ReadViaRows(src)
		}
		return batchBytes(t, src, q, opts)
	}
	want := read(dsn, true)
	if len(want) != 8 { // 500 rows in batches of 64
		t.Fatalf("%d batches from clickhouse-go's rows, want 8", len(want))
	}
	for name, d := range map[string]string{"native": dsn, "native lz4": withParam(dsn, "compress=lz4")} {
		got := read(d, false)
		if len(got) != len(want) {
			t.Fatalf("%s: %d batches, want %d", name, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("%s: batch %d differs from clickhouse-go's (%d vs %d bytes)", name, i, len(got[i]), len(want[i]))
			}
		}
	}
}

// TestClickHouseNativeSettings: the DSN's settings reach the server on the native reader
// (a SET on its session): max_result_bytes=20000 makes a 500-row stream (about 80 kB)
// fail, with the server's error wrapped.
func TestClickHouseNativeSettings(t *testing.T) {
	dsn, table := seedVaried(t, 500)
	src, err := source.NewClickHouse(context.Background(), source.ClickHouseConfig{DSN: withParam(dsn, "max_result_bytes=20000"), Table: table})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	err = src.Stream(context.Background(), source.Query{Start: sourcetest.Base, End: sourcetest.Base.Add(time.Hour)},
		source.BatchOptions{}, func([]byte, int, source.Position) error { return nil })
	var ex *chnative.Exception
	if !errors.As(err, &ex) || ex.Code != 396 {
		t.Fatalf("err %v, want the server's TOO_MANY_ROWS_OR_BYTES (396), wrapped", err)
	}
	t.Log(err)
}
