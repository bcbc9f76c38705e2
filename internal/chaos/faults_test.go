package chaos_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/chaos"
)

func faultConfig(t *testing.T, name string, intervals, perInterval int) chaos.FaultConfig {
	cfg := chaos.FaultConfig{Config: chaos.Short(), Intervals: intervals, PerInterval: perInterval}
	cfg.Drain = 4 * time.Minute
	prepare(t, &cfg.Config, name)
	return cfg
}

// check fails the test on any problem the report shows, and on a scenario that injected
// no fault (a test that cannot fail is no test).
func check(t *testing.T, name string, rep chaos.Report, err error, faultKey string) {
	t.Helper()
	t.Logf("%s report:\n%s", name, rep.Summary())
	writeReport(t, name, rep)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("%s: problems found (logs in %s)", name, rep.Config.Dir)
	}
	if rep.Faults[faultKey] == 0 {
		t.Fatalf("%s: no fault injected (%s = 0)", name, faultKey)
	}
	runs, completed, _, events, exported, _, _ := rep.Totals()
	if runs == 0 || completed != runs || events == 0 || exported != events {
		t.Fatalf("%s: %d runs, %d completed, %d events, %d exported", name, runs, completed, events, exported)
	}
}

// TestFaultS3: 20% of S3 requests fail (500/503/SlowDown; a third of them after the
// server carried the request out), 2% are reset, all delayed up to 100 ms. Every run
// completes, one object per interval, every event once, no multipart upload left open.
func TestFaultS3(t *testing.T) {
	svc := services(t)
	intervals, per := 24, 1000
	if full() {
		intervals, per = 48, 2000
	}
	cfg := faultConfig(t, "s3", intervals, per)
	cfg.BigIntervals, cfg.BigEvents = 2, 12_000
	rep, err := chaos.S3Faults(context.Background(), svc, cfg, 0.2)
	check(t, "s3 faults", rep, err, "s3 requests")
	if rep.Faults["s3 errors before the server"]+rep.Faults["s3 errors after the server carried the request out"] == 0 {
		t.Fatal("no S3 error injected")
	}
	if o := rep.Exports[0].Objects; o != intervals {
		t.Fatalf("%d objects for %d intervals", o, intervals)
	}
}

// TestFaultPostgres: PostgreSQL is unreachable for 10 s (every connection dropped, new ones
// refused) while runs execute; the hosts recover without a restart and lose nothing.
func TestFaultPostgres(t *testing.T) {
	svc := services(t)
	outages := 1
	if full() {
		outages = 3
	}
	cfg := faultConfig(t, "pg", 8, 2000)
	rep, err := chaos.PostgresFaults(context.Background(), svc, cfg, 10*time.Second, outages)
	check(t, "postgres faults", rep, err, "postgres outages")
}

// TestFaultClickHouse: the source's connections are dropped while runs stream their
// interval; every run retries and completes with no partial or doubled file.
func TestFaultClickHouse(t *testing.T) {
	svc := services(t)
	drops := 2
	if full() {
		drops = 5
	}
	cfg := faultConfig(t, "ch", 4, 20_000)
	cfg.BigIntervals, cfg.BigEvents = 2, 12_000
	rep, err := chaos.ClickHouseFaults(context.Background(), svc, cfg, drops)
	check(t, "clickhouse faults", rep, err, "clickhouse connections dropped mid-stream")
	if rep.Exports[0].RetriedAttempts == 0 {
		t.Fatal("no run was retried: the drops did not land mid-stream")
	}
}
