package source_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/host/source/sourcetest"
)

// benchTable creates (once, kept between runs) a PostHog-shaped table of n rows spread over
// one hour of inserted_at, generated on the server.
func benchTable(tb testing.TB, n int) (dsn, table string) {
	dsn = chDSN(tb)
	conn := chConn(tb, dsn)
	defer conn.Close()
	ctx := context.Background()
	table = fmt.Sprintf("sluice_bench_%d", n)
	var count uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?", table).Scan(&count); err != nil {
		tb.Fatal(err)
	}
	if count == 1 {
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&count); err != nil {
			tb.Fatal(err)
		}
		if count == uint64(n) {
			return dsn, table
		}
		conn.Exec(ctx, "DROP TABLE "+table)
	}
	if err := conn.Exec(ctx, fmt.Sprintf(chEventsDDL, table)); err != nil {
		tb.Fatal(err)
	}
	base := sourcetest.Base.Unix()
	q := fmt.Sprintf(`INSERT INTO %s (uuid, event, properties, timestamp, team_id, distinct_id,
		elements_chain, created_at, person_id, person_properties, inserted_at, _timestamp, _offset)
	SELECT generateUUIDv4(),
		arrayElement(['$pageview', '$autocapture', 'click', '$identify'], number %% 4 + 1),
		concat('{"$current_url":"https://example.com/products/', toString(number %% 1000),
			'?ref=newsletter","$browser":"Chrome","$os":"Mac OS X","$screen_width":1440,"n":', toString(number), '}'),
		toDateTime(%d + intDiv(number * 3600, %d) - 60, 'UTC'),
		toInt64(1 + number %% 3),
		concat('user-', toString(number %% 50000)),
		'',
		toDateTime(%d + intDiv(number * 3600, %d), 'UTC'),
		generateUUIDv4(),
		'{"email":"someone@example.com","plan":"pro"}',
		toNullable(toDateTime(%d + intDiv(number * 3600, %d), 'UTC')),
		toDateTime(%d + intDiv(number * 3600, %d), 'UTC'),
		number
	FROM system.numbers LIMIT %d`, table, base, n, base, n, base, n, base, n, n)
	if err := conn.Exec(ctx, q); err != nil {
		tb.Fatal(err)
	}
	return dsn, table
}

type streamStats struct {
	rows, bytes, batches int
	elapsed              time.Duration
	peakHeap             uint64 // max HeapAlloc seen at batch boundaries
}

func streamAll(tb testing.TB, src source.Source, measureHeap bool) streamStats {
	var st streamStats
	var ms runtime.MemStats
	start := time.Now()
	err := src.Stream(context.Background(), source.Query{Start: sourcetest.Base, End: sourcetest.Base.Add(time.Hour)},
		source.BatchOptions{}, func(b []byte, n int, _ source.Position) error {
			st.rows += n
			st.bytes += len(b)
			st.batches++
			if measureHeap {
				runtime.ReadMemStats(&ms)
				st.peakHeap = max(st.peakHeap, ms.HeapAlloc)
			}
			return nil
		})
	st.elapsed = time.Since(start)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// cliSQL is the same selection, order and de-duplication as the source's query.
func cliSQL(table string) string {
	s, e := sourcetest.Base.Unix(), sourcetest.Base.Add(time.Hour).Unix()
	return fmt.Sprintf(`SELECT uuid, event, distinct_id, person_id, team_id, properties, person_properties,
		elements_chain, timestamp, created_at, assumeNotNull(coalesce(inserted_at, _timestamp)) AS ins
		FROM %s WHERE ins >= toDateTime(%d, 'UTC') AND ins < toDateTime(%d, 'UTC')
		AND timestamp >= toDateTime(%d, 'UTC') AND timestamp < toDateTime(%d, 'UTC')
		ORDER BY ins, toString(uuid) LIMIT 1 BY event, cityHash64(distinct_id), uuid
		FORMAT JSONEachRow`, table, s, e, s-7*86400, e+86400)
}

// BenchmarkClickHouseStream200k streams 200k rows into encoded batches. It also times
// clickhouse-client on the same query (JSONEachRow to /dev/null) and reports the ratio.
func BenchmarkClickHouseStream200k(b *testing.B) {
	const n = 200_000
	dsn, table := benchTable(b, n)
	src, err := source.NewClickHouse(context.Background(), source.ClickHouseConfig{DSN: dsn, Table: table})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	var total time.Duration
	var bytes int
	b.ResetTimer()
	for range b.N {
		st := streamAll(b, src, false)
		if st.rows != n {
			b.Fatalf("streamed %d rows, want %d", st.rows, n)
		}
		total += st.elapsed
		bytes = st.bytes
	}
	b.StopTimer()
	per := total.Seconds() / float64(b.N)
	b.ReportMetric(float64(n)/per, "rows/s")
	b.ReportMetric(float64(bytes)/per/1e6, "MB/s")
	b.ReportMetric(float64(bytes)/1e6, "batchMB")
	if path, err := exec.LookPath("clickhouse-client"); err == nil {
		var cli time.Duration
		for range b.N {
			cmd := exec.Command(path, "--host", "127.0.0.1", "--port", "9000", "--query", cliSQL(table))
			devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			cmd.Stdout = devnull
			start := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
			cli += time.Since(start)
			devnull.Close()
		}
		cliPer := cli.Seconds() / float64(b.N)
		b.ReportMetric(cliPer*1000, "cli-ms")
		b.ReportMetric(per*1000, "sluice-ms")
		b.ReportMetric(per/cliPer, "sluice/cli")
	}
}

// BenchmarkClickHouseReaders streams the same 200k rows through both readers over the
// native protocol, one sub-benchmark each: "native" (package chnative, reused column
// buffers) and "clickhouse-go" (rows.Scan, the reader before it). Per event: bytes and
// objects allocated, and time. Run with -benchmem; alternate with -count to pair them.
func BenchmarkClickHouseReaders(b *testing.B) {
	const n = 200_000
	dsn, table := benchTable(b, n)
	for _, reader := range []string{"native", "clickhouse-go"} {
		b.Run(reader, func(b *testing.B) {
			src, err := source.NewClickHouse(context.Background(), source.ClickHouseConfig{DSN: dsn, Table: table})
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			if reader == "clickhouse-go" {
				source.ReadViaRows(src)
			}
			var before, after runtime.MemStats
			var elapsed time.Duration
			var bytes int
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for range b.N {
				st := streamAll(b, src, false)
				if st.rows != n {
					b.Fatalf("streamed %d rows, want %d", st.rows, n)
				}
				elapsed += st.elapsed
				bytes = st.bytes
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			events := float64(n) * float64(b.N)
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/events, "B/event")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(bytes*b.N), "B/batch-byte")
			b.ReportMetric(float64(elapsed.Nanoseconds())/events, "ns/event")
		})
	}
}

