package source_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/host/source/sourcetest"
)

// PostHog's events table with its real types (DateTime64(6, 'UTC'), Nullable inserted_at
// defaulting to now64(), a LowCardinality event as in the brief, a materialized property
// column, ZSTD codecs, ReplacingMergeTree on _timestamp, PostHog's sort and sample keys), for
// a current engine: chDB behind internal/chdbfront, reached over HTTP.
const chdbEventsDDL = `CREATE TABLE %s (
	uuid UUID,
	event LowCardinality(String),
	properties String CODEC(ZSTD(3)),
	timestamp DateTime64(6, 'UTC'),
	team_id Int64,
	distinct_id String,
	elements_chain String,
	created_at DateTime64(6, 'UTC'),
	person_id UUID,
	person_properties String CODEC(ZSTD(3)),
	inserted_at Nullable(DateTime64(6, 'UTC')) DEFAULT now64(),
	_timestamp DateTime,
	_offset UInt64,
	mat_current_url String MATERIALIZED replaceRegexpAll(JSONExtractRaw(properties, '$current_url'), '^"|"$', '')
) ENGINE = ReplacingMergeTree(_timestamp)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(uuid))
SAMPLE BY cityHash64(distinct_id)`

func chdbDSN(t testing.TB) string {
	dsn := os.Getenv("SLUICE_TEST_CHDB_DSN")
	if dsn == "" {
		t.Skip("SLUICE_TEST_CHDB_DSN not set (run .ci/services/chdb.sh)")
	}
	return dsn
}

// newCHDBTable creates a fresh PostHog-typed events table and drops it when the test ends.
func newCHDBTable(t testing.TB, conn driver.Conn) string {
	name := fmt.Sprintf("sluice_chdb_test_%d_%d", time.Now().UnixNano(), chTableSeq.Add(1))
	if err := conn.Exec(context.Background(), fmt.Sprintf(chdbEventsDDL, name)); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("SLUICE_TEST_KEEP_TABLES") == "" {
			conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+name)
		}
	})
	return name
}

func newCHDB(t *testing.T) (source.Source, sourcetest.Seeder) {
	src, seeder, _ := newCHDBSource(t)
	return src, seeder
}

