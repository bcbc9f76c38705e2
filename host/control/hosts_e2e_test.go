package control_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/runtime"
)

// TestCancelAcrossHosts: two hosts share one PostgreSQL. Host B executes a run whose upload
// hangs; the cancel arrives through host A's API. Host B must stop the run within seconds,
// and must not record it Completed when its upload would have finished.
func TestCancelAcrossHosts(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	db := freshDatabase(t, url)
	b := newEnv(t, db, func(c *control.Config) { c.RunCheckInterval = 500 * time.Millisecond })

	// An S3 whose uploads hang until their request is abandoned.
	backend := s3mem.New()
	if err := backend.CreateBucket("slow"); err != nil {
		t.Fatal(err)
	}
	fake := gofakes3.New(backend).Server()
	var hanging, abandoned atomic.Int32
	s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			// Read the body first: the server notices a client gone only after that.
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			hanging.Add(1)
			select {
			case <-r.Context().Done():
				abandoned.Add(1)
				return
			case <-time.After(time.Minute):
			}
		}
		fake.ServeHTTP(w, r)
	}))
	defer s3.Close()

	// Host A: the same database, not started (it works no jobs): only its API is used.
	root := repoRoot(t)
	key, err := os.ReadFile(filepath.Join(b.dataDir, "secret.key")) // hosts share SLUICE_SECRET_KEY
	if err != nil {
		t.Fatal(err)
	}
	a, err := control.New(context.Background(), control.Config{
		DataDir: t.TempDir(), DatabaseURL: db, SecretKey: string(key), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Runtime:          runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")},
		BigQueryEndpoint: "http://127.0.0.1:1/", SnowflakeEndpoint: "http://127.0.0.1:1",
		PluginsDir: filepath.Join(root, "bin", "plugins"), LockFile: filepath.Join(root, "plugins.lock"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	srvA := httptest.NewServer(api.New(api.Config{AdminToken: token, Now: b.clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, api.Deps{DB: a.DB(), Control: control.API{Host: a}}).Handler())
	defer srvA.Close()
	viaA := &env{t: t, url: srvA.URL}

	id := b.createExport("slow", map[string]any{"bucket_name": "slow", "endpoint_url": s3.URL, "region": "us-east-1",
		"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "secret", "file_format": "JSONLines"})
	end := t0.Truncate(time.Hour)
	b.backfill(id, end.Add(-time.Hour), end)
	rs := b.waitRuns(id, "the run to hang in its upload", func(rs []run) bool {
		return len(rs) == 1 && rs[0].Status == "Running" && hanging.Load() > 0
	})
	cancelled := time.Now()
	viaA.do("POST", fmt.Sprintf("/api/v1/batch_exports/%s/runs/%s/cancel", id, rs[0].ID), nil, http.StatusAccepted)
	for abandoned.Load() == 0 {
		if time.Since(cancelled) > 10*time.Second {
			t.Fatalf("host B still uploads 10 s after host A cancelled the run")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("host B stopped the run %s after the cancel on host A", time.Since(cancelled).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // host B records what it records
	rs = b.runs(id)
	if rs[0].Status != "Cancelled" {
		t.Fatalf("run is %s after a cancel on another host", rs[0].Status)
	}
}
