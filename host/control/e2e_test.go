package control_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"github.com/google/uuid"
	"io"
	"io/fs"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/jonboulle/clockwork"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/internal/demo"
)

const token = "test-admin-token"

// t0 is the fake clock's start: ten past the hour.
var t0 = time.Date(2026, 11, 20, 10, 10, 0, 0, time.UTC)

type env struct {
	t       *testing.T
	clock   *clockwork.FakeClock
	host    *control.Host
	url     string
	dataDir string
	events  []abi.Event
}

func repoRoot(t *testing.T) string {
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "plugins", "s3.wasm")); err != nil {
		t.Fatalf("the first-party plugins are not built: run `make plugins` (or `make test`): %v", err)
	}
	return dir
}

// newEnv starts a whole host (storage, runtime, embedded source, scheduler on a fake
// clock, River queue) behind the real HTTP API, with the locked first-party plugins.
// Options adjust the host's config.
func newEnv(t *testing.T, databaseURL string, options ...func(*control.Config)) *env {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	root := repoRoot(t)
	dataDir := t.TempDir()
	clock := clockwork.NewFakeClockAt(t0)
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	cfg := control.Config{
		DataDir: dataDir, DatabaseURL: databaseURL, PluginsDir: filepath.Join(root, "bin", "plugins"), LockFile: filepath.Join(root, "plugins.lock"),
		Clock: clock, SettleDelay: time.Second, Workers: 2, MaxAttempts: 3, RetryBase: 200 * time.Millisecond,
		BatchRecords: 500, Logger: logger,
		// Shared by the tests: compiling each plugin under -race takes tens of seconds.
		Runtime: runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")},
		// Warehouses and GCS never reach Google or Snowflake from a test: a closed loopback
		// port unless the test points them at its fake.
		BigQueryEndpoint: "http://127.0.0.1:1/", SnowflakeEndpoint: "http://127.0.0.1:1",
		GCSEndpoint: "http://127.0.0.1:1/storage/v1/",
	}
	for _, o := range options {
		o(&cfg)
	}
	h, err := control.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Config{AdminToken: token, Logger: logger, Now: clock.Now}, api.Deps{DB: h.DB(), Control: control.API{Host: h}})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := h.Stop(sctx); err != nil {
			t.Logf("stop: %v", err)
		}
	})
	// Events inserted over the 50 hours before t0 and the 3 hours after it.
	evs := demo.Events(6000, t0.Add(-50*time.Hour), t0.Add(3*time.Hour), 42)
	if err := h.Events().Insert(ctx, evs); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, clock: clock, host: h, url: ts.URL, dataDir: dataDir, events: evs}
}

