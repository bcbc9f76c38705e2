package source_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/host/source"
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
