package bigquery_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
	"github.com/sluicehq/sluice/host/runtime"
)

// TestPluginEndToEnd builds plugins/bigquery to wasm, runs it in host/runtime with the
// capability bound against bqfake, and checks the rows, the jobs, the stage cleanup and
// that a retried attempt does not insert twice.
func TestPluginEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the wasm plugin")
	}
	wasmPath := filepath.Join(t.TempDir(), "bigquery.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w -buildid=", "-o", wasmPath, "../../../plugins/bigquery")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Shared with other test packages: compiling the plugin dominates this test under -race.
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	p, err := rt.Load(ctx, wasm, []string{abi.CapBigQuery}, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	f, c := setup(t, 256<<10)
	b := runtime.Bindings{
		Warehouses: map[string]runtime.Caller{abi.CapBigQuery: c},
		Sinks:      map[string]runtime.ObjectStore{"bigquery_load": c.Sink()},
		Encoders: func(w io.Writer, spec abi.EncoderSpec, cols []abi.Column) (runtime.BatchEncoder, error) {
			return encode.New(w, spec, cols)
		},
	}
	req := abi.OpenRequest{RunID: "run-42", ExportID: "e1", ExportName: "bq", IntervalStart: t0, IntervalEnd: t0.Add(time.Hour),
		Attempt: 1, Columns: abi.EventColumns, Config: map[string]any{"project_id": proj, "dataset_id": ds,
			"table_id": "events", "use_json_type": true, "file_format": "Parquet"}}
	run := func(req abi.OpenRequest) abi.Result {
		t.Helper()
		s, err := p.Open(ctx, req, b)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(ctx)
		for range 2 {
			if err := s.WriteBatch(ctx, events(1000), 1000); err != nil {
				t.Fatal(err)
			}
		}
		res, err := s.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return res.Result
	}
	res := run(req)
	if res.Records != 2000 {
		t.Fatalf("result %+v", res)
	}
	tb, ok := f.Table(proj, ds, "events")
	if !ok || len(tb.Rows) != 2000 || tb.Meta.TimePartitioning == nil || tb.Meta.TimePartitioning.Field != "timestamp" {
		t.Fatalf("final table %v rows", ok)
	}
	row := tb.Rows[3]
	if row["uuid"] != "00000000-0000-0000-0000-000000000003" || row["set"] != `{"email":"a3@x"}` || row["set_once"] != `{"first":true}` ||
		row["ip"] != "10.0.0.3" || row["team_id"] != int64(7) || row["site_url"] != "" || row["bq_ingested_timestamp"] == nil {
		t.Fatalf("row %v", row)
	}
	for _, name := range f.Tables(proj, ds) {
		if strings.HasPrefix(name, "stage_") {
			t.Fatalf("stage table left: %s", name)
		}
	}
	var loads, inserts int
	for _, j := range f.Jobs() {
		if l := j.Configuration.Load; l != nil {
			loads++
			if l.SourceFormat != "PARQUET" || l.WriteDisposition != "WRITE_TRUNCATE" || !strings.HasPrefix(l.DestinationTable.TableId, "stage_events_run_42_g0_") {
				t.Fatalf("load %+v", l)
			}
		}
		if q := j.Configuration.Query; q != nil && strings.HasPrefix(q.Query, "INSERT") {
			inserts++
		}
	}
	if loads != 1 || inserts != 1 {
		t.Fatalf("loads %d inserts %d", loads, inserts)
	}
	// A retried attempt of the same run loads its own stage but does not insert again.
	// It still reports the rows the earlier attempt's INSERT inserted.
	req.Attempt = 2
	if res := run(req); res.Records != 2000 {
		t.Fatalf("retry result %+v, want the 2000 rows inserted before", res)
	}
	tb, _ = f.Table(proj, ds, "events")
	if len(tb.Rows) != 2000 {
		t.Fatalf("retry inserted again: %d rows", len(tb.Rows))
	}
	// A deliberate re-run (a higher generation) inserts again (issue 17).
	req.Attempt, req.Generation = 3, 2
	if res := run(req); res.Records != 2000 {
		t.Fatalf("re-run result %+v", res)
	}
	tb, _ = f.Table(proj, ds, "events")
	if len(tb.Rows) != 4000 {
		t.Fatalf("re-run: %d rows, want 4000", len(tb.Rows))
	}
	for _, name := range f.Tables(proj, ds) {
		if strings.HasPrefix(name, "stage_") {
			t.Fatalf("stage table left: %s", name)
		}
	}
}
