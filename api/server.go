// Package api is Sluice's REST API (Echo v4, JSON, bearer tokens): plugins, batch exports,
// backfills, runs, logs, API tokens, health, Prometheus metrics and the OpenAPI document.
//
// It reads and writes storage directly and calls a Controller (implemented by the host)
// for anything that needs the plugin runtime, the scheduler or the run queue.
// docs/api.md documents every endpoint; openapi.json (served at /api/v1/openapi.json) is
// the machine-readable contract, and a test keeps it in step with the registered routes.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
	_ "time/tzdata" // IANA time zones even on hosts without zoneinfo

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/sluicehq/sluice/storage"
)

// Defaults for Config.
const (
	DefaultMaxBodyBytes    = 1 << 20  // 1 MiB for JSON bodies
	DefaultMaxPluginBytes  = 64 << 20 // 64 MiB for a plugin upload
	DefaultMaxBackfillRuns = 10000    // intervals in one backfill request
)

// Config configures the API. Zero values take the defaults.
type Config struct {
	// AdminToken (SLUICE_API_TOKEN) has every scope. Empty: only tokens stored with
	// POST /api/v1/tokens authenticate (and none can be created through the API).
	AdminToken string
	// MaxBodyBytes bounds JSON request bodies (default 1 MiB); larger ones get 413.
	MaxBodyBytes int64
	// MaxPluginBytes bounds a plugin upload (default 64 MiB); larger ones get 413.
	MaxPluginBytes int64
	// MaxBackfillRuns bounds the intervals one backfill request may cover (default 10000).
	MaxBackfillRuns int
	// MetricsRequireAuth makes GET /metrics need a token with the read scope. Default
	// false: /metrics is open like /healthz, for Prometheus on a loopback or private
	// listener; it exposes counts and durations, never configs or secrets.
	MetricsRequireAuth bool
	// Logger receives internal errors (never sent to clients). Default slog.Default().
	Logger *slog.Logger
	// Now is the clock used to validate backfill ranges. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxPluginBytes <= 0 {
		c.MaxPluginBytes = DefaultMaxPluginBytes
	}
	if c.MaxBackfillRuns <= 0 {
		c.MaxBackfillRuns = DefaultMaxBackfillRuns
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Deps are the API's collaborators.
type Deps struct {
	DB      *storage.DB // exports, runs, backfills, logs, plugins and tokens
	Control Controller  // what needs the host
	// Metrics is served at /metrics; nil: New creates one (Server.Metrics returns it).
	Metrics *Metrics
}

// Server is the REST API.
type Server struct {
	cfg     Config
	db      *storage.DB
	ctl     Controller
	metrics *Metrics
	log     *slog.Logger
	e       *echo.Echo
	routes  []Route
}

// Route is one registered endpoint (Path in Echo's syntax, ":id" for parameters).
type Route struct {
	Method string
	Path   string
	Scope  string // "" for no authentication
}

// New builds the API and registers its routes.
func New(cfg Config, deps Deps) *Server {
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, db: deps.DB, ctl: deps.Control, metrics: deps.Metrics, log: cfg.Logger}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.log.Error("api: panic", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err, "stack", string(stack))
		return err
	}}))
	e.Use(s.metrics.httpMiddleware)
	s.e = e
	s.register()
	return s
}

// Handler is the API as an http.Handler.
func (s *Server) Handler() http.Handler { return s.e }

// Echo exposes the router so that other endpoints (the capture endpoint) can be added.
func (s *Server) Echo() *echo.Echo { return s.e }

// Metrics is the registry served at /metrics, for the runner to report to.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Routes lists the endpoints New registered (not those added later through Echo).
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// Start listens on addr and serves until Shutdown; it returns nil after a Shutdown.
func (s *Server) Start(addr string) error {
	s.e.Server.ReadHeaderTimeout = 10 * time.Second
	s.e.Server.IdleTimeout = 2 * time.Minute
	if err := s.e.Start(addr); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting requests and waits for those in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.e.Shutdown(ctx) }

// add registers a route with its scope ("" = public) and body limit (0 = JSON limit).
func (s *Server) add(method, path, scope string, limit int64, h echo.HandlerFunc) {
	var mw []echo.MiddlewareFunc
	if scope != "" {
		mw = append(mw, s.auth(scope))
	}
	if limit == 0 {
		limit = s.cfg.MaxBodyBytes
	}
	mw = append(mw, bodyLimit(limit))
	s.e.Add(method, path, h, mw...)
	s.routes = append(s.routes, Route{Method: method, Path: path, Scope: scope})
}

