package chaos_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/chaos"
)

// services skips (or, in CI, fails) without the loopback servers, and checks the plugins
// are built.
func services(t *testing.T) chaos.Services {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real sluice processes for minutes")
	}
	svc, missing := chaos.ServicesFromEnv()
	if len(missing) > 0 {
		if os.Getenv("SLUICE_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%v not set", missing)
		}
		t.Skipf("%v not set (eval \"$(bash .ci/services.sh)\")", missing)
	}
	if _, err := os.Stat(filepath.Join(chaos.RepoRoot(), "bin", "plugins", "s3.wasm")); err != nil {
		t.Fatalf("run `make plugins` first: %v", err)
	}
	return svc
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary builds sluice once per test process.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-chaos-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin, buildErr = chaos.Build(context.Background(), dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// workDir is a directory for the hosts' data and logs: kept when SLUICE_CHAOS_DIR names
// one (to read the logs after a failure), a test temp dir otherwise.
func workDir(t *testing.T, name string) string {
	if d := os.Getenv("SLUICE_CHAOS_DIR"); d != "" {
		p := filepath.Join(d, name+"-"+time.Now().UTC().Format("20060102T150405"))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("hosts' data and logs in %s", p)
		return p
	}
	return t.TempDir()
}

// TestChaosKills is the kill -9 suite: the short version by default, the full one with
// SLUICE_CHAOS_KILLS (make chaos sets 50), sized by SLUICE_CHAOS_INTERVALS too.
func TestChaosKills(t *testing.T) {
	svc := services(t)
	cfg := chaos.Short()
	if v := os.Getenv("SLUICE_CHAOS_KILLS"); v != "" {
		cfg = chaos.Full()
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("SLUICE_CHAOS_KILLS=%q: %v", v, err)
		}
		cfg.Kills = n
	}
	if v := os.Getenv("SLUICE_CHAOS_INTERVALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("SLUICE_CHAOS_INTERVALS=%q: %v", v, err)
		}
		cfg.BackfillIntervals = n
	}
	prepare(t, &cfg, "kills")
	rep, err := chaos.Run(context.Background(), svc, cfg)
	t.Logf("chaos report:\n%s", rep.Summary())
	writeReport(t, "kills", rep)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("the chaos run found problems (logs in %s)", cfg.Dir)
	}
	if rep.Kills != cfg.Kills {
		t.Errorf("%d kills done, want %d", rep.Kills, cfg.Kills)
	}
	runs, completed, _, events, _, _, _ := rep.Totals()
	if runs == 0 || completed != runs || events == 0 || rep.Capture.Events == 0 {
		t.Errorf("nothing was exercised: %d runs, %d completed, %d events, %d captured", runs, completed, events, rep.Capture.Events)
	}
}

// sharedCache is the wazero compilation cache every host of every test shares.
var sharedCache = filepath.Join(os.TempDir(), "sluice-chaos-wazero-cache")

// prepare fills the process fields of cfg.
func prepare(t *testing.T, cfg *chaos.Config, name string) {
	cfg.Bin = binary(t)
	cfg.Dir = workDir(t, name)
	cfg.Logf = t.Logf
	cfg.SharedCache = sharedCache
}

// full reports whether the full suite was asked for (make chaos).
func full() bool { return os.Getenv("SLUICE_CHAOS_KILLS") != "" }

// writeReport appends the summary to SLUICE_CHAOS_REPORT when set (make chaos/soak).
func writeReport(t *testing.T, name string, rep chaos.Report) {
	p := os.Getenv("SLUICE_CHAOS_REPORT")
	if p == "" {
		return
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	_, _ = f.WriteString("## " + name + " " + rep.Started.UTC().Format(time.RFC3339) + "\n" + rep.Summary() + "\n")
}

// TestSoak runs live capture and 5-minute exports for SLUICE_SOAK_DURATION (make soak),
// samples every host's RSS and goroutines every 10 s, and fails if either grows without
// bound (chaos.Growth) or an event is lost or doubled.
func TestSoak(t *testing.T) {
	v := os.Getenv("SLUICE_SOAK_DURATION")
	if v == "" {
		t.Skip("SLUICE_SOAK_DURATION not set (make soak DURATION=30m)")
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("SLUICE_SOAK_DURATION=%q: %v", v, err)
	}
	svc := services(t)
	cfg := chaos.SoakConfig(d)
	prepare(t, &cfg, "soak")
	rep, err := chaos.Run(context.Background(), svc, cfg)
	t.Logf("soak report:\n%s", rep.Summary())
	writeReport(t, "soak "+v, rep)
	var csv strings.Builder
	csv.WriteString("seconds,host,pid,rss_bytes,goroutines\n")
	for _, s := range rep.Samples {
		fmt.Fprintf(&csv, "%.0f,%d,%d,%d,%d\n", s.At.Sub(rep.Started).Seconds(), s.Host, s.Pid, s.RSS, s.Goroutines)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "soak-samples.csv"), []byte(csv.String()), 0o644); err != nil {
		t.Error(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	growths := chaos.Growths(rep.Samples, 5*time.Minute)
	var lines []string
	for _, g := range growths {
		lines = append(lines, g.String())
		if g.Unbounded() {
			t.Errorf("grows without bound: %s", g)
		}
	}
	t.Logf("growth (after a 5-minute warmup):\n%s", strings.Join(lines, "\n"))
	if p := os.Getenv("SLUICE_CHAOS_REPORT"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			fmt.Fprintf(f, "growth (after a 5-minute warmup):\n%s\n\n", strings.Join(lines, "\n"))
			f.Close()
		}
	}
	if len(growths) == 0 {
		t.Error("no samples")
	}
	if !rep.OK() {
		t.Fatalf("the soak found problems (logs in %s)", cfg.Dir)
	}
}