// TestClickHouseStreamMemoryFlat streams 200k and 1M rows and compares the peak heap.
// Slow (generates 1.2M rows once, then keeps the tables): SLUICE_TEST_MEMORY=1 to run.
func TestClickHouseStreamMemoryFlat(t *testing.T) {
	if os.Getenv("SLUICE_TEST_MEMORY") == "" {
		t.Skip("set SLUICE_TEST_MEMORY=1 (and SLUICE_TEST_CLICKHOUSE_DSN)")
	}
	var peaks []uint64
	for _, n := range []int{1_000_000, 5_000_000} {
		dsn, table := benchTable(t, n)
		src, err := source.NewClickHouse(context.Background(), source.ClickHouseConfig{DSN: dsn, Table: table})
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		st := streamAll(t, src, true)
		src.Close()
		if st.rows != n {
			t.Fatalf("streamed %d rows, want %d", st.rows, n)
		}
		t.Logf("%7d rows: %d batches, %.1f MB encoded, %.2fs (%.0f rows/s), heap before %.1f MiB, peak heap %.1f MiB",
			n, st.batches, float64(st.bytes)/1e6, st.elapsed.Seconds(), float64(n)/st.elapsed.Seconds(),
			float64(before.HeapAlloc)/(1<<20), float64(st.peakHeap)/(1<<20))
		peaks = append(peaks, st.peakHeap)
	}
	if peaks[1] > peaks[0]*2 {
		t.Errorf("peak heap grew from %d to %d bytes for 5x the rows", peaks[0], peaks[1])
	}
}

// BenchmarkClickHouseCount1M: the cost of a run's records_total_count (one Count of the
// interval, with Stream's filters and de-duplication) next to the Stream of the same
// 1M-row interval; reports both and their ratio.
func BenchmarkClickHouseCount1M(b *testing.B) {
	const n = 1_000_000
	dsn, table := benchTable(b, n)
	src, err := source.NewClickHouse(context.Background(), source.ClickHouseConfig{DSN: dsn, Table: table})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	q := source.Query{Start: sourcetest.Base, End: sourcetest.Base.Add(time.Hour)}
	var count, stream time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		got, err := src.Count(context.Background(), q)
		if err != nil {
			b.Fatal(err)
		}
		count += time.Since(start)
		if got != n {
			b.Fatalf("counted %d rows, want %d", got, n)
		}
		st := streamAll(b, src, false)
		if st.rows != n {
			b.Fatalf("streamed %d rows, want %d", st.rows, n)
		}
		stream += st.elapsed
	}
	b.StopTimer()
	b.ReportMetric(count.Seconds()*1000/float64(b.N), "count-ms")
	b.ReportMetric(stream.Seconds()*1000/float64(b.N), "stream-ms")
	b.ReportMetric(count.Seconds()/stream.Seconds(), "count/stream")
}