func (s *Server) register() {
	const (
		get, post, patch, del = http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete
		read, write, admin    = storage.ScopeRead, storage.ScopeWrite, storage.ScopeAdmin
	)
	s.add(get, "/healthz", "", 0, s.healthz)
	s.add(get, "/readyz", "", 0, s.readyz)
	metricsScope := ""
	if s.cfg.MetricsRequireAuth {
		metricsScope = read
	}
	s.add(get, "/metrics", metricsScope, 0, echo.WrapHandler(s.metrics.Handler()))
	s.add(get, "/api/v1/openapi.json", "", 0, s.openAPI)

	s.add(post, "/api/v1/tokens", admin, 0, s.createToken)
	s.add(get, "/api/v1/tokens", admin, 0, s.listTokens)
	s.add(del, "/api/v1/tokens/:token_id", admin, 0, s.deleteToken)

	s.add(post, "/api/v1/plugins", admin, s.cfg.MaxPluginBytes, s.installPlugin)
	s.add(get, "/api/v1/plugins", read, 0, s.listPlugins)
	s.add(get, "/api/v1/plugins/:name", read, 0, s.getPlugin)
	s.add(get, "/api/v1/plugins/:name/config.md", read, 0, s.pluginConfigDoc)
	s.add(del, "/api/v1/plugins/:name", admin, 0, s.deletePlugin)
	s.add(get, "/api/v1/plugins/:name/versions/:version", read, 0, s.getPluginVersion)
	s.add(del, "/api/v1/plugins/:name/versions/:version", admin, 0, s.deletePluginVersion)

	const ex = "/api/v1/batch_exports"
	s.add(post, ex, write, 0, s.createExport)
	s.add(get, ex, read, 0, s.listExports)
	s.add(get, ex+"/:id", read, 0, s.getExport)
	s.add(patch, ex+"/:id", write, 0, s.updateExport)
	s.add(del, ex+"/:id", write, 0, s.deleteExport)
	s.add(post, ex+"/:id/pause", write, 0, s.pauseExport)
	s.add(post, ex+"/:id/unpause", write, 0, s.unpauseExport)
	s.add(post, ex+"/:id/test", write, 0, s.testExport)
	s.add(post, ex+"/:id/upgrade", write, 0, s.upgradeExport)

	s.add(post, ex+"/:id/backfills", write, 0, s.createBackfill)
	s.add(get, ex+"/:id/backfills", read, 0, s.listBackfills)
	s.add(get, ex+"/:id/backfills/:backfill_id", read, 0, s.getBackfill)
	s.add(post, ex+"/:id/backfills/:backfill_id/cancel", write, 0, s.cancelBackfill)

	s.add(get, ex+"/:id/runs", read, 0, s.listRuns)
	s.add(get, ex+"/:id/runs/:run_id", read, 0, s.getRun)
	s.add(post, ex+"/:id/runs/:run_id/retry", write, 0, s.retryRun)
	s.add(post, ex+"/:id/runs/:run_id/cancel", write, 0, s.cancelRun)
	s.add(get, ex+"/:id/runs/:run_id/logs", read, 0, s.runLogs)
	s.add(get, ex+"/:id/logs", read, 0, s.exportLogs)
}

// ErrDraining is what Controller.Ready returns while the host shuts down: /readyz answers
// 503 "draining" so that a load balancer stops sending requests, while requests already
// sent are still served until the host has handed back its runs (docs/deploy.md).
var ErrDraining = errors.New("draining: the host is shutting down")

// healthz is liveness: the process serves HTTP. It stays 200 while the host drains, so
// that an orchestrator does not kill a host that is finishing its runs.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz is readiness: the host is not draining and its database answers.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	if err := s.ctl.Ready(ctx); errors.Is(err, ErrDraining) {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeNotReady, Message: "draining"}
	} else if err != nil {
		s.log.Warn("api: not ready", "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeNotReady, Message: "not ready"}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// bodyLimit caps the request body: 413 when Content-Length says too much up front, or
// when reading goes past the limit (http.MaxBytesError, mapped by the error handler).
func bodyLimit(n int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.ContentLength > n {
				return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
					Message: "request body exceeds the limit of " + formatBytes(n)}
			}
			r.Body = http.MaxBytesReader(c.Response(), r.Body, n)
			return next(c)
		}
	}
}

func formatBytes(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return itoa(n>>20) + " MiB"
	case n%(1<<10) == 0:
		return itoa(n>>10) + " KiB"
	}
	return itoa(n) + " bytes"
}

// apiPath converts an Echo path (":id") to an OpenAPI one ("{id}").
func apiPath(p string) string {
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if strings.HasPrefix(part, ":") {
			parts[i] = "{" + part[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}