func newCHDBSource(t *testing.T) (*source.ClickHouse, chSeeder, string) {
	dsn := chdbDSN(t)
	conn := chConn(t, dsn)
	t.Cleanup(func() { conn.Close() })
	table := newCHDBTable(t, conn)
	src, err := source.NewClickHouse(context.Background(), source.ClickHouseConfig{DSN: dsn, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src, chSeeder{conn: conn, table: table}, table
}

// TestChDBContract runs the shared contract against a current ClickHouse engine over HTTP.
func TestChDBContract(t *testing.T) {
	dsn := chdbDSN(t)
	conn := chConn(t, dsn)
	defer conn.Close()
	v, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Version.Major < 24 {
		t.Fatalf("SLUICE_TEST_CHDB_DSN reaches ClickHouse %s; want a current engine", v.Version)
	}
	if opts, _ := clickhouse.ParseDSN(dsn); opts.Protocol != clickhouse.HTTP {
		t.Fatalf("SLUICE_TEST_CHDB_DSN %s is not an HTTP DSN", dsn)
	}
	t.Logf("engine %s %s over HTTP", v.DisplayName, v.Version)
	sourcetest.Run(t, newCHDB)
}

// The table really has PostHog's types (the contract would pass on DateTime too).
func TestChDBTableTypes(t *testing.T) {
	src, _, table := newCHDBSource(t)
	rows, err := src.Conn().Query(context.Background(),
		`SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var n, typ string
		if err := rows.Scan(&n, &typ); err != nil {
			t.Fatal(err)
		}
		got[n] = typ
	}
	for col, want := range map[string]string{
		"timestamp":   "DateTime64(6, 'UTC')",
		"created_at":  "DateTime64(6, 'UTC')",
		"inserted_at": "Nullable(DateTime64(6, 'UTC'))",
		"event":       "LowCardinality(String)",
		"_timestamp":  "DateTime",
	} {
		if got[col] != want {
			t.Errorf("column %s is %q, want %q", col, got[col], want)
		}
	}
}

// DateTime64(6) keeps microseconds: interval edges, timestamps and the stream order are exact
// to the microsecond (18.16 only has whole seconds, so the shared suite stays on seconds).
func TestChDBMicrosecondEdges(t *testing.T) {
	src, seeder, _ := newCHDBSource(t)
	ctx := context.Background()
	start := sourcetest.Base.Add(123456 * time.Microsecond)
	end := start.Add(10 * time.Second)
	ev := func(name string, ts, ins time.Time) abi.Event {
		return sourcetest.NewEvent(name, "u", 1, ts, ins, `{"$current_url":"https://x.test/`+name+`"}`)
	}
	atStart := ev("at_start", start.Add(7*time.Microsecond), start)
	before := ev("one_micro_before", start, start.Add(-time.Microsecond))
	lastMicro := ev("last_micro", start.Add(999999*time.Microsecond), end.Add(-time.Microsecond))
	atEnd := ev("at_end", start, end)
	sameMicroA := ev("same_micro_a", start.Add(-time.Microsecond), start.Add(5*time.Second+time.Microsecond))
	sameMicroB := ev("same_micro_b", start.Add(-2*time.Microsecond), start.Add(5*time.Second+time.Microsecond))
	var rows []sourcetest.Row
	for _, e := range []abi.Event{atStart, before, lastMicro, atEnd, sameMicroA, sameMicroB} {
		rows = append(rows, sourcetest.Row{Event: e})
	}
	if err := seeder.Seed(ctx, rows...); err != nil {
		t.Fatal(err)
	}
	q := source.Query{Start: start, End: end}
	res, err := sourcetest.Collect(t, src, q, source.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := func(evs []abi.Event) string {
		var n []string
		for _, e := range evs {
			n = append(n, e.Event)
		}
		return strings.Join(n, ",")
	}
	// same_micro_a/b share an inserted_at: their uuids order them.
	a, b := sameMicroA, sameMicroB
	if (source.Position{InsertedAt: b.InsertedAt, UUID: b.UUID}).Less(source.Position{InsertedAt: a.InsertedAt, UUID: a.UUID}) {
		a, b = b, a
	}
	want := []abi.Event{atStart, a, b, lastMicro}
	if names(res.Events) != names(want) {
		t.Fatalf("got [%s], want [%s]", names(res.Events), names(want))
	}
	for i, g := range res.Events {
		w := want[i]
		if !g.Timestamp.Equal(w.Timestamp) || !g.InsertedAt.Equal(w.InsertedAt) || g.CreatedAt == nil || !g.CreatedAt.Equal(*w.CreatedAt) {
			t.Errorf("%s: times %s/%s/%v, want %s/%s/%s", w.Event, g.Timestamp, g.InsertedAt, g.CreatedAt, w.Timestamp, w.InsertedAt, w.CreatedAt)
		}
	}
	// The neighbours take the edge rows.
	q.Start, q.End = start.Add(-time.Second), start
	if res, err = sourcetest.Collect(t, src, q, source.BatchOptions{}); err != nil || names(res.Events) != "one_micro_before" {
		t.Errorf("previous interval: %v [%s]", err, names(res.Events))
	}
	q.Start, q.End = end, end.Add(time.Microsecond)
	if res, err = sourcetest.Collect(t, src, q, source.BatchOptions{}); err != nil || names(res.Events) != "at_end" {
		t.Errorf("next interval: %v [%s]", err, names(res.Events))
	}
	// The event-timestamp guard compares DateTime64 to the microsecond: with a 1 µs lookback
	// an event stamped start-1µs is in, one stamped start-2µs is out.
	q.Start, q.End = start, end
	q.Lookback = time.Microsecond
	if res, err = sourcetest.Collect(t, src, q, source.BatchOptions{}); err != nil || names(res.Events) != "at_start,same_micro_a,last_micro" {
		t.Errorf("1µs lookback: %v [%s]", err, names(res.Events))
	}
}
