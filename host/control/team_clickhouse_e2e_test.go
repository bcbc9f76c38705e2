package control_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/runtime"
)

// PostHog's events table in the types ClickHouse 18.16 has (as in host/source's tests).
const teamEventsDDL = `CREATE TABLE %s.events (
	uuid UUID, event String, properties String, timestamp DateTime('UTC'), team_id Int64,
	distinct_id String, elements_chain String, created_at DateTime('UTC'), person_id UUID,
	person_properties String, inserted_at Nullable(DateTime('UTC')), _timestamp DateTime, _offset UInt64
) ENGINE = ReplacingMergeTree(_timestamp)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(toString(uuid)))`

// TestClickHouseExportOfOneTeam (issue 17): PostHog's ClickHouse is multi-tenant. An export
// with team_id, run against the real ClickHouse test server holding two teams' events,
// exports that team's rows and no other's.
func TestClickHouseExportOfOneTeam(t *testing.T) {
	base := os.Getenv("SLUICE_TEST_CLICKHOUSE_DSN")
	if base == "" {
		t.Skip("SLUICE_TEST_CLICKHOUSE_DSN is not set (run .ci/services/clickhouse.sh)")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := context.Background()
	opts, err := clickhouse.ParseDSN(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	db := fmt.Sprintf("sluice_team_%d", time.Now().UnixNano())
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	if err := conn.Exec(ctx, fmt.Sprintf(teamEventsDDL, db)); err != nil {
		t.Fatal(err)
	}
	// 60 events in the hour before the last whole hour, alternating teams 1 and 2.
	end := t0.Truncate(time.Hour)
	start := end.Add(-time.Hour)
	want := map[string]bool{}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+`.events (uuid, event, properties, timestamp, team_id,
		distinct_id, elements_chain, created_at, person_id, person_properties, inserted_at, _timestamp, _offset)`)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		id, team := uuid.New(), int64(1+i%2)
		at := start.Add(time.Duration(i) * time.Minute)
		if team == 2 {
			want[id.String()] = true
		}
		if err := b.Append(id, "$pageview", fmt.Sprintf(`{"i":%d}`, i), at, team, fmt.Sprintf("u%d", i), "",
			at, uuid.New(), "{}", &at, at, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}

	// A host whose source is that ClickHouse database.
	dataDir := t.TempDir()
	clock := clockwork.NewFakeClockAt(t0)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	dsn := strings.TrimSuffix(base, "/default") + "/" + db
	h, err := control.New(ctx, control.Config{
		DataDir: dataDir, ClickHouseDSN: dsn, PluginsDir: filepath.Join(repoRoot(t), "bin", "plugins"), LockFile: filepath.Join(repoRoot(t), "plugins.lock"),
		Clock: clock, SettleDelay: time.Second, Workers: 2, MaxAttempts: 3, RetryBase: 200 * time.Millisecond, BatchRecords: 500, Logger: logger,
		Runtime:          runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")},
		BigQueryEndpoint: "http://127.0.0.1:1/", SnowflakeEndpoint: "http://127.0.0.1:1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var ctl api.Controller = control.API{Host: h}
	if _, wired := ctl.(api.TeamLister); !wired {
		t.Fatal("control.API does not answer api.TeamLister: team_id would never be required")
	}
	srv := api.New(api.Config{AdminToken: token, Logger: logger, Now: clock.Now}, api.Deps{DB: h.DB(), Control: ctl})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = h.Stop(sctx)
	})
	e := &env{t: t, clock: clock, host: h, url: ts.URL, dataDir: dataDir}

	body := func(name string, team any) map[string]any {
		b := map[string]any{"name": name, "interval": "hour", "destination": map[string]any{"type": "s3", "config": localConfig(name)}}
		if team != nil {
			b["team_id"] = team
		}
		return b
	}
	// On this two-team source an unscoped export is refused, naming team_id.
	out := e.do("POST", "/api/v1/batch_exports", body("unscoped", nil), http.StatusBadRequest)
	if !strings.Contains(fmt.Sprint(out), "team_id") {
		t.Fatalf("refusal does not name team_id: %v", out)
	}

	out = e.do("POST", "/api/v1/batch_exports", body("team-two", 2), http.StatusCreated)
	id := out["id"].(string)
	e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
		map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
	rs := e.waitRuns(id, "1 run", allFinished(1))
	if rs[0].Status != "Completed" || rs[0].RecordsCompleted != int64(len(want)) {
		t.Fatalf("run %+v, want Completed with %d records", rs[0], len(want))
	}
	got := e.exported("team-two")
	for u := range got {
		if !want[u] {
			t.Fatalf("event %s of another team was exported", u)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("exported %d events of team 2, want %d", len(got), len(want))
	}
}
