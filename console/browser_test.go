package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium ($SLUICE_CHROMIUM first). It skips the test when
// chromium is missing, unless SLUICE_REQUIRE_SERVICES=1 (CI), where it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("SLUICE_CHROMIUM")
	if path == "" {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		if os.Getenv("SLUICE_REQUIRE_SERVICES") == "1" {
			t.Fatal("chromium is not installed (apt-get install chromium, or make deps) and SLUICE_REQUIRE_SERVICES=1")
		}
		t.Skip("chromium is not installed: apt-get install chromium (make deps)")
	}
	return path
}

// browser starts Debian's chromium headless, loopback only, with a fresh profile. It
// skips the test when chromium is missing, unless SLUICE_REQUIRE_SERVICES=1 (CI).
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	// the first Do starts the browser, which lives as long as bctx (no timeout on it)
	if err := chromedp.Do(bctx); err != nil {
		cancelB()
		cancelA()
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelT := context.WithTimeout(bctx, 4*time.Minute)
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	return ctx
}

// screenshot saves a full-page PNG under $SLUICE_CONSOLE_SCREENSHOTS (docs/console when
// regenerating the docs); nothing when unset.
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("SLUICE_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		t.Error(err)
	}
}

func run(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// value runs one action and returns its value.
func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fetchStatus posts from the page with fetch and returns the HTTP status.
func fetchStatus(t *testing.T, ctx context.Context, path string, withCSRF bool) int {
	t.Helper()
	body := "new URLSearchParams()"
	if withCSRF {
		body = `new URLSearchParams({csrf_token: document.querySelector('input[name=csrf_token]').value})`
	}
	js := fmt.Sprintf(`fetch(%q, {method: "POST", body: %s, credentials: "same-origin", redirect: "manual"}).then(r => r.status)`, path, body)
	return value(t, ctx, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
}

func TestBrowser(t *testing.T) {
	// The host first (it installs every locked plugin, which takes minutes under -race on
	// a busy machine), then the browser, whose 4-minute budget is for the pages alone.
	e := newEnv(t)
	// An export whose runs the retry and chart use.
	demoID := e.createExport("demo", localConfig("demo"))
	e.api("POST", "/api/v1/batch_exports/"+demoID+"/backfills", map[string]any{
		"start_at": t0.Truncate(time.Hour).Add(-12 * time.Hour).Format(time.RFC3339),
		"end_at":   t0.Truncate(time.Hour).Add(-6 * time.Hour).Format(time.RFC3339)}, 201)
	ctx := browser(t)
	long := chromedp.WithPollingTimeout(90 * time.Second)

	t.Run("sign in", func(t *testing.T) {
		run(t, ctx, chromedp.Navigate(e.url+"/"), chromedp.WaitVisible("#token"))
		screenshot(t, ctx, "signin")
		run(t, ctx,
			chromedp.SendKeys("#token", adminToken),
			chromedp.Submit("#token"),
			chromedp.WaitVisible(`//h1[contains(., "Batch exports")]`),
		)
	})

	var createdURL string
	t.Run("create a local S3 export through the generated form, with a field error", func(t *testing.T) {
		run(t, ctx, chromedp.Navigate(e.url+"/exports/new?type=s3"), chromedp.WaitVisible("#c-bucket_name"))
		// the generated form: enum as select, secret as password, integer as number; every input labelled
		ok := value(t, ctx, chromedp.Evaluate[bool](`document.querySelector('#c-file_format').tagName === 'SELECT' &&
			document.querySelector('#c-aws_secret_access_key').type === 'password' &&
			document.querySelector('#c-max_file_size_mb').type === 'number' &&
			[...document.querySelectorAll('input:not([type=hidden]),select,textarea')].every(i => i.labels && i.labels.length > 0)`))
		if !ok {
			t.Fatal("the form is not generated from the manifest as expected, or an input has no label")
		}
		run(t, ctx,
			chromedp.SendKeys("#f-name", "console-s3"),
			chromedp.SendKeys("#c-endpoint_url", "local"),
			chromedp.SetValue("#c-compression", "gzip"),
			chromedp.Click(`//button[text()="Create export"]`),
			chromedp.WaitVisible(`#c-bucket_name[aria-invalid="true"]`),
		)
		errText := value(t, ctx, chromedp.Text(`//input[@id="c-bucket_name"]/following-sibling::p[contains(@class,"field-error")]`))
		screenshot(t, ctx, "export-form-error")
		if !strings.Contains(errText, "required") {
			t.Fatalf("bucket_name error next to the field: %q", errText)
		}
		run(t, ctx,
			chromedp.SendKeys("#c-bucket_name", "console"),
			chromedp.Click(`//button[text()="Create export"]`),
			chromedp.WaitVisible(`//p[contains(., "Export created.")]`),
		)
		createdURL = value(t, ctx, chromedp.Location())
		if !strings.Contains(createdURL, "/exports/") {
			t.Fatalf("after create: %s", createdURL)
		}
	})

	t.Run("start a historic export and watch its runs reach Completed", func(t *testing.T) {
		if createdURL == "" {
			t.Skip("no export")
		}
		end := t0.Truncate(time.Hour).Add(-2 * time.Hour)
		start := end.Add(-4 * time.Hour)
		run(t, ctx,
			chromedp.Navigate(strings.Split(createdURL, "?")[0]),
			chromedp.WaitVisible("#bf-start"),
			chromedp.SetValue("#bf-start", start.Format("2006-01-02T15:04")),
			chromedp.SetValue("#bf-end", end.Format("2006-01-02T15:04")),
			chromedp.Click(`//button[text()="Create historic export"]`),
			chromedp.WaitVisible(`//p[contains(., "Historic export started.")]`),
		)
		// console.js refreshes the runs table while runs are active: no reload here
		value(t, ctx, chromedp.Poll[bool](`document.querySelectorAll('#runs .state-completed').length === 4`, long))
		run(t, ctx, chromedp.Reload(), chromedp.WaitVisible("#bf-h"))
		if bf := value(t, ctx, chromedp.Text(`//section[h2[@id="bf-h"]]//tbody`)); !strings.Contains(bf, "4/4 runs") {
			t.Errorf("backfill progress: %q", bf)
		}
	})

	t.Run("retry a run", func(t *testing.T) {
		run(t, ctx, chromedp.Navigate(e.url+"/exports/"+demoID), chromedp.WaitVisible("#runs"))
		value(t, ctx, chromedp.Poll[bool](`document.querySelectorAll('#runs .state-completed').length === 6`, long))
		run(t, ctx,
			chromedp.Reload(), chromedp.WaitVisible("#runs"),
			chromedp.Click(chromedp.CSS(`#runs form[action$="/retry"] button`)),
			chromedp.WaitVisible(`//p[contains(., "Run queued again.")]`),
		)
		value(t, ctx, chromedp.Poll[bool](`[...document.querySelectorAll('#runs tbody tr')].some(tr => tr.textContent.includes('attempt 2') && tr.querySelector('.state-completed') !== null)`, long))
		run(t, ctx, chromedp.Reload(), chromedp.WaitVisible("#runs"))
		screenshot(t, ctx, "export")
		run(t, ctx,
			chromedp.Click(chromedp.CSS(`#runs td a[href*="/runs/"]`)),
			chromedp.WaitVisible("#logs-h"),
		)
		screenshot(t, ctx, "run-logs")
	})

	t.Run("a failing destination shows its runs' errors and marks them on the chart", func(t *testing.T) {
		cfg := localConfig("broken")
		cfg["endpoint_url"], cfg["region"] = "http://127.0.0.1:1", "us-east-1"
		cfg["aws_access_key_id"], cfg["aws_secret_access_key"] = "AKIDBROKEN", "broken-secret"
		id := e.createExport("broken", cfg)
		end := t0.Truncate(time.Hour).Add(-3 * time.Hour)
		e.api("POST", "/api/v1/batch_exports/"+id+"/backfills", map[string]any{
			"start_at": end.Add(-3 * time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, 201)
		run(t, ctx, chromedp.Navigate(e.url+"/exports/"+id), chromedp.WaitVisible("#runs"))
		value(t, ctx, chromedp.Poll[bool](`document.querySelectorAll('#runs .state-failed').length === 3`, long))
		run(t, ctx, chromedp.Reload(), chromedp.WaitVisible("#runs"))
		if n := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.chart .fail-mark').length`)); n != 3 {
			t.Errorf("%d failures marked on the chart, want 3", n)
		}
		if errText := value(t, ctx, chromedp.Text(chromedp.CSS("#runs td.err"))); errText == "" {
			t.Error("a failed run shows no error")
		}
		screenshot(t, ctx, "export-failed")
	})

	t.Run("a secret is never in the page source", func(t *testing.T) {
		const secret = "wJalrXUtnFEMI-console-test-secret"
		run(t, ctx,
			chromedp.Navigate(e.url+"/exports/new?type=s3"),
			chromedp.WaitVisible("#c-bucket_name"),
			chromedp.SendKeys("#f-name", "with-secret"),
			chromedp.SendKeys("#c-bucket_name", "secret"),
			chromedp.SendKeys("#c-endpoint_url", "local"),
			chromedp.SendKeys("#c-aws_access_key_id", "AKIDCONSOLETEST"),
			chromedp.SendKeys("#c-aws_secret_access_key", secret),
			chromedp.Click(`//button[text()="Create export"]`),
			chromedp.WaitVisible(`//p[contains(., "Export created.")]`),
		)
		if src := value(t, ctx, chromedp.OuterHTML(chromedp.CSS("html"))); strings.Contains(src, secret) {
			t.Fatal("the export page shows the secret")
		}
		run(t, ctx, chromedp.Click(`//a[text()="Edit"]`), chromedp.WaitVisible("#c-aws_secret_access_key"))
		src := value(t, ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if strings.Contains(src, secret) || strings.Contains(src, "AKIDCONSOLETEST") {
			t.Fatal("the edit form echoes a secret")
		}
		if !strings.Contains(src, "set (leave empty to keep)") {
			t.Error("the edit form does not show the secret as set")
		}
		screenshot(t, ctx, "export-edit")
	})

	t.Run("install a plugin by upload", func(t *testing.T) {
		// good.wasm is not installed (the first-party plugins are) and asks for no capability.
		module := filepath.Join(e.root, "host", "runtime", "testdata", "good.wasm")
		wasm, err := os.ReadFile(module)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(wasm)
		run(t, ctx, chromedp.Navigate(e.url+"/plugins"), chromedp.WaitVisible("#module"))
		if n := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#p-good').length`)); n != 0 {
			t.Fatal("the good plugin is listed before its upload")
		}
		run(t, ctx,
			chromedp.SetUploadFiles(chromedp.CSS("#module"), []string{module}),
			chromedp.Click(`//button[text()="Install"]`),
			chromedp.WaitVisible(`//p[contains(., "Plugin installed.")]`),
			chromedp.WaitVisible("#p-good"),
		)
		card := value(t, ctx, chromedp.Text(`//section[h2[@id="p-good"]]`))
		for _, w := range []string{"good", "0.1.0", "hand-written test module", "1.0", hex.EncodeToString(sum[:]), "none"} {
			if !strings.Contains(card, w) {
				t.Errorf("the installed plugin's card lacks %q: %s", w, card)
			}
		}
		// still listed after a fresh load, with the first-party ones
		run(t, ctx, chromedp.Reload(), chromedp.WaitVisible("#p-good"), chromedp.WaitVisible("#p-s3"))
		screenshot(t, ctx, "plugins")
	})

	t.Run("exports list", func(t *testing.T) {
		run(t, ctx, chromedp.Navigate(e.url+"/exports"), chromedp.WaitVisible("table"))
		text := value(t, ctx, chromedp.Text(chromedp.CSS("table")))
		for _, w := range []string{"console-s3", "demo", "Completed", "Active", "hour"} {
			if !strings.Contains(text, w) {
				t.Errorf("the list lacks %q: %s", w, text)
			}
		}
		screenshot(t, ctx, "exports")
	})

	t.Run("the keyboard reaches every action on the main pages", func(t *testing.T) {
		pages := []struct {
			path, ready string
			want        [][]string // actions that must be among those reached
		}{
			{"/exports", "table", [][]string{{"New export"}, {`"demo"`}, {"/plugins"}, {"Sign out"}}},
			{"/exports/" + demoID, "#runs", [][]string{{"Edit"}, {"Pause"}, {"Test destination"}, {"Delete"},
				{"Logs"}, {"Retry run"}, {"#bf-start"}, {"#bf-end"}, {"Create historic export"}}},
			{"/exports/new?type=s3", "#c-bucket_name", [][]string{{"#type-choose"}, {"Choose"}, {"#f-name"}, {"#f-interval"},
				{"#f-start"}, {"#f-paused"}, {"#c-bucket_name"}, {"#c-file_format"}, {"#c-aws_secret_access_key"}, {"Create export"}, {"Cancel"}}},
			{"/exports/" + demoID + "/edit", "#c-bucket_name", [][]string{{"#f-name"}, {"#c-bucket_name"}, {"Save"}, {"Cancel"}}},
			{"/plugins", "#module", [][]string{{"summary", "Config schema"}, {"#module"}, {"#cap-object"}, {"Install"}}},
		}
		for _, p := range pages {
			run(t, ctx, chromedp.Navigate(e.url+p.path), chromedp.WaitVisible(p.ready))
			names := checkKeyboard(t, ctx, p.path)
			for _, w := range p.want {
				if !hasAction(names, w...) {
					t.Errorf("%s: the keyboard does not reach %q; it reaches: %s", p.path, w, strings.Join(names, ", "))
				}
			}
		}
	})

	t.Run("a post without the CSRF token fails", func(t *testing.T) {
		run(t, ctx, chromedp.Navigate(e.url+"/exports/"+demoID), chromedp.WaitVisible("#runs"))
		if st := fetchStatus(t, ctx, "/exports/"+demoID+"/pause", false); st != 403 {
			t.Fatalf("HTTP %d, want 403", st)
		}
	})

	t.Run("a read-only token sees no write actions and gets 403 on a forged post", func(t *testing.T) {
		run(t, ctx,
			chromedp.Click(`//button[text()="Sign out"]`),
			chromedp.WaitVisible("#token"),
			chromedp.SendKeys("#token", e.readToken),
			chromedp.Submit("#token"),
			chromedp.WaitVisible(`//h1[contains(., "Batch exports")]`),
			chromedp.Navigate(e.url+"/exports/"+demoID),
			chromedp.WaitVisible("#runs"),
		)
		writes := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('form[method=post]:not([action="/signout"]), a[href$="/edit"], a[href$="/delete"], a[href="/exports/new"]').length`))
		if writes != 0 {
			t.Fatalf("%d write actions shown to a read-only token", writes)
		}
		screenshot(t, ctx, "export-readonly")
		if st := fetchStatus(t, ctx, "/exports/"+demoID+"/pause", true); st != 403 {
			t.Fatalf("forged pause with a valid CSRF token: HTTP %d, want 403", st)
		}
	})
}
