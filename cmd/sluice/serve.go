package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/console"
	"github.com/sluicehq/sluice/host/capture"
	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/httpcap"
	"github.com/sluicehq/sluice/host/membudget"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/host/sqlcap"
)

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", env("SLUICE_HTTP_ADDR", "127.0.0.1:8080"), "API and capture listen address (SLUICE_HTTP_ADDR)")
	dataDir := fs.String("data-dir", env("SLUICE_DATA_DIR", "data"), "data directory (SLUICE_DATA_DIR)")
	dbURL := fs.String("database-url", env("SLUICE_DATABASE_URL", ""), "empty: SQLite in the data dir; postgres://... (SLUICE_DATABASE_URL)")
	token := fs.String("api-token", env("SLUICE_API_TOKEN", ""), "admin API token; empty: generated into DATA_DIR/api-token (SLUICE_API_TOKEN)")
	secretKey := fs.String("secret-key", env("SLUICE_SECRET_KEY", ""), "key(s) encrypting destination secrets; empty: a key file in the data dir (SLUICE_SECRET_KEY)")
	chDSN := fs.String("clickhouse-dsn", env("SLUICE_CLICKHOUSE_DSN", ""), "ClickHouse source; empty: embedded store (SLUICE_CLICKHOUSE_DSN)")
	chCaptureDef, chCaptureErr := envBool("SLUICE_CLICKHOUSE_CAPTURE")
	chCapture := fs.Bool("clickhouse-capture", chCaptureDef, "serve /capture and /batch into the ClickHouse source's events table (several hosts sharing one source); off: capture only with the embedded store (SLUICE_CLICKHOUSE_CAPTURE)")
	captureKey := fs.String("capture-key", env("SLUICE_CAPTURE_KEY", "phc_sluice_dev"), "project key for /capture and /batch (SLUICE_CAPTURE_KEY)")
	pluginsDir := fs.String("plugins-dir", env("SLUICE_PLUGINS_DIR", "bin/plugins"), "built first-party plugins (SLUICE_PLUGINS_DIR)")
	lock := fs.String("lock", env("SLUICE_PLUGINS_LOCK", "plugins.lock"), "plugins.lock pinning the first-party plugins (SLUICE_PLUGINS_LOCK)")
	workers := fs.Int("workers", 4, "runs executed at once by this host")
	backfillPar := fs.Int("backfill-parallelism", envInt("SLUICE_BACKFILL_PARALLELISM", 2), "backfill runs executed at once by this host, all backfills together, oldest request first; scheduled runs have their own workers (SLUICE_BACKFILL_PARALLELISM)")
	settle := fs.Duration("settle-delay", 30*time.Second, "wait after an interval ends before exporting it")
	runTimeout := fs.Duration("run-timeout", time.Hour, "deadline of one run attempt")
	rescueAfter := fs.Duration("rescue-after", 0, "a run left Running by a dead host is retried after this (default run-timeout + 1m)")
	partMiB := fs.Int("s3-part-size-mib", envInt("SLUICE_S3_PART_SIZE_MIB", 0), "S3 multipart part size in MiB, 5 to 5120; 0: sized from --memory-limit-mib (50 with the budget off); an upload holds up to concurrency + 1 parts in memory (SLUICE_S3_PART_SIZE_MIB)")
	memLimit := fs.String("memory-limit-mib", env("SLUICE_MEMORY_LIMIT_MIB", strconv.Itoa(membudget.DefaultLimit>>20)), "memory budget of this process in MiB, or off: sets the Go soft memory limit (unless GOMEMLIMIT is set, which wins), sizes S3 parts and upload concurrency, and makes runs wait for budget (SLUICE_MEMORY_LIMIT_MIB)")
	bqEndpoint := fs.String("bigquery-endpoint", env("SLUICE_BIGQUERY_ENDPOINT", ""), "BigQuery-compatible REST endpoint used without authentication, for emulators and tests (SLUICE_BIGQUERY_ENDPOINT)")
	gcsEndpoint := fs.String("gcs-endpoint", env("SLUICE_GCS_ENDPOINT", ""), "Google Cloud Storage JSON API base URL on loopback (http://127.0.0.1:PORT/storage/v1/: fake-gcs-server, an emulator) used without authentication by every GCS export, for tests (SLUICE_GCS_ENDPOINT)")
	sfEndpoint := fs.String("snowflake-endpoint", env("SLUICE_SNOWFLAKE_ENDPOINT", ""), "Snowflake-compatible address (http://127.0.0.1:PORT) replacing <account>.snowflakecomputing.com, for tests (SLUICE_SNOWFLAKE_ENDPOINT)")
	ambientDef, ambientErr := envBool("SLUICE_S3_AMBIENT_CREDENTIALS")
	s3Ambient := fs.Bool("s3-ambient-credentials", ambientDef, "let S3 exports without an access key use this host's own AWS credentials (environment, shared files, instance or container role) for any bucket and endpoint they name: only when every user with the write scope may use them (SLUICE_S3_AMBIENT_CREDENTIALS)")
	httpPrivDef, httpPrivErr := envBool("SLUICE_HTTP_ALLOW_PRIVATE")
	pluginPolicy := pluginRegistryFlags(fs) // pluginreg.go
	httpPrivate := fs.Bool("http-allow-private", httpPrivDef, "let plugins' http capability reach loopback, private and link-local addresses (refused by default; for a receiver on this network or tests) (SLUICE_HTTP_ALLOW_PRIVATE)")
	sqlPrivDef, sqlPrivErr := envBoolDefault("SLUICE_SQL_ALLOW_PRIVATE", true)
	sqlPrivate := fs.Bool("sql-allow-private", sqlPrivDef, "let plugins' sql capability reach databases on private addresses (RFC 1918, fc00::/7, CGNAT; allowed by default: a self-hosted database on the local network) (SLUICE_SQL_ALLOW_PRIVATE)")
	sqlLoopDef, sqlLoopErr := envBool("SLUICE_SQL_ALLOW_LOOPBACK")
	sqlLoopback := fs.Bool("sql-allow-loopback", sqlLoopDef, "let plugins' sql capability reach databases on loopback addresses (refused by default: this host's own databases listen there; for tests and single-machine setups) (SLUICE_SQL_ALLOW_LOOPBACK)")
	pluginMemMiB := fs.Int("plugin-memory-budget-mib", envInt("SLUICE_PLUGIN_MEMORY_BUDGET_MIB", runtime.DefaultMemoryBudgetBytes>>20), "linear memory all plugin instances together may reach, in MiB; each instance reserves its memory limit (256 MiB by default) from it (SLUICE_PLUGIN_MEMORY_BUDGET_MIB)")
	alertURL := fs.String("alert-webhook-url", env("SLUICE_ALERT_WEBHOOK_URL", ""), "http(s) URL receiving failure and auto-pause alerts of exports without a webhook of their own (SLUICE_ALERT_WEBHOOK_URL)")
	alertFormat := fs.String("alert-format", env("SLUICE_ALERT_FORMAT", "json"), "alert body: json or slack (SLUICE_ALERT_FORMAT)")
	alertPeriod := fs.String("alert-period", env("SLUICE_ALERT_PERIOD", "24h"), "least time between two alerts of one export (SLUICE_ALERT_PERIOD)")
	publicURL := fs.String("public-url", env("SLUICE_PUBLIC_URL", ""), "base URL of the links in alerts; default http://ADDR (SLUICE_PUBLIC_URL)")
	hostID := fs.String("host-id", env("SLUICE_HOST_ID", ""), "this host's name in run logs, to tell which of several hosts ran a run; empty: the machine's host name (SLUICE_HOST_ID)")
	graceDef, graceErr := envDuration("SLUICE_SHUTDOWN_GRACE", time.Minute)
	grace := fs.Duration("shutdown-grace", graceDef, "on SIGTERM or SIGINT, how long running runs may take to finish before they are handed back to another host (SLUICE_SHUTDOWN_GRACE)")
	syncDef, syncErr := envDuration("SLUICE_SCHEDULE_SYNC", 5*time.Second)
	syncEvery := fs.Duration("schedule-sync", syncDef, "how often this host takes schedule changes made through other hosts (SLUICE_SCHEDULE_SYNC)")
	countDef, countErr := envDuration("SLUICE_COUNT_TIMEOUT", control.DefaultCountTimeout)
	countTimeout := fs.Duration("count-timeout", countDef, "cap on one count query on the event source: a backfill's estimate and total_records_count, the earliest event, a run's records_total_count (SLUICE_COUNT_TIMEOUT)")
	missingDef, missingErr := envDuration("SLUICE_MISSING_DATA_INTERVAL", time.Hour)
	missingEvery := fs.Duration("missing-data-interval", missingDef, "how often the missing-data check compares the source's counts with completed runs; 0: never (SLUICE_MISSING_DATA_INTERVAL)")
	windowDef, windowErr := envDuration("SLUICE_MISSING_DATA_WINDOW", 24*time.Hour)
	missingWindow := fs.Duration("missing-data-window", windowDef, "how far back, by interval end, the missing-data check looks (SLUICE_MISSING_DATA_WINDOW)")
	demoFlag := fs.Bool("demo", false, "seed synthetic events and a demo export writing files under DATA_DIR/exports/demo")
	debug := fs.Bool("debug", false, "debug logging")
	pprofAddr := fs.String("pprof-addr", env("SLUICE_PPROF_ADDR", ""), "serve net/http/pprof on this loopback address, unauthenticated; empty: off (SLUICE_PPROF_ADDR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if ambientErr != nil && !flagSet(fs, "s3-ambient-credentials") {
		return ambientErr
	}
	if httpPrivErr != nil && !flagSet(fs, "http-allow-private") {
		return httpPrivErr
	}
	if sqlPrivErr != nil && !flagSet(fs, "sql-allow-private") {
		return sqlPrivErr
	}
	if sqlLoopErr != nil && !flagSet(fs, "sql-allow-loopback") {
		return sqlLoopErr
	}
	pluginTrust, pluginRegistry, err := pluginPolicy()
	if err != nil {
		return err
	}
	if chCaptureErr != nil && !flagSet(fs, "clickhouse-capture") {
		return chCaptureErr
	}
	if *chCapture && *chDSN == "" {
		return errors.New("--clickhouse-capture (SLUICE_CLICKHOUSE_CAPTURE) needs --clickhouse-dsn")
	}
	if graceErr != nil && !flagSet(fs, "shutdown-grace") {
		return graceErr
	}
	if syncErr != nil && !flagSet(fs, "schedule-sync") {
		return syncErr
	}
	if countErr != nil && !flagSet(fs, "count-timeout") {
		return countErr
	}
	if missingErr != nil && !flagSet(fs, "missing-data-interval") {
		return missingErr
	}
	if windowErr != nil && !flagSet(fs, "missing-data-window") {
		return windowErr
	}
	if *missingEvery < 0 || *missingWindow <= 0 {
		return fmt.Errorf("--missing-data-interval (0: never) must not be negative and --missing-data-window must be positive, got %s and %s", *missingEvery, *missingWindow)
	}
	if *missingEvery == 0 {
		*missingEvery = -1 // control.Config: negative is never, 0 the default
	}
	if *countTimeout <= 0 {
		return fmt.Errorf("--count-timeout (SLUICE_COUNT_TIMEOUT) must be positive, got %s", *countTimeout)
	}
	if *syncEvery <= 0 {
		return fmt.Errorf("--schedule-sync (SLUICE_SCHEDULE_SYNC) must be positive, got %s", *syncEvery)
	}
	if *partMiB != 0 && (*partMiB < 5 || *partMiB > 5120) {
		return fmt.Errorf("--s3-part-size-mib (SLUICE_S3_PART_SIZE_MIB) must be 0 (from the memory budget) or an integer from 5 to 5120, got %d", *partMiB)
	}
	if err := loopbackURL(*gcsEndpoint); err != nil {
		return fmt.Errorf("--gcs-endpoint (SLUICE_GCS_ENDPOINT): %w", err)
	}
	if minMiB := runtime.DefaultMemoryLimitPages * 65536 >> 20; *pluginMemMiB < minMiB {
		return fmt.Errorf("--plugin-memory-budget-mib (SLUICE_PLUGIN_MEMORY_BUDGET_MIB) must be at least one instance's memory limit, %d MiB; got %d", minMiB, *pluginMemMiB)
	}
	alerts, err := alertConfig(*alertURL, *alertFormat, *alertPeriod, *publicURL, *addr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)
	if err := startPprof(*pprofAddr, logger); err != nil {
		return err
	}

	if err := os.MkdirAll(*dataDir, 0o750); err != nil {
		return err
	}
	if *token == "" {
		t, err := tokenFile(filepath.Join(*dataDir, "api-token"))
		if err != nil {
			return err
		}
		*token = t
		logger.Info("admin API token (set SLUICE_API_TOKEN to choose it)", "file", filepath.Join(*dataDir, "api-token"))
	}

	mem, err := setupMemory(memorySettings{limit: *memLimit, partMiB: *partMiB, slots: max(*workers, 1) + max(*backfillPar, 1),
		goMemLimit: os.Getenv("GOMEMLIMIT"), defaultPart: 50}, logger)
	if err != nil {
		return err
	}
	if *s3Ambient {
		logger.Warn("S3 exports without keys use this host's AWS credentials (--s3-ambient-credentials)")
	}
	cfg := control.Config{
		DataDir: *dataDir, DatabaseURL: *dbURL, SecretKey: *secretKey, ClickHouseDSN: *chDSN,
		PluginsDir: *pluginsDir, LockFile: *lock, Workers: *workers, SettleDelay: *settle, Logger: logger,
		RunTimeout: *runTimeout, RescueAfter: *rescueAfter, BigQueryEndpoint: *bqEndpoint,
		S3PartSize:           mem.partSize,
		S3Concurrency:        mem.conc,
		EncoderWorkers:       mem.encoders,
		S3AmbientCredentials: *s3Ambient,
		HTTP:                 httpcap.Config{AllowPrivate: *httpPrivate},
		SQL:                  sqlcap.Config{RefusePrivate: !*sqlPrivate, AllowLoopback: *sqlLoopback},
		PluginTrust:          pluginTrust,
		PluginRegistry:       pluginRegistry,
		BackfillParallelism:  *backfillPar,
		SnowflakeEndpoint:    *sfEndpoint,
		GCSEndpoint:          *gcsEndpoint,
		HostID:               *hostID,
		ScheduleSyncInterval: *syncEvery,
		CountTimeout:         *countTimeout,
		MissingDataInterval:  *missingEvery,
		MissingDataWindow:    *missingWindow,
		Runtime:              runtime.Config{MemoryBudgetBytes: uint64(*pluginMemMiB) << 20},
		Alerts:               alerts,
	}
	if mem.budget != nil {
		cfg.Memory = mem.budget
	}
	h, err := control.New(ctx, cfg)
	if err != nil {
		return err
	}
	metrics := api.NewMetrics()
	h.UseMetrics(metrics)
	if mem.budget != nil {
		metrics.Registry().MustRegister(mem.budget)
	}
	if err := h.Start(ctx); err != nil {
		_ = h.Stop(context.Background())
		return err
	}
	srv := api.New(api.Config{AdminToken: *token, Logger: logger}, api.Deps{DB: h.DB(), Control: control.API{Host: h}, Metrics: metrics})
	if ev := h.Events(); ev != nil {
		capture.Register(srv.Echo(), ev, capture.StaticKeys{*captureKey: 1}, nil)
	} else if *chCapture {
		// Acknowledged only once stored, and stored before its interval's run reads it.
		ch, err := source.NewClickHouse(ctx, source.ClickHouseConfig{DSN: *chDSN})
		if err != nil {
			_ = h.Stop(context.Background())
			return fmt.Errorf("clickhouse capture: %w", err)
		}
		defer ch.Close()
		capture.Register(srv.Echo(), source.CaptureInserter{CH: ch, MaxDelay: min(10*time.Second, *settle/2)}, capture.StaticKeys{*captureKey: 1}, nil)
	}
	if *demoFlag {
		if err := startDemo(ctx, h, srv.Handler(), *token, logger); err != nil {
			logger.Error("demo setup failed", "err", err)
		}
	}
	// The web console at "/"; every other path (the API, capture, probes) goes to srv.
	web := console.New(console.Config{Logger: logger}, srv.Handler())
	hs := &http.Server{Addr: *addr, Handler: web.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.ListenAndServe() }()
	logger.Info("sluice serving", "addr", "http://"+*addr, "data_dir", *dataDir, "database", dbKind(*dbURL), "source", sourceKind(*chDSN))

	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	// Drain (docs/deploy.md): /readyz turns 503 at once so the load balancer stops sending
	// requests, while the API keeps serving those it still gets; the host takes no new run
	// and its running runs get the grace period to finish; those that do not are cancelled
	// and handed back to the other hosts. Then the HTTP server stops, then storage closes.
	logger.Info("draining: no new runs; running runs may finish", "grace", *grace)
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if derr := h.Drain(sctx); derr != nil && err == nil {
		err = derr
	}
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	_ = hs.Shutdown(hctx)
	if serr := h.Stop(hctx); serr != nil && err == nil {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	logger.Info("stopped")
	return err
}

// envDuration reads a Go duration ("90s", "2m") from the environment: def when unset, an
// error naming the variable when it is not a duration of zero or more.
func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return def, fmt.Errorf("%s=%q is not a duration such as 90s or 2m", name, v)
	}
	return d, nil
}

// tokenFile returns the token stored at path, creating a random one (mode 0600) if absent.
func tokenFile(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	t := "sluice_admin_" + hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write api token: %w", err)
	}
	return t, nil
}

// flagSet reports whether the flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func dbKind(url string) string {
	if url == "" {
		return "sqlite"
	}
	return "postgres"
}

func sourceKind(dsn string) string {
	if dsn == "" {
		return "embedded"
	}
	return "clickhouse"
}

// loopbackURL accepts "" or an http(s) URL whose host is a loopback IP address (127.0.0.1,
// [::1]; not a name, which could resolve elsewhere): an endpoint used without
// authentication must not leave the machine.
func loopbackURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: must be a loopback address (http://127.0.0.1:PORT/storage/v1/)", raw)
	}
	return nil
}
