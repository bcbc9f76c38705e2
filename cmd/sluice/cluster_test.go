package main

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" database/sql driver to create the test database
)

// cluster runs real `sluice serve` processes on one PostgreSQL database of its own, each
// host with its own data dir and address, all with one SLUICE_SECRET_KEY.
type cluster struct {
	t     *testing.T
	bin   string
	dir   string
	dbURL string
	key   string
	token string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts several real processes for a minute or more")
	}
	pg := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if pg == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var k [32]byte
	_, _ = rand.Read(k[:])
	return &cluster{t: t, bin: bin, dir: dir, dbURL: freshPostgres(t, pg), key: hex.EncodeToString(k[:]), token: "cluster-test-token"}
}

// freshPostgres creates a database of the test's own and drops it afterwards.
func freshPostgres(t *testing.T, url string) string {
	t.Helper()
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("multihost_%d", time.Now().UnixNano())
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if a, err := sql.Open("pgx", url); err == nil {
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

// host is one `sluice serve` process of a cluster.
type host struct {
	c       *cluster
	name    string
	base    string
	dataDir string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
}

// start starts a host named name (its SLUICE_HOST_ID) without first-party plugins: every
// plugin comes through the API, so a host that did not install one must fetch it from the
// database. It returns once /readyz answers 200.
func (c *cluster) start(name string, extra ...string) *host {
	t := c.t
	t.Helper()
	h := &host{c: c, name: name, dataDir: filepath.Join(c.dir, name), logPath: filepath.Join(c.dir, name+".log"), done: make(chan struct{})}
	addr := freeAddr(t)
	h.base = "http://" + addr
	args := append([]string{"serve", "--addr", addr, "--data-dir", h.dataDir, "--database-url", c.dbURL, "--api-token", c.token,
		"--plugins-dir", filepath.Join(c.dir, "no-plugins"), "--lock", "", "--settle-delay", "1s", "--workers", "2",
		"--schedule-sync", "1s"}, extra...)
	cmd := exec.Command(c.bin, args...)
	logf, err := os.Create(h.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true", "SLUICE_SECRET_KEY="+c.key, "SLUICE_HOST_ID="+name,
		"SLUICE_BIGQUERY_ENDPOINT=http://127.0.0.1:1/", "SLUICE_SNOWFLAKE_ENDPOINT=http://127.0.0.1:1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.cmd = cmd
	go func() { h.exitErr = cmd.Wait(); logf.Close(); close(h.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-h.done
		if t.Failed() {
			b, _ := os.ReadFile(h.logPath)
			lines := strings.Split(string(b), "\n")
			t.Logf("%s log (last lines):\n%s", name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	waitHealthy(t, h.base)
	return h
}

// call sends a JSON request with the admin token and decodes the answer into out.
func (h *host) call(method, path string, body, out any) int {
	h.c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	return h.send(req, out)
}

func (h *host) send(req *http.Request, out any) int {
	h.c.t.Helper()
	req.Header.Set("Authorization", "Bearer "+h.c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.c.t.Fatalf("%s %s on %s: %v", req.Method, req.URL.Path, h.name, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	if resp.StatusCode >= 300 {
		h.c.t.Logf("%s %s on %s: HTTP %d %s", req.Method, req.URL.Path, h.name, resp.StatusCode, raw)
	}
	return resp.StatusCode
}

// install uploads a plugin module through this host's API.
func (h *host) install(path string, capabilities string) {
	h.c.t.Helper()
	wasm, err := os.ReadFile(path)
	if err != nil {
		h.c.t.Fatalf("run `make plugins` first: %v", err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("module", filepath.Base(path))
	_, _ = fw.Write(wasm)
	_ = mw.WriteField("capabilities", capabilities)
	_ = mw.Close()
	req, _ := http.NewRequest("POST", h.base+"/api/v1/plugins", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if code := h.send(req, nil); code != http.StatusCreated && code != http.StatusOK {
		h.c.t.Fatalf("install %s on %s: HTTP %d", path, h.name, code)
	}
}

// stop sends SIGTERM and waits for the process to exit, at most d.
func (h *host) stop(d time.Duration) time.Duration {
	h.c.t.Helper()
	began := time.Now()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		h.c.t.Fatal(err)
	}
	select {
	case <-h.done:
	case <-time.After(d):
		h.c.t.Fatalf("%s did not exit within %s of SIGTERM", h.name, d)
	}
	if h.exitErr != nil {
		h.c.t.Errorf("%s exited with %v after SIGTERM", h.name, h.exitErr)
	}
	return time.Since(began)
}

func (h *host) log() string {
	b, _ := os.ReadFile(h.logPath)
	return string(b)
}

type clusterRun struct {
	ID, Status       string
	LatestError      string `json:"latest_error"`
	Attempt          int
	RecordsCompleted int64     `json:"records_completed"`
	IntervalStart    time.Time `json:"interval_start"`
	IntervalEnd      time.Time `json:"interval_end"`
}

func (h *host) runs(exportID string) []clusterRun {
	var out struct{ Results []clusterRun }
	h.call("GET", "/api/v1/batch_exports/"+exportID+"/runs?limit=200", nil, &out)
	return out.Results
}

// waitRuns polls the runs of an export through h until ok, at most d.
func (h *host) waitRuns(exportID, what string, d time.Duration, ok func([]clusterRun) bool) []clusterRun {
	h.c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		rs := h.runs(exportID)
		if ok(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			h.c.t.Fatalf("waiting for %s: runs are %+v", what, rs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var ranOnHost = regexp.MustCompile(`^attempt (\d+) on host (\S+): exporting`)

// ranOn returns the host each attempt of a run ran on, oldest first, from the run's log.
func (h *host) ranOn(exportID, runID string) []string {
	var out struct {
		Results []struct{ Message string }
	}
	h.call("GET", "/api/v1/batch_exports/"+exportID+"/runs/"+runID+"/logs?limit=200", nil, &out)
	var hosts []string
	for _, l := range out.Results {
		if m := ranOnHost.FindStringSubmatch(l.Message); m != nil {
			hosts = append([]string{m[2]}, hosts...) // the log is newest first
		}
	}
	return hosts
}

// objectStore is a loopback S3 (gofakes3) that counts the objects written per key, and
// can hold uploads until their client gives up.
type objectStore struct {
	url string

	mu      sync.Mutex
	puts    map[string]int // completed writes per key
	hold    int            // the next this many uploads hang until abandoned
	held    int
	dropped int
}

func newObjectStore(t *testing.T, bucket string) *objectStore {
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	fake := gofakes3.New(backend).Server()
	s := &objectStore{puts: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			fake.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.mu.Lock()
		hold := s.hold > 0
		if hold {
			s.hold--
			s.held++
		}
		s.mu.Unlock()
		if hold {
			<-r.Context().Done() // the uploading attempt was stopped
			s.mu.Lock()
			s.dropped++
			s.mu.Unlock()
			return
		}
		rec := httptest.NewRecorder()
		fake.ServeHTTP(rec, r)
		multipart := r.URL.Query().Has("uploadId")
		if rec.Code < 300 && (r.Method == http.MethodPut && !multipart || r.Method == http.MethodPost && multipart) {
			// A single PUT, or the completion of a multipart upload: one object written.
			s.mu.Lock()
			s.puts[strings.TrimPrefix(r.URL.Path, "/"+bucket+"/")]++
			s.mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *objectStore) writes() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.puts))
	for k, v := range s.puts {
		out[k] = v
	}
	return out
}

func exampleExport(name, bucket, endpoint, interval string, offset int64) map[string]any {
	return map[string]any{"name": name, "interval": interval, "interval_offset": offset,
		"destination": map[string]any{"type": "example", "config": map[string]any{"bucket_name": bucket, "endpoint_url": endpoint,
			"region": "us-east-1", "aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "secret"}}}
}

// TestClusterThreeHosts: three `sluice serve` processes on one PostgreSQL share all the
// work. A plugin installed through host a runs on b and c, which fetch it from the
// database; a backfill requested through c spreads over the hosts; a schedule changed
// through b reaches a's and c's schedulers (b is stopped before the interval ends, so only
// they can create its run), and the interval runs exactly once.
func TestClusterThreeHosts(t *testing.T) {
	c := newCluster(t)
	root, _ := filepath.Abs("../..")
	store := newObjectStore(t, "cluster")
	a, b, cc := c.start("host-a"), c.start("host-b"), c.start("host-c")

	a.install(filepath.Join(root, "bin/plugins/example.wasm"), "object")
	var exp struct{ ID string }
	now := time.Now().UTC()
	// An hourly schedule whose next end is half an hour away: nothing fires on its own.
	far := int64(now.Add(30*time.Minute).Sub(now.Truncate(time.Hour)) / time.Second % 3600)
	if code := a.call("POST", "/api/v1/batch_exports", exampleExport("cluster", "cluster", store.url, "hour", far), &exp); code != http.StatusCreated {
		t.Fatalf("create export on host-a: HTTP %d", code)
	}

	// A backfill through host c: 11 or 12 hourly intervals, run by whichever host is free.
	var bf struct {
		Progress struct {
			TotalRuns int `json:"total_runs"`
		}
	}
	if code := cc.call("POST", "/api/v1/batch_exports/"+exp.ID+"/backfills", map[string]any{
		"start_at": now.Add(-14 * time.Hour).Format(time.RFC3339), "end_at": now.Add(-2 * time.Hour).Format(time.RFC3339)}, &bf); code != http.StatusCreated {
		t.Fatalf("backfill on host-c: HTTP %d", code)
	}
	rs := b.waitRuns(exp.ID, "the backfill's runs to complete", 3*time.Minute, func(rs []clusterRun) bool {
		if len(rs) != bf.Progress.TotalRuns {
			return false
		}
		for _, r := range rs {
			if r.Status != "Completed" {
				return false
			}
		}
		return true
	})
	if bf.Progress.TotalRuns < 10 {
		t.Fatalf("backfill has %d runs, want 11 or 12", bf.Progress.TotalRuns)
	}
	perHost := map[string]int{}
	for _, r := range rs {
		on := a.ranOn(exp.ID, r.ID)
		if len(on) != 1 {
			t.Errorf("run %s has %d attempts (%v), want 1", r.ID, len(on), on)
		}
		for _, h := range on {
			perHost[h]++
		}
	}
	t.Logf("backfill of %d runs ran on %v", len(rs), perHost)
	if len(perHost) < 2 {
		t.Errorf("every run ran on one host: %v", perHost)
	}
	// Hosts b and c never had the module: they fetched it by sha256 and cached it.
	for _, h := range []*host{b, cc} {
		if perHost[h.name] == 0 {
			continue
		}
		if !strings.Contains(h.log(), "plugin module fetched from the database and cached") {
			t.Errorf("%s ran the plugin without fetching its module from the database", h.name)
		}
		if m, _ := filepath.Glob(filepath.Join(h.dataDir, "plugins", "*.wasm")); len(m) != 1 {
			t.Errorf("%s caches %d modules, want 1", h.name, len(m))
		}
	}

	// The schedule changes through host b: the next end is 20 s away (the other hosts sync
	// every second; a slow machine still leaves them time). Host b then stops, so
	// that host a's or host c's scheduler must create the run: both learn the change from
	// the database, and both fire the end.
	now = time.Now().UTC()
	next := now.Add(20 * time.Second).Truncate(time.Second)
	offset := int64(next.Sub(next.Truncate(time.Hour)) / time.Second)
	if code := b.call("PATCH", "/api/v1/batch_exports/"+exp.ID, map[string]any{"interval_offset": offset}, nil); code != http.StatusOK {
		t.Fatalf("patch on host-b: HTTP %d", code)
	}
	b.stop(30 * time.Second)
	// A host that ran no backfill run compiles the plugin first: allow for a slow machine.
	rs = a.waitRuns(exp.ID, "the scheduled run to complete", 3*time.Minute, func(rs []clusterRun) bool {
		for _, r := range rs {
			if r.IntervalEnd.Equal(next) && r.Status == "Completed" {
				return true
			}
		}
		return false
	})
	fired := regexp.MustCompile(`interval end fired.*end=` + regexp.QuoteMeta(next.Format(time.RFC3339)) + `.*created_here=(true|false)`)
	created := 0
	for _, h := range []*host{a, cc} {
		m := fired.FindAllStringSubmatch(h.log(), -1)
		if len(m) != 1 {
			t.Errorf("%s fired the end %s %d times, want once (its scheduler did not take the change made through host-b?)", h.name, next.Format(time.RFC3339), len(m))
			continue
		}
		if m[0][1] == "true" {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d hosts created the run of %s, want exactly 1", created, next.Format(time.RFC3339))
	}

	// Each interval exactly once: one run per interval end, one object written per run.
	ends := map[time.Time]bool{}
	for _, r := range rs {
		if ends[r.IntervalEnd] {
			t.Errorf("two runs end at %s", r.IntervalEnd)
		}
		ends[r.IntervalEnd] = true
	}
	writes := store.writes()
	if len(writes) != len(rs) {
		t.Errorf("%d objects written for %d runs: %v", len(writes), len(rs), writes)
	}
	for k, n := range writes {
		if n != 1 {
			t.Errorf("object %s written %d times", k, n)
		}
	}
	t.Logf("%d runs, one per interval, one object each; the schedule change through host-b took effect on host-a and host-c", len(rs))
}

// TestDrainHandsBackRun: host a is exporting a run whose upload hangs when it gets
// SIGTERM. While it drains, its /readyz answers 503 and its API still serves; after the
// grace period it hands the run back and exits, and host b completes the run: exactly one
// object written, no run left Running.
func TestDrainHandsBackRun(t *testing.T) {
	c := newCluster(t)
	root, _ := filepath.Abs("../..")
	store := newObjectStore(t, "drain")
	store.hold = 1 // host a's upload hangs
	a := c.start("host-a", "--shutdown-grace", "3s")
	a.install(filepath.Join(root, "bin/plugins/example.wasm"), "object")
	var exp struct{ ID string }
	if code := a.call("POST", "/api/v1/batch_exports", exampleExport("drain", "drain", store.url, "hour", 0), &exp); code != http.StatusCreated {
		t.Fatalf("create export: HTTP %d", code)
	}
	end := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	if code := a.call("POST", "/api/v1/batch_exports/"+exp.ID+"/backfills", map[string]any{
		"start_at": end.Add(-time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, nil); code != http.StatusCreated {
		t.Fatalf("backfill: HTTP %d", code)
	}
	a.waitRuns(exp.ID, "host a's upload to hang", time.Minute, func(rs []clusterRun) bool {
		store.mu.Lock()
		held := store.held
		store.mu.Unlock()
		return len(rs) == 1 && rs[0].Status == "Running" && held == 1
	})
	b := c.start("host-b")

	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Draining: not ready, still serving.
	deadline := time.Now().Add(3 * time.Second)
	for {
		resp, err := http.Get(a.base + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "draining") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("host a's /readyz did not turn 503 draining after SIGTERM (last: %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rs := a.runs(exp.ID); len(rs) != 1 {
		t.Fatalf("host a's API while draining: %+v", rs)
	}
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("host a did not exit within 30 s of SIGTERM with a 3 s grace")
	}
	if a.exitErr != nil {
		t.Errorf("host a exited with %v", a.exitErr)
	}
	if !strings.Contains(a.log(), "run handed back on shutdown") {
		t.Errorf("host a did not hand the run back")
	}
	handedBack := time.Now()
	rs := b.waitRuns(exp.ID, "host b to complete the handed-back run", 3*time.Minute, func(rs []clusterRun) bool {
		return len(rs) == 1 && rs[0].Status != "Running" && rs[0].Status != "Starting" && rs[0].Status != "FailedRetryable"
	})
	if rs[0].Status != "Completed" {
		t.Fatalf("the handed-back run ended %s: %s", rs[0].Status, rs[0].LatestError)
	}
	on := b.ranOn(exp.ID, rs[0].ID)
	if len(on) != 2 || on[0] != "host-a" || on[1] != "host-b" {
		t.Errorf("the run's attempts ran on %v, want [host-a host-b]", on)
	}
	writes := store.writes()
	if len(writes) != 1 {
		t.Errorf("objects written: %v, want one", writes)
	}
	for k, n := range writes {
		if n != 1 {
			t.Errorf("object %s written %d times", k, n)
		}
	}
	t.Logf("host a handed the run back on SIGTERM; host b completed it %s later (attempts on %v)", time.Since(handedBack).Round(time.Millisecond), on)
}
