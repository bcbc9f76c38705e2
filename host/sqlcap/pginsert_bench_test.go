package sqlcap

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
)

// BenchmarkPostgresLoad compares the two postgres load methods on the shared server: one
// batch of 10,000 event rows into a stage-like table of text columns (the redshift layout).
//
//	go test -run '^$' -bench PostgresLoad -benchtime 5x ./host/sqlcap/
func BenchmarkPostgresLoad(b *testing.B) {
	w := abi.NewBatchWriter(abi.EventColumns, nil)
	for i := range 10_000 {
		w.AppendUUID([16]byte{0: byte(i >> 8), 1: byte(i), 6: 0x40, 8: 0x80})
		w.AppendString("$pageview")
		w.AppendString(fmt.Sprint("user-", i%97))
		w.AppendNull()
		w.AppendInt(1)
		w.AppendString(fmt.Sprintf(`{"$current_url":"https://example.com/%d","$browser":"Firefox","n":%d}`, i, i))
		w.AppendNull()
		w.AppendString("")
		w.AppendTime(testTime(i))
		w.AppendNull()
		w.AppendTime(testTime(i))
		w.EndRow()
	}
	batch := w.Bytes()
	cols := []abi.ColumnSelect{{Name: "uuid"}, {Name: "event"}, {Name: "distinct_id"}, {Name: "person_id"}, {Name: "team_id"},
		{Name: "properties"}, {Name: "person_properties"}, {Name: "elements_chain"}, {Name: "timestamp"}, {Name: "created_at"},
		{Name: "inserted_at"}}
	for _, method := range []string{"copy", "insert"} {
		b.Run(method, func(b *testing.B) {
			params, _ := pgParams(b)
			params["load_method"] = method
			ps := NewPools(Config{AllowLoopback: true})
			defer ps.Close()
			bd, err := Bind(ps, params)
			if err != nil {
				b.Fatal(err)
			}
			defer bd.Close()
			run := func(req abi.SQLRequest, batch []byte) {
				if err := call(b, bd, req, batch, nil); err != nil {
					b.Fatal(err)
				}
			}
			run(abi.SQLRequest{Op: "exec", SQL: `CREATE TABLE sluice_stage_b (uuid varchar(200), event varchar(200), distinct_id varchar(200),
				person_id varchar(200), team_id bigint, properties varchar(65535), person_properties varchar(65535),
				elements_chain varchar(65535), "timestamp" timestamptz, created_at timestamptz, inserted_at timestamptz)`}, nil)
			b.ResetTimer()
			for range b.N {
				run(abi.SQLRequest{Op: "load", Batch: 1, Table: "sluice_stage_b", Columns: cols}, batch)
			}
			b.StopTimer()
			b.ReportMetric(float64(10_000*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func testTime(i int) time.Time {
	return time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
}