func (e *env) do(method, path string, body any, want int) map[string]any {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	out := map[string]any{}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

func (e *env) createExport(name string, config map[string]any) string {
	e.t.Helper()
	return e.createExportTo("s3", name, config)
}

func (e *env) createExportTo(plugin, name string, config map[string]any) string {
	e.t.Helper()
	out := e.do("POST", "/api/v1/batch_exports", map[string]any{
		"name": name, "interval": "hour", "destination": map[string]any{"type": plugin, "config": config},
	}, http.StatusCreated)
	id, _ := out["id"].(string)
	if id == "" {
		e.t.Fatalf("no id in %v", out)
	}
	return id
}

type run struct {
	ID               string    `json:"id"`
	Status           string    `json:"status"`
	IntervalStart    time.Time `json:"interval_start"`
	IntervalEnd      time.Time `json:"interval_end"`
	Attempt          int       `json:"attempt"`
	RecordsCompleted int64     `json:"records_completed"`
	LatestError      string    `json:"latest_error"`
}

func (e *env) runs(exportID string) []run {
	e.t.Helper()
	out := e.do("GET", "/api/v1/batch_exports/"+exportID+"/runs?limit=500", nil, http.StatusOK)
	b, _ := json.Marshal(out["results"])
	var rs []run
	if err := json.Unmarshal(b, &rs); err != nil {
		e.t.Fatalf("runs: %v in %v", err, out)
	}
	return rs
}

// waitRuns polls until cond holds for the export's runs.
func (e *env) waitRuns(exportID string, what string, cond func([]run) bool) []run {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		rs := e.runs(exportID)
		if cond(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; runs: %+v", what, rs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func allFinished(n int) func([]run) bool {
	return func(rs []run) bool {
		if len(rs) != n {
			return false
		}
		for _, r := range rs {
			if r.Status != "Completed" && r.Status != "Failed" && r.Status != "Cancelled" {
				return false
			}
		}
		return true
	}
}

// exactlyOnce fails the test unless uuids (read back from a destination) hold every source
// event inserted in [start, end) exactly once, and nothing else.
func (e *env) exactlyOnce(uuids []string, start, end time.Time) {
	e.t.Helper()
	got := map[string]bool{}
	for _, u := range uuids {
		if got[u] {
			e.t.Fatalf("event %s arrived twice", u)
		}
		got[u] = true
	}
	want := 0
	for _, ev := range e.events {
		if !ev.InsertedAt.Before(start) && ev.InsertedAt.Before(end) {
			want++
			if !got[uuid.UUID(ev.UUID).String()] {
				e.t.Fatalf("event %s inserted at %s is missing", uuid.UUID(ev.UUID), ev.InsertedAt)
			}
		}
	}
	if len(got) != want || want == 0 {
		e.t.Fatalf("the destination holds %d events, the source %d", len(got), want)
	}
}

func (e *env) countIn(start, end time.Time) int64 {
	var n int64
	for _, ev := range e.events {
		if !ev.InsertedAt.Before(start) && ev.InsertedAt.Before(end) {
			n++
		}
	}
	return n
}

// exported reads back every JSON Lines file under the bucket directory: uuid -> interval file.
func (e *env) exported(bucket string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	root := filepath.Join(e.dataDir, "exports", bucket)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".jsonl.gz") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var row struct {
				UUID       string `json:"uuid"`
				InsertedAt string `json:"_inserted_at"`
			}
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if prev, dup := out[row.UUID]; dup {
				return fmt.Errorf("event %s exported twice (%s and %s)", row.UUID, prev, path)
			}
			out[row.UUID] = path
		}
		return sc.Err()
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func localConfig(bucket string) map[string]any {
	return map[string]any{"bucket_name": bucket, "endpoint_url": "local", "prefix": "events",
		"file_format": "JSONLines", "compression": "gzip"}
}

func (e *env) install(path string, wasm []byte, caps string) (int, string) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("module", filepath.Base(path))
	_, _ = fw.Write(wasm)
	_ = mw.WriteField("capabilities", caps)
	_ = mw.Close()
	req, _ := http.NewRequest("POST", e.url+"/api/v1/plugins", &body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func TestEndToEnd(t *testing.T) { exercise(t, newEnv(t, "")) }

// The same scenarios with PostgreSQL as the metadata store and River on riverpgxv5.
func TestEndToEndPostgres(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	exercise(t, newEnv(t, freshDatabase(t, url)))
}

// freshDatabase creates an empty database for one test and drops it afterwards.
func freshDatabase(t *testing.T, url string) string { return freshDatabaseNamed(t, url, "sluice_e2e") }

// freshDatabaseNamed is freshDatabase with the database name's prefix.
func freshDatabaseNamed(t *testing.T, url, prefix string) string {
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", url)
		if err == nil {
			_, _ = a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			a.Close()
		}
	})
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func exercise(t *testing.T, e *env) {

	t.Run("plugins install through the API; hostile modules get a precise 4xx", func(t *testing.T) {
		e.t = t
		root := repoRoot(t)
		for _, name := range []string{"example", "rust-jsonl"} {
			path := filepath.Join(root, "bin", "plugins", name+".wasm")
			wasm, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			code, body := e.install(path, wasm, "object")
			if code != http.StatusCreated || !strings.Contains(body, `"sha256"`) || !strings.Contains(body, `"abi_version":"1.0"`) {
				t.Errorf("install %s: HTTP %d %s", name, code, body)
			}
		}
		cases := []struct {
			file, caps, want string
			status           int
		}{
			{"badimport.wasm", "", "open_socket", http.StatusUnprocessableEntity},
			{"future.wasm", "", "needs Sluice plugin ABI 1.9; this host provides 1.0", http.StatusUnprocessableEntity},
			{"nomarker.wasm", "", "marker", http.StatusUnprocessableEntity},
			{"badsig.wasm", "", "sluice_write_batch has signature", http.StatusUnprocessableEntity},
			{"badptr.wasm", "", "outside its", http.StatusUnprocessableEntity},
		}
		before, _ := json.Marshal(e.do("GET", "/api/v1/plugins", nil, http.StatusOK))
		for _, c := range cases {
			wasm, err := os.ReadFile(filepath.Join(root, "host", "runtime", "testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			code, body := e.install(c.file, wasm, c.caps)
			if code != c.status || !strings.Contains(body, c.want) {
				t.Errorf("%s: HTTP %d %s; want %d mentioning %q", c.file, code, body, c.status, c.want)
			}
		}
		// The s3 plugin asks for "object": installing it without the grant is refused.
		s3wasm, _ := os.ReadFile(filepath.Join(root, "bin", "plugins", "s3.wasm"))
		if code, body := e.install("s3.wasm", s3wasm, ""); code != http.StatusUnprocessableEntity || !strings.Contains(body, "object") {
			t.Errorf("s3 without grants: HTTP %d %s", code, body)
		}
		if code, body := e.install("x.wasm", []byte("not wasm at all"), ""); code != http.StatusBadRequest {
			t.Errorf("not wasm: HTTP %d %s", code, body)
		}
		after, _ := json.Marshal(e.do("GET", "/api/v1/plugins", nil, http.StatusOK))
		if !bytes.Equal(before, after) {
			t.Errorf("refused installs changed the plugin list:\n%s\n%s", before, after)
		}
		e.do("GET", "/readyz", nil, http.StatusOK)
	})

	t.Run("scheduled runs on a fake clock export their intervals", func(t *testing.T) {
		e.t = t
		id := e.createExport("scheduled", localConfig("sched"))
		for i := 1; i <= 3; i++ {
			e.clock.Advance(time.Hour) // fires at hh:00:01 (1 s settle delay)
			e.waitRuns(id, fmt.Sprintf("%d scheduled runs", i), allFinished(i))
		}
		rs := e.runs(id)
		var total int64
		for i, r := range rs { // newest first
			wantEnd := t0.Truncate(time.Hour).Add(time.Duration(3-i) * time.Hour)
			if !r.IntervalEnd.Equal(wantEnd) || !r.IntervalStart.Equal(wantEnd.Add(-time.Hour)) {
				t.Errorf("run %d covers [%s, %s), want [%s, %s)", i, r.IntervalStart, r.IntervalEnd, wantEnd.Add(-time.Hour), wantEnd)
			}
			if r.Status != "Completed" {
				t.Errorf("run %d is %s: %s", i, r.Status, r.LatestError)
			}
			if want := e.countIn(r.IntervalStart, r.IntervalEnd); r.RecordsCompleted != want {
				t.Errorf("run %d exported %d records, want %d", i, r.RecordsCompleted, want)
			}
			total += r.RecordsCompleted
		}
		if got := e.exported("sched"); int64(len(got)) != total || total == 0 {
			t.Errorf("files hold %d events, runs report %d", len(got), total)
		}
	})

	t.Run("a backfill over 48 hourly intervals creates exactly 48 runs", func(t *testing.T) {
		e.t = t
		id := e.createExport("backfilled", localConfig("bf"))
		end := t0.Truncate(time.Hour)
		start := end.Add(-48 * time.Hour)
		bf := e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
		rs := e.waitRuns(id, "48 backfill runs", allFinished(48))
		for _, r := range rs {
			if r.Status != "Completed" {
				t.Fatalf("run %s is %s: %s", r.ID, r.Status, r.LatestError)
			}
		}
		files := e.exported("bf")
		if want := e.countIn(start, end); int64(len(files)) != want {
			t.Errorf("backfill exported %d events, want %d", len(files), want)
		}
		got := e.do("GET", fmt.Sprintf("/api/v1/batch_exports/%s/backfills/%s", id, bf["id"]), nil, http.StatusOK)
		t.Logf("backfill: %v", got)

		// A retry re-runs one interval: attempt 2, the same deterministic file, no duplicates.
		r := rs[10]
		e.do("POST", fmt.Sprintf("/api/v1/batch_exports/%s/runs/%s/retry", id, r.ID), nil, http.StatusAccepted)
		e.waitRuns(id, "the retried run", func(rs []run) bool {
			for _, x := range rs {
				if x.ID == r.ID {
					return x.Status == "Completed" && x.Attempt == r.Attempt+1
				}
			}
			return false
		})
		if again := e.exported("bf"); len(again) != len(files) {
			t.Errorf("after the retry the files hold %d events, before %d", len(again), len(files))
		}
	})

	t.Run("a non-retryable destination error fails the run with its message", func(t *testing.T) {
		e.t = t
		s3 := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
		defer s3.Close()
		cfg := map[string]any{"bucket_name": "no-such-bucket", "endpoint_url": s3.URL, "region": "us-east-1",
			"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "secret", "file_format": "JSONLines"}
		id := e.createExport("missing-bucket", cfg)
		end := t0.Truncate(time.Hour)
		e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": end.Add(-time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
		rs := e.waitRuns(id, "the failed run", allFinished(1))
		if rs[0].Status != "Failed" || rs[0].Attempt != 1 || !strings.Contains(rs[0].LatestError, "NoSuchBucket") {
			t.Fatalf("want Failed after one attempt with NoSuchBucket, got %+v", rs[0])
		}
	})

	t.Run("a retryable destination error is retried and then completes", func(t *testing.T) {
		e.t = t
		backend := s3mem.New()
		if err := backend.CreateBucket("flaky"); err != nil {
			t.Fatal(err)
		}
		var failures atomic.Int32
		failures.Store(6) // more than one attempt's own part retries
		fake := gofakes3.New(backend).Server()
		s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && failures.Add(-1) >= 0 {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
				return
			}
			fake.ServeHTTP(w, r)
		}))
		defer s3.Close()
		cfg := map[string]any{"bucket_name": "flaky", "endpoint_url": s3.URL, "region": "us-east-1",
			"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "secret", "file_format": "JSONLines", "compression": "gzip"}
		id := e.createExport("flaky", cfg)
		end := t0.Truncate(time.Hour)
		e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": end.Add(-time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
		rs := e.waitRuns(id, "the flaky run", allFinished(1))
		if rs[0].Status != "Completed" || rs[0].Attempt < 2 {
			t.Fatalf("want Completed after a retry, got %+v", rs[0])
		}
		logs := e.do("GET", "/api/v1/batch_exports/"+id+"/runs/"+rs[0].ID+"/logs", nil, http.StatusOK)
		if b, _ := json.Marshal(logs); !strings.Contains(string(b), "will retry") {
			t.Errorf("the run's log does not mention the retry: %s", b)
		}
	})
}
