package api

import (
	"net/http"
	"strconv"
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
	}
	m.reg.MustRegister(m.runs, m.records, m.bytes, m.runDuration, m.pluginCalls, m.retries, m.queueDepth,
		m.httpRequests, m.httpDuration,
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
