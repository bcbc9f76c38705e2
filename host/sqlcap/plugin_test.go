package sqlcap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
)

func newRuntime(t *testing.T) *runtime.Runtime {
	rt, err := runtime.New(context.Background(), runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func loadWasm(t *testing.T, rt *runtime.Runtime, path string, grants []string) *runtime.Plugin {
	t.Helper()
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (make plugins builds bin/plugins)", err)
	}
	p, err := rt.Load(context.Background(), wasm, grants, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Through the ABI: a plugin that calls sql without the grant is denied even when the export
// binds a database; a granted plugin's statement outside the policy is denied and the
// table stays.
func TestPluginDeniedAndPolicyThroughTheABI(t *testing.T) {
	params, admin := pgParams(t)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE TABLE "+params["schema"]+".events (n int)"); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	cases := []struct {
		module string
		grants []string
		msg    string
	}{
		{"sqlnogrant", nil, `call denied: capability "sql" was not granted to the plugin`},
		{"sqlpolicy", []string{abi.CapSQL}, `DROP TABLE is only allowed on the plugin's stage tables (sluice_stage_*), not "events"`},
	}
	for _, c := range cases {
		p := loadWasm(t, rt, filepath.Join("testdata", c.module+".wasm"), c.grants)
		b := bind(t, testPools(t), params)
		_, err := p.Open(ctx, abi.OpenRequest{RunID: "r", Attempt: 1, Columns: abi.EventColumns}, runtime.Bindings{SQL: b})
		var pe *runtime.PluginError
		if !errors.As(err, &pe) || pe.ABIStatus() != abi.StatusDenied || !strings.Contains(pe.Err.Message, c.msg) {
			t.Errorf("%s: %v, want denied with %q", c.module, err, c.msg)
		}
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+params["schema"]+".events").Scan(&n); err != nil {
		t.Fatalf("the table was touched: %v", err)
	}
}

// The built postgres plugin (bin/plugins/postgres.wasm) through the runtime: a run loads
// every event once with PostHog's columns; the same run again (a retry after a fault that
// hit after the commit) replaces its rows instead of doubling them; a run whose move is
// interrupted by a killed connection fails retryable and leaves the target untouched.
func TestPostgresPluginRuns(t *testing.T) {
	params, admin := pgParams(t)
	ctx := context.Background()
	rt := newRuntime(t)
	p := loadWasm(t, rt, "../../bin/plugins/postgres.wasm", []string{abi.CapSQL})
	ps := testPools(t)
	cfg := map[string]any{"host": params["host"], "port": float64(5432), "database": params["database"], "schema": params["schema"],
		"table_name": "events", "user": params["user"], "has_self_signed_cert": false, "driver": "postgres"}
	evs := conformance.Events(500, 100, 3)
	run := func(runID string, batches int) (abi.Result, error) {
		b := bind(t, ps, params)
		s, err := p.Open(ctx, abi.OpenRequest{RunID: runID, Attempt: 1, Config: cfg, Columns: abi.EventColumns}, runtime.Bindings{SQL: b})
		if err != nil {
			return abi.Result{}, err
		}
		defer s.Close(ctx)
		for i := range batches {
			part := evs[i*len(evs)/batches : (i+1)*len(evs)/batches]
			if err := s.WriteBatch(ctx, conformance.Batch(part), len(part)); err != nil {
				return abi.Result{}, err
			}
		}
		r, err := s.Finish(ctx)
		return r.Result, err
	}
	count := func() (rows, distinct int) {
		if err := admin.QueryRow(ctx, "SELECT count(*), count(DISTINCT uuid) FROM "+params["schema"]+".events").Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		return
	}
	for i := range 2 {
		res, err := run("run-1", 5)
		if err != nil || res.Records != 500 {
			t.Fatalf("run %d: %+v %v", i, res, err)
		}
		if rows, distinct := count(); rows != 500 || distinct != 500 {
			t.Fatalf("after run %d: %d rows, %d distinct uuids; want 500", i, rows, distinct)
		}
	}
	var uuid, event, ip, elements, ts string
	if err := admin.QueryRow(ctx, `SELECT uuid, event, coalesce(ip, ''), coalesce(elements::text, ''), "timestamp"::text FROM `+params["schema"]+
		`.events ORDER BY "timestamp", uuid LIMIT 1`).Scan(&uuid, &event, &ip, &elements, &ts); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(uuid, "00000003-0000-4000") || event != evs[0].Event || ts != "2025-01-01 00:00:00+00" {
		t.Errorf("first row: uuid %s event %s ts %s elements %s", uuid, event, ts, elements)
	}
	var stages int
	_ = admin.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'sluice_stage_%'", params["schema"]).Scan(&stages)
	if stages != 0 {
		t.Errorf("%d stage tables left", stages)
	}

	// A trigger kills the plugin's connection at the first insert of the move: the run
	// fails retryable, the target keeps its 500 rows, a retry lands the new ones once.
	if _, err := admin.Exec(ctx, `CREATE SEQUENCE `+params["schema"]+`.fault_seq;
		CREATE FUNCTION `+params["schema"]+`.kill_once() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF nextval('`+params["schema"]+`.fault_seq') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NULL; END $$;
		CREATE TRIGGER kill_once BEFORE INSERT ON `+params["schema"]+`.events FOR EACH STATEMENT EXECUTE FUNCTION `+params["schema"]+`.kill_once()`); err != nil {
		t.Fatal(err)
	}
	evs = conformance.Events(300, 100, 4)
	_, err := run("run-2", 3)
	if err == nil {
		t.Fatal("the run survived its killed connection")
	}
	if c := p.Classify(ctx, err, 1); c.Outcome != abi.OutcomeRetry {
		t.Fatalf("killed connection: %v classified %+v, want retry", err, c)
	}
	if rows, _ := count(); rows != 500 {
		t.Fatalf("after the failed move: %d rows, want 500", rows)
	}
	if res, err := run("run-2", 3); err != nil || res.Records != 300 {
		t.Fatalf("retry: %+v %v", res, err)
	}
	if rows, distinct := count(); rows != 800 || distinct != 800 {
		t.Fatalf("after the retry: %d rows, %d distinct; want 800", rows, distinct)
	}
}
