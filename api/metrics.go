package api

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/storage"
)

// Metrics is Sluice's Prometheus instrumentation on a private registry (served at
// /metrics). The runner reports to it; every method is safe on a nil *Metrics (no-op),
// so callers need not check whether metrics are wired.
type Metrics struct {
	reg          *prometheus.Registry
	runs         *prometheus.CounterVec
	records      *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	runDuration  *prometheus.HistogramVec
	pluginCalls  *prometheus.HistogramVec
	retries      *prometheus.CounterVec
	queueDepth   prometheus.Gauge
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	pluginMetrics *prometheus.CounterVec // the plugins' own counters (metric import)
	pluginDropped *prometheus.CounterVec
	missing       *prometheus.CounterVec // sluice_missing_records_total
	pluginMu      sync.Mutex
	pluginNames   map[string]*pluginNames // by plugin name
}

// MaxPluginMetricNames bounds the distinct metric names one plugin may expose on /metrics;
// values reported under further names are dropped and counted in
// sluice_plugin_metric_dropped_total.
const MaxPluginMetricNames = 50

type pluginNames struct {
	names          map[string]bool
	warnedCap      bool
	warnedNegative bool
}

// NewMetrics creates the collectors on a new registry (with Go and process collectors).
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_runs_total", Help: "Run attempts that ended, by destination plugin and status.",
		}, []string{"destination", "status"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_exported_records_total", Help: "Records exported, by destination plugin.",
		}, []string{"destination"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_exported_bytes_total", Help: "Bytes written to destinations (after format and compression).",
		}, []string{"destination"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_run_duration_seconds", Help: "Duration of run attempts, by destination plugin and status.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600},
		}, []string{"destination", "status"}),
		pluginCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_plugin_call_duration_seconds", Help: "Duration of calls into plugins, by plugin and export (open, write_batch, finish, ...).",
			Buckets: []float64{0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30},
		}, []string{"plugin", "call"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_run_retries_total", Help: "Run attempts scheduled again after a retryable failure, by destination plugin.",
		}, []string{"destination"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_queue_depth", Help: "Runs waiting in the queue.",
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_http_requests_total", Help: "API requests, by method, route and status code.",
		}, []string{"method", "route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_http_request_duration_seconds", Help: "API request durations, by method and route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		pluginMetrics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_plugin_metric_total", Help: "Counters plugins report through the metric host import, by plugin and metric name (at most 50 names per plugin).",
		}, []string{"plugin", "name"}),
		pluginDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_plugin_metric_dropped_total", Help: "Plugin metric values dropped: a name past the per-plugin cap, or a negative value.",
		}, []string{"plugin"}),
		missing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_missing_records_total", Help: "Records the missing-data check found in the source for Completed runs beyond what they exported (late data), by destination plugin.",
		}, []string{"destination"}),
		pluginNames: map[string]*pluginNames{},
	}
	m.reg.MustRegister(m.runs, m.records, m.bytes, m.runDuration, m.pluginCalls, m.retries, m.queueDepth,
		m.httpRequests, m.httpDuration, m.pluginMetrics, m.pluginDropped, m.missing,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the private registry (to add collectors of other packages).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// RunFinished records the end of one run attempt: its status (Completed, Failed,
// FailedRetryable, Cancelled), duration, and the records and bytes it exported.
func (m *Metrics) RunFinished(destination string, status storage.RunStatus, d time.Duration, records, bytes int64) {
	if m == nil {
		return
	}
	m.runs.WithLabelValues(destination, string(status)).Inc()
	m.runDuration.WithLabelValues(destination, string(status)).Observe(d.Seconds())
	if records > 0 {
		m.records.WithLabelValues(destination).Add(float64(records))
	}
	if bytes > 0 {
		m.bytes.WithLabelValues(destination).Add(float64(bytes))
	}
}

// MissingRecords counts records the missing-data check newly found missing.
func (m *Metrics) MissingRecords(destination string, n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.missing.WithLabelValues(destination).Add(float64(n))
}

// RunRetried counts a run attempt scheduled again after a retryable failure.
func (m *Metrics) RunRetried(destination string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(destination).Inc()
}

// PluginCall records the duration of one call into a plugin (call: "open",
// "write_batch", "finish", "classify", "validate", "test", ...).
func (m *Metrics) PluginCall(plugin, call string, d time.Duration) {
	if m == nil {
		return
	}
	m.pluginCalls.WithLabelValues(plugin, call).Observe(d.Seconds())
}

// PluginMetric adds value to the plugin's counter name (runtime.MetricSink: the runtime
// calls it for every value a plugin reports through the metric import). At most
// MaxPluginMetricNames distinct names per plugin are exposed; values under further names, and
// negative values (a Prometheus counter only goes up), are dropped, counted in
// sluice_plugin_metric_dropped_total{plugin} and logged once per plugin as a warning.
func (m *Metrics) PluginMetric(plugin, name string, value int64) {
	if m == nil {
		return
	}
	m.pluginMu.Lock()
	pn := m.pluginNames[plugin]
	if pn == nil {
		pn = &pluginNames{names: map[string]bool{}}
		m.pluginNames[plugin] = pn
	}
	var warn string
	drop := false
	switch {
	case value < 0:
		drop = true
		if !pn.warnedNegative {
			pn.warnedNegative = true
			warn = "plugin metric dropped: a negative value cannot be added to a counter (further ones are dropped silently and counted in sluice_plugin_metric_dropped_total)"
		}
	case !pn.names[name]:
		if len(pn.names) >= MaxPluginMetricNames {
			drop = true
			if !pn.warnedCap {
				pn.warnedCap = true
				warn = "plugin metric dropped: the plugin reports more than the allowed distinct metric names (further ones are dropped silently and counted in sluice_plugin_metric_dropped_total)"
			}
		} else {
			pn.names[name] = true
		}
	}
	m.pluginMu.Unlock()
	if warn != "" {
		slog.Default().Warn(warn, "plugin", plugin, "name", name, "value", value, "max_names", MaxPluginMetricNames)
	}
	if drop {
		m.pluginDropped.WithLabelValues(plugin).Inc()
		return
	}
	m.pluginMetrics.WithLabelValues(plugin, name).Add(float64(value))
}

// SetQueueDepth sets the number of runs waiting in the queue.
func (m *Metrics) SetQueueDepth(n int) {
	if m == nil {
		return
	}
	m.queueDepth.Set(float64(n))
}

// httpMiddleware counts requests by route template (never by raw path: bounded labels).
func (m *Metrics) httpMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		code := c.Response().Status
		if err != nil {
			// The error handler has not run yet: derive the status it will write.
			code = statusOf(err)
		}
		m.httpRequests.WithLabelValues(c.Request().Method, route, strconv.Itoa(code)).Inc()
		m.httpDuration.WithLabelValues(c.Request().Method, route).Observe(time.Since(start).Seconds())
		return err
	}
}
