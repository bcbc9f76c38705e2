package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/console"
	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/internal/demo"
)

const adminToken = "test-admin-token"

// t0 is the fake clock's start: ten past the hour.
var t0 = time.Date(2026, 11, 20, 10, 10, 0, 0, time.UTC)

type env struct {
	t         *testing.T
	url       string
	root      string
	readToken string
}

func repoRoot(t *testing.T) string {
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "plugins", "s3.wasm")); err != nil {
		t.Fatalf("the first-party plugins are not built: run `make plugins` (or `make test`): %v", err)
	}
	return dir
}

// newEnv starts a whole host (as host/control's e2e tests do: storage, runtime, embedded
// source, scheduler on a fake clock, queue) behind the API with the console mounted at
// "/", on a loopback httptest server, with events around t0 and a read-only token.
func newEnv(t *testing.T) *env {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	root := repoRoot(t)
	clock := clockwork.NewFakeClockAt(t0)
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	h, err := control.New(ctx, control.Config{
		DataDir: t.TempDir(), PluginsDir: filepath.Join(root, "bin", "plugins"), LockFile: filepath.Join(root, "plugins.lock"),
		Clock: clock, SettleDelay: time.Second, Workers: 2, MaxAttempts: 3, RetryBase: 200 * time.Millisecond,
		BatchRecords: 500, Logger: logger,
		Runtime:          runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")},
		BigQueryEndpoint: "http://127.0.0.1:1/", SnowflakeEndpoint: "http://127.0.0.1:1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Config{AdminToken: adminToken, Logger: logger, Now: clock.Now}, api.Deps{DB: h.DB(), Control: control.API{Host: h}})
	web := console.New(console.Config{Logger: logger, Now: clock.Now}, srv.Handler())
	ts := httptest.NewServer(web.Handler())
	t.Cleanup(func() {
		ts.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := h.Stop(sctx); err != nil {
			t.Logf("stop: %v", err)
		}
	})
	if err := h.Events().Insert(ctx, demo.Events(3000, t0.Add(-24*time.Hour), t0.Add(time.Hour), 42)); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, url: ts.URL, root: root}
	tok := e.api(http.MethodPost, "/api/v1/tokens", map[string]any{"name": "viewer", "scopes": []string{"read"}}, http.StatusCreated)
	e.readToken, _ = tok["token"].(string)
	return e
}

// api calls the REST API directly with the admin token.
func (e *env) api(method, path string, body any, want int) map[string]any {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+adminToken)
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
		_ = json.Unmarshal(raw, &out)
	}
	return out
}

func (e *env) createExport(name string, config map[string]any) string {
	e.t.Helper()
	out := e.api(http.MethodPost, "/api/v1/batch_exports", map[string]any{"name": name, "interval": "hour",
		"destination": map[string]any{"type": "s3", "config": config}}, http.StatusCreated)
	return out["id"].(string)
}

func localConfig(bucket string) map[string]any {
	return map[string]any{"bucket_name": bucket, "endpoint_url": "local", "prefix": "events", "file_format": "JSONLines"}
}

// client is a cookie-keeping HTTP client that does not follow redirects.
type client struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (e *env) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: e.t, base: e.url, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([0-9a-f]+)"`)

func csrfOf(t *testing.T, html string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", html)
	}
	return m[1]
}

func (c *client) get(path string) (*http.Response, string) {
	c.t.Helper()
	resp, err := c.c.Get(c.base + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (c *client) post(path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// signIn signs in with token and returns the session's CSRF token.
func (c *client) signIn(token string) string {
	c.t.Helper()
	_, page := c.get("/signin")
	resp, body := c.post("/signin", url.Values{"csrf_token": {csrfOf(c.t, page)}, "token": {token}, "next": {"/exports"}})
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("sign-in: HTTP %d: %s", resp.StatusCode, body)
	}
	_, page = c.get("/exports")
	return csrfOf(c.t, page)
}
