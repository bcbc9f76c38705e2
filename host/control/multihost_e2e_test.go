package control_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/storage"
)

// TestReaperSettlesRunsWithoutJobs: a run left Running with no queue job (its job was
// discarded, or a host died and the job is gone) ends Failed with an error saying why; a
// run left Starting because its enqueue failed gets its job and completes.
func TestReaperSettlesRunsWithoutJobs(t *testing.T) {
	e := newEnv(t, "", func(c *control.Config) { c.ReapInterval = 200 * time.Millisecond; c.ReapAfter = 300 * time.Millisecond })
	id := e.createExport("reap", localConfig("reap"))
	ctx := context.Background()
	db := e.host.DB()
	hour := t0.Truncate(time.Hour)
	orphan, _, err := db.CreateRunIfAbsent(ctx, storage.Run{ExportID: id, IntervalStart: hour.Add(-6 * time.Hour), IntervalEnd: hour.Add(-5 * time.Hour), Status: storage.StatusRunning})
	if err != nil {
		t.Fatal(err)
	}
	waiting, _, err := db.CreateRunIfAbsent(ctx, storage.Run{ExportID: id, IntervalStart: hour.Add(-5 * time.Hour), IntervalEnd: hour.Add(-4 * time.Hour), Status: storage.StatusStarting})
	if err != nil {
		t.Fatal(err)
	}
	rs := e.waitRuns(id, "the reaper to settle both runs", allFinished(2))
	for _, r := range rs {
		switch r.ID {
		case orphan.ID:
			if r.Status != "Failed" || !strings.Contains(r.LatestError, "queue job") {
				t.Errorf("orphaned Running run: %s %q, want Failed saying its job ended", r.Status, r.LatestError)
			}
		case waiting.ID:
			if r.Status != "Completed" || r.RecordsCompleted == 0 {
				t.Errorf("Starting run without a job: %s with %d records, want Completed", r.Status, r.RecordsCompleted)
			}
		}
	}
}

// TestPluginModuleFromDatabase: host a installs the first-party plugins and stops; host b,
// on the same PostgreSQL with its own data dir and no plugins of its own, runs an export of
// one: it fetches the module by sha256, checks it and caches it. A module whose stored
// bytes do not match their sha256 is refused, and a module missing from the database is
// stored again by the first host that starts with it on disk.
func TestPluginModuleFromDatabase(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	db := freshDatabase(t, url)
	root := repoRoot(t)
	key := strings.Repeat("ab", 32)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cache := runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")}
	ctx := context.Background()
	dirA := t.TempDir()
	startStop := func(dir string, locked bool) {
		cfg := control.Config{DataDir: dir, DatabaseURL: db, SecretKey: key, Logger: quiet, Runtime: cache}
		if locked {
			cfg.PluginsDir, cfg.LockFile = filepath.Join(root, "bin", "plugins"), filepath.Join(root, "plugins.lock")
		}
		a, err := control.New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	startStop(dirA, true)

	b := newEnv(t, db, func(c *control.Config) { c.PluginsDir, c.LockFile, c.SecretKey = "", "", key })
	id := b.createExportTo("example", "from-db", map[string]any{"bucket_name": "fromdb", "endpoint_url": "local"})
	b.backfill(id, t0.Truncate(time.Hour).Add(-2*time.Hour), t0.Truncate(time.Hour).Add(-time.Hour))
	rs := b.waitRuns(id, "host b to run the plugin host a installed", allFinished(1))
	if rs[0].Status != "Completed" || rs[0].RecordsCompleted == 0 {
		t.Fatalf("run on host b: %+v", rs[0])
	}
	p, err := b.host.DB().GetLatestPluginByName(ctx, "example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.dataDir, "plugins", p.SHA256+".wasm")); err != nil {
		t.Errorf("host b did not cache the module it fetched: %v", err)
	}

	// Stored bytes that are not the module's: refused by a host without the module.
	sqlDB := b.host.DB().SQL()
	if _, err := sqlDB.ExecContext(ctx, "UPDATE plugin_modules SET module = $1 WHERE sha256 = $2", []byte("\x00asm\x01\x00\x00\x00"), p.SHA256); err != nil {
		t.Fatal(err)
	}
	c, err := control.New(ctx, control.Config{DataDir: t.TempDir(), DatabaseURL: db, SecretKey: key, Logger: quiet, Runtime: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop(context.Background()) }()
	err = c.ValidateDestination(ctx, &p, map[string]any{"bucket_name": "x"}, nil)
	if err == nil || !strings.Contains(err.Error(), "refusing to run it") {
		t.Errorf("a tampered module: %v, want a refusal", err)
	}

	// A module missing from the database (installed before migration 3): host a, which has
	// it on disk, stores it when it starts.
	if _, err := sqlDB.ExecContext(ctx, "DELETE FROM plugin_modules"); err != nil {
		t.Fatal(err)
	}
	startStop(dirA, false)
	missing, err := b.host.DB().PluginsWithoutModule(ctx)
	if err != nil || len(missing) != 0 {
		t.Fatalf("plugins without a stored module after host a's start: %d (%v), want 0", len(missing), err)
	}
	wasm, err := b.host.DB().GetPluginModule(ctx, p.SHA256)
	if err != nil || runtime.SHA256(wasm) != p.SHA256 {
		t.Fatalf("module stored back: %d bytes (%v)", len(wasm), err)
	}
}

// Hosts sharing a fresh database that start together all install the locked plugins at
// once: the loser of each insert finds the winner's record and starts too (make cluster
// lost a host to "duplicate key" before).
func TestHostsStartTogetherOnAFreshDatabase(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	db := freshDatabase(t, url)
	root := repoRoot(t)
	key := strings.Repeat("cd", 32)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cache := runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")}
	ctx := context.Background()
	const hosts = 3
	var hs []*control.Host
	for range hosts {
		h, err := control.New(ctx, control.Config{DataDir: t.TempDir(), DatabaseURL: db, SecretKey: key, Logger: quiet, Runtime: cache,
			PluginsDir: filepath.Join(root, "bin", "plugins"), LockFile: filepath.Join(root, "plugins.lock")})
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	errs := make(chan error, hosts)
	for _, h := range hs {
		go func() { errs <- h.Start(ctx) }()
	}
	for range hosts {
		if err := <-errs; err != nil {
			t.Errorf("a host did not start: %v", err)
		}
	}
	ps, err := hs[0].DB().ListPlugins(ctx)
	for _, h := range hs {
		if err := h.Stop(ctx); err != nil {
			t.Error(err)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, p := range ps {
		seen[p.Name+"@"+p.Version]++
	}
	if len(seen) == 0 {
		t.Fatal("no plugin recorded")
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("%s recorded %d times", v, n)
		}
	}
}
