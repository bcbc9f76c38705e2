package console_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// served is a real `sluice serve` process on a loopback port.
type served struct {
	url, token string
	stop       func()
}

// serveDemo builds cmd/sluice and starts `sluice serve --demo` on the embedded defaults
// (SQLite and the embedded event store in a fresh data dir, the first-party plugins of
// bin/plugins) on a free 127.0.0.1 port, as `make run` does, and waits until it is ready.
// Nothing can leave loopback: no warehouse endpoint but a closed loopback port, no
// instance metadata. The process is stopped (SIGTERM, then SIGKILL) by stop or at cleanup;
// its log is shown when the test failed.
func serveDemo(t *testing.T) *served {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	s := &served{url: "http://" + addr, token: "sluice_admin_console_" + hex.EncodeToString(raw[:])}

	cmd := exec.Command(bin, "serve", "--addr", addr, "--data-dir", filepath.Join(dir, "data"),
		"--plugins-dir", filepath.Join(root, "bin", "plugins"), "--lock", filepath.Join(root, "plugins.lock"), "--demo")
	cmd.Dir = dir
	// The embedded defaults: no SLUICE_* setting of the caller's environment applies.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "SLUICE_API_TOKEN="+s.token, "AWS_EC2_METADATA_DISABLED=true",
		// No warehouse capability may reach the cloud: a closed loopback port.
		"SLUICE_BIGQUERY_ENDPOINT=http://127.0.0.1:1/", "SLUICE_SNOWFLAKE_ENDPOINT=http://127.0.0.1:1")
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(60 * time.Second): // it lets running batches finish for up to 30 s
				t.Log("sluice serve did not stop after SIGTERM: killing it")
				_ = cmd.Process.Kill()
				<-exited
			}
			if waitErr != nil {
				t.Logf("sluice serve exited: %v", waitErr)
			}
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("sluice serve log (last lines):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		})
	}
	t.Cleanup(s.stop)

	// Ready once /readyz answers 200; seeding the demo comes first. Generous: a loaded
	// 2-core machine may take a while.
	deadline := time.Now().Add(2 * time.Minute)
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := hc.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatalf("sluice serve exited before it was ready: %v", waitErr)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("sluice serve did not become ready within 2 minutes")
		}
	}
}

// api calls the served REST API with the admin token.
func (s *served) api(t *testing.T, method, path string, body any, want int) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return out
}

// TestBrowserServe drives the console of a real `sluice serve --demo` (what `make run`
// starts) in headless chromium: sign in, the demo export in the list, its page with
// Completed runs of the demo's historic export, and no secret in any page's source.
func TestBrowserServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts sluice serve")
	}
	chromiumPath(t) // skip (or fail in CI) before building anything
	s := serveDemo(t)
	ctx := browser(t)

	// Every page the test sees is checked for the secrets it knows.
	const secret = "wJalrXUtnFEMI-serve-console-secret"
	const keyID = "AKIDSERVECONSOLE"
	noSecret := func(page string) {
		t.Helper()
		src := value(t, ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		for _, v := range []string{s.token, secret, keyID} {
			if strings.Contains(src, v) {
				t.Fatalf("%s: the page source holds a secret (%.12s…)", page, v)
			}
		}
	}

	t.Run("sign in", func(t *testing.T) {
		run(t, ctx, chromedp.Navigate(s.url+"/"), chromedp.WaitVisible("#token"))
		noSecret("sign-in")
		run(t, ctx,
			chromedp.SendKeys("#token", s.token),
			chromedp.Submit("#token"),
			chromedp.WaitVisible(`//h1[contains(., "Batch exports")]`),
		)
		// the session cookie is HttpOnly: the page's script cannot read it, nor the token
		if c := value(t, ctx, chromedp.Evaluate[string](`document.cookie`)); strings.Contains(c, s.token) || strings.Contains(c, "sluice_session") {
			t.Errorf("document.cookie exposes the session: %q", c)
		}
	})

	t.Run("the exports list shows the demo export", func(t *testing.T) {
		run(t, ctx, chromedp.Navigate(s.url+"/exports"), chromedp.WaitVisible("table"))
		noSecret("exports")
		text := value(t, ctx, chromedp.Text(chromedp.CSS("table")))
		for _, w := range []string{"demo", "s3", "every 5 minutes", "Active"} {
			if !strings.Contains(text, w) {
				t.Errorf("the list lacks %q: %s", w, text)
			}
		}
	})

	t.Run("the demo export's page shows Completed runs", func(t *testing.T) {
		run(t, ctx,
			chromedp.Navigate(s.url+"/exports"), chromedp.WaitVisible("table"),
			chromedp.Click(`//table//a[text()="demo"]`),
			chromedp.WaitVisible("#runs"),
		)
		if loc := value(t, ctx, chromedp.Location()); !strings.Contains(loc, "/exports/") {
			t.Fatalf("the demo link went to %s", loc)
		}
		// The demo backfills its last hour; runs complete within seconds on an idle
		// machine. Reload until one shows Completed (the page also refreshes itself).
		deadline := time.Now().Add(90 * time.Second)
		for {
			n := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#runs .state-completed').length`))
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no Completed run on the demo export's page after 90 s: %s", value(t, ctx, chromedp.Text(chromedp.CSS("#runs"))))
			}
			run(t, ctx, chromedp.Sleep(2*time.Second), chromedp.Reload(), chromedp.WaitVisible("#runs"))
		}
		noSecret("demo export")
		// a completed run of the demo's seeded hour exported records
		recs := value(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#runs tbody tr')]
			.filter(tr => tr.querySelector('.state-completed')).map(tr => tr.querySelector('td.num').textContent.trim())`))
		some := false
		for _, r := range recs {
			n, err := strconv.Atoi(r)
			some = some || (err == nil && n > 0)
		}
		if !some {
			t.Errorf("no Completed run exported records: %v", recs)
		}
		if bf := value(t, ctx, chromedp.Text(`//section[h2[@id="bf-h"]]`)); !strings.Contains(bf, "runs") {
			t.Errorf("the demo's historic export is not listed: %q", bf)
		}
	})

	t.Run("a secret is never in the page source", func(t *testing.T) {
		cfg := localConfig("serve-secret")
		cfg["aws_access_key_id"], cfg["aws_secret_access_key"] = keyID, secret
		out := s.api(t, http.MethodPost, "/api/v1/batch_exports", map[string]any{"name": "with-secret", "interval": "hour", "paused": true,
			"destination": map[string]any{"type": "s3", "config": cfg}}, http.StatusCreated)
		id, _ := out["id"].(string)
		if id == "" {
			t.Fatalf("no id: %v", out)
		}
		run(t, ctx, chromedp.Navigate(s.url+"/exports/"+id), chromedp.WaitVisible("#runs"))
		noSecret("export with a secret")
		run(t, ctx, chromedp.Navigate(s.url+"/exports/"+id+"/edit"), chromedp.WaitVisible("#c-aws_secret_access_key"))
		noSecret("edit form")
		if ph := value(t, ctx, chromedp.Evaluate[string](`document.querySelector('#c-aws_secret_access_key').placeholder`)); !strings.Contains(ph, "set") {
			t.Errorf("the secret field does not say it is set: %q", ph)
		}
		run(t, ctx, chromedp.Navigate(s.url+"/exports"), chromedp.WaitVisible("table"))
		noSecret("exports")
		run(t, ctx, chromedp.Navigate(s.url+"/plugins"), chromedp.WaitVisible("#p-s3"))
		noSecret("plugins")
	})

	s.stop()
}
