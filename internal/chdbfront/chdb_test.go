package chdbfront

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"
)

// These tests run clickhouse-go against a running front over chDB (.ci/services/chdb.sh).
func chdbConn(t *testing.T, opts ...func(*clickhouse.Options)) clickhouse.Conn {
	t.Helper()
	dsn := os.Getenv("SLUICE_TEST_CHDB_DSN")
	if dsn == "" {
		t.Skip("SLUICE_TEST_CHDB_DSN not set (run .ci/services/chdb.sh)")
	}
	o, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range opts {
		f(o)
	}
	conn, err := clickhouse.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestChDBTypesRoundTrip(t *testing.T) {
	conn := chdbConn(t)
	ctx := context.Background()
	var (
		ts     time.Time
		nts    *time.Time
		lc     string
		lcn    *string
		m      map[string]string
		arr    []int64
		u      uuid.UUID
		b      bool
		i128   string
		fixed  string
		dec    string
		enum   string
		nested []map[string]uint8
	)
	err := conn.QueryRow(ctx, `SELECT
		toDateTime64('2024-03-10 12:00:00.123456', 6, 'UTC'),
		CAST(NULL AS Nullable(DateTime64(6, 'UTC'))),
		CAST('$pageview' AS LowCardinality(String)),
		CAST(NULL AS LowCardinality(Nullable(String))),
		map('k', 'v', 'é', '🙂'),
		[1, -2, 3]::Array(Int64),
		toUUID('01890a5d-ac96-774b-bcce-b302099a8057'),
		true,
		toString(toInt128('170141183460469231731687303715884105727')),
		toFixedString('ab', 2),
		toString(toDecimal64(3.25, 4)),
		toString(CAST('b' AS Enum8('a' = 1, 'b' = 2))),
		[map('x', 1::UInt8)]`).Scan(&ts, &nts, &lc, &lcn, &m, &arr, &u, &b, &i128, &fixed, &dec, &enum, &nested)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2024, 3, 10, 12, 0, 0, 123456000, time.UTC)
	if !ts.Equal(want) || nts != nil || lc != "$pageview" || lcn != nil || m["é"] != "🙂" || fmt.Sprint(arr) != "[1 -2 3]" ||
		u.String() != "01890a5d-ac96-774b-bcce-b302099a8057" || !b || fixed != "ab" || dec != "3.25" || enum != "b" || nested[0]["x"] != 1 {
		t.Errorf("got %v %v %q %v %v %v %v %v %s %q %s %s %v", ts, nts, lc, lcn, m, arr, u, b, i128, fixed, dec, enum, nested)
	}
}

func TestChDBServerSideParametersAndSettings(t *testing.T) {
	conn := chdbConn(t)
	ctx := clickhouse.Context(context.Background(),
		clickhouse.WithParameters(clickhouse.Parameters{"s": "it's", "t": "2024-03-10 12:00:00.000001"}),
		clickhouse.WithSettings(clickhouse.Settings{"max_block_size": 1234}))
	var (
		s  string
		ts time.Time
		mb string
	)
	if err := conn.QueryRow(ctx, "SELECT {s:String}, {t:DateTime64(6, 'UTC')}, toString(getSetting('max_block_size'))").Scan(&s, &ts, &mb); err != nil {
		t.Fatal(err)
	}
	if s != "it's" || ts.Nanosecond() != 1000 || mb != "1234" {
		t.Errorf("got %q %s %s", s, ts, mb)
	}
	// the setting does not outlive its query
	if err := conn.QueryRow(context.Background(), "SELECT toString(getSetting('max_block_size'))").Scan(&mb); err != nil {
		t.Fatal(err)
	}
	if mb == "1234" {
		t.Error("max_block_size leaked into the next query")
	}
}

func TestChDBErrors(t *testing.T) {
	conn := chdbConn(t)
	ctx := context.Background()
	var ex *clickhouse.Exception
	_, err := conn.Query(ctx, "SELECT * FROM sluice_no_such_table")
	if !errors.As(err, &ex) || ex.Code != 60 {
		t.Errorf("unknown table: %v", err)
	}
	err = conn.Exec(ctx, "SELEC 1")
	if !errors.As(err, &ex) || ex.Code != 62 {
		t.Errorf("syntax error: %v", err)
	}
	// a failure after the first blocks were sent
	qctx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_block_size": 1000}))
	rows, err := conn.Query(qctx, "SELECT throwIf(number = 500000, 'boom') FROM numbers(1000000)")
	n := 0
	if err == nil {
		for rows.Next() {
			n++
		}
		err = rows.Err()
		rows.Close()
	}
	if !errors.As(err, &ex) || ex.Code != 395 {
		t.Errorf("mid-stream failure after %d rows: %v", n, err)
	}
	// the session still works
	var one uint8
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("after errors: %v", err)
	}
}

// Cancelling a query mid-stream frees the session for the next one.
func TestChDBCancelFreesSession(t *testing.T) {
	conn := chdbConn(t)
	ctx, cancel := context.WithCancel(context.Background())
	rows, err := conn.Query(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_block_size": 10000})),
		"SELECT number, repeat('x', 100) FROM numbers(100000000)")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5 && rows.Next(); i++ {
	}
	cancel()
	rows.Close()
	start := time.Now()
	qctx, qcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer qcancel()
	var n uint64
	if err := conn.QueryRow(qctx, "SELECT count() FROM numbers(10)").Scan(&n); err != nil || n != 10 {
		t.Fatalf("after cancel: %v %d", err, n)
	}
	t.Logf("next query answered %s after the cancel", time.Since(start).Round(time.Millisecond))
}

func TestChDBBatchInsertGzip(t *testing.T) {
	conn := chdbConn(t, func(o *clickhouse.Options) {
		o.Compression = &clickhouse.Compression{Method: clickhouse.CompressionGZIP}
	})
	ctx := context.Background()
	table := fmt.Sprintf("chdbfront_test_%d", time.Now().UnixNano())
	if err := conn.Exec(ctx, "CREATE TABLE "+table+` (id UInt32, ev LowCardinality(String), at Nullable(DateTime64(6, 'UTC')))
		ENGINE = MergeTree ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "DROP TABLE "+table)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" (id, ev, at)")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 3, 10, 12, 0, 0, 999999000, time.UTC)
	const rowsN = 20000
	for i := 0; i < rowsN; i++ {
		var p *time.Time
		if i%2 == 0 {
			p = &at
		}
		if err := b.Append(uint32(i), fmt.Sprint("e", i%7), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	var n, nulls, evs uint64
	var maxAt time.Time
	if err := conn.QueryRow(ctx, "SELECT count(), countIf(at IS NULL), uniqExact(ev), max(assumeNotNull(at)) FROM "+table).Scan(&n, &nulls, &evs, &maxAt); err != nil {
		t.Fatal(err)
	}
	if n != rowsN || nulls != rowsN/2 || evs != 7 || !maxAt.Equal(at) {
		t.Errorf("count %d nulls %d events %d max %s", n, nulls, evs, maxAt)
	}
}
