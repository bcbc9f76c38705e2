package control_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/host/control"
)

// TestBackfillThroughput is the backfill benchmark of docs/performance.md, not a unit test:
// it runs only when SLUICE_BENCH_BACKFILL_RUNS is set (bench/backfill.sh). It asks the API
// for a backfill of that many empty hourly intervals, waits until the backfill reports every
// run finished, then checks every run's state page by page, and logs the rate.
//
//	SLUICE_BENCH_BACKFILL_RUNS=10000 go test -run TestBackfillThroughput -v ./host/control/
func TestBackfillThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SLUICE_BENCH_BACKFILL_RUNS"))
	if n <= 0 {
		t.Skip("SLUICE_BENCH_BACKFILL_RUNS is not set (bench/backfill.sh)")
	}
	par, _ := strconv.Atoi(os.Getenv("SLUICE_BENCH_BACKFILL_PARALLELISM"))
	db := os.Getenv("SLUICE_BENCH_DATABASE_URL") // a PostgreSQL server: a fresh database in it
	if db != "" {
		db = freshDatabase(t, db)
	}
	e := newEnv(t, db, func(c *control.Config) { c.BackfillParallelism = par })
	id := e.createExport("bench-backfill", localConfig("bench"))
	// The test events lie within the 50 hours before t0: these intervals are all empty.
	end := t0.Truncate(time.Hour).Add(-60 * time.Hour)
	start := end.Add(-time.Duration(n) * time.Hour)
	began := time.Now()
	bf := e.backfill(id, start, end)
	requested := time.Since(began)
	for {
		st, p := e.getBackfill(id, bf)
		if st != "Running" {
			if st != "Completed" || int(p["completed_runs"].(float64)) != n {
				t.Fatalf("backfill ended %s: %v", st, p)
			}
			break
		}
		if time.Since(began) > 30*time.Minute {
			t.Fatalf("backfill still running after 30 min: %v", p)
		}
		time.Sleep(250 * time.Millisecond)
	}
	took := time.Since(began)
	rs := e.allRuns(id)
	if s := statuses(rs); len(rs) != n || s["Completed"] != n {
		t.Fatalf("%d runs by status %v, want %d Completed", len(rs), s, n)
	}
	t.Logf("backfill of %d empty hourly intervals (parallelism %d, PostgreSQL %t): request %s, all Completed in %s: %.1f runs/s",
		n, par, db != "", requested.Round(time.Millisecond), took.Round(time.Millisecond), float64(n)/took.Seconds())
}
