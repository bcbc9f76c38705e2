package api_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/host/runtime"
)

// A plugin's own metrics (the metric host import) reach /metrics labelled with the plugin's
// name, and one plugin cannot expose more than api.MaxPluginMetricNames names.
func TestPluginMetricsOnMetricsEndpoint(t *testing.T) {
	e := newEnv(t)
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	ctx := context.Background()
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	rt.UseMetrics(e.srv.Metrics())
	wasm, err := os.ReadFile("../host/runtime/testdata/metrics.wasm")
	if err != nil {
		t.Fatal(err)
	}
	p, err := rt.Load(ctx, wasm, nil, runtime.Limits{PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Each batch reports 20 new names (m_000, m_001, ...): 3 runs, 60 names, 10 past the cap.
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, run := range []string{"r1", "r2", "r3"} {
		s, err := p.Open(ctx, abi.OpenRequest{RunID: run, ExportID: "e", ExportName: "e", IntervalStart: start,
			IntervalEnd: start.Add(time.Hour), Attempt: 1, Config: map[string]any{}, Columns: abi.EventColumns}, runtime.Bindings{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteBatch(ctx, emptyBatch(t), 0); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := e.raw("GET", "/metrics", "", nil)
	if r.Status != 200 {
		t.Fatalf("metrics: %d", r.Status)
	}
	body := string(r.Body)
	for _, want := range []string{
		`sluice_plugin_metric_total{name="m_000",plugin="metrics"} 1`,
		`sluice_plugin_metric_total{name="m_049",plugin="metrics"} 1`,
		`sluice_plugin_metric_dropped_total{plugin="metrics"} 10`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, `name="m_050"`) {
		t.Errorf("metric m_050 is exposed past the cap of %d names", api.MaxPluginMetricNames)
	}
	if n := strings.Count(body, "\nsluice_plugin_metric_total{"); n != api.MaxPluginMetricNames {
		t.Errorf("%d plugin metric series; want %d", n, api.MaxPluginMetricNames)
	}
	if n := strings.Count(logs.String(), "plugin metric dropped"); n != 1 {
		t.Errorf("%d warnings; want one per plugin:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "plugin=metrics") || !strings.Contains(logs.String(), "max_names=50") {
		t.Errorf("warning does not name the plugin and the cap:\n%s", logs.String())
	}

	// Negative values cannot be added to a counter: dropped and counted.
	e.srv.Metrics().PluginMetric("other", "x", -1)
	e.srv.Metrics().PluginMetric("other", "x", 2)
	body = string(e.raw("GET", "/metrics", "", nil).Body)
	for _, want := range []string{
		`sluice_plugin_metric_total{name="x",plugin="other"} 2`,
		`sluice_plugin_metric_dropped_total{plugin="other"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var nilMetrics *api.Metrics
	nilMetrics.PluginMetric("p", "n", 1) // no-op
}

func emptyBatch(t *testing.T) []byte {
	t.Helper()
	return abi.NewBatchWriter(abi.EventColumns, nil).Bytes()
}

// The missing-data check's counter reaches /metrics by destination; nothing for 0.
func TestMissingRecordsMetric(t *testing.T) {
	e := newEnv(t)
	m := e.srv.Metrics()
	m.MissingRecords("s3", 3)
	m.MissingRecords("s3", 2)
	m.MissingRecords("bigquery", 0)
	body := string(e.raw("GET", "/metrics", "", nil).Body)
	if !strings.Contains(body, `sluice_missing_records_total{destination="s3"} 5`) || strings.Contains(body, `sluice_missing_records_total{destination="bigquery"}`) {
		t.Errorf("metrics:\n%s", body)
	}
}
