package console_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/console"
)

// TestHandlers covers sessions, CSRF and scopes over plain HTTP (no browser).
func TestHandlers(t *testing.T) {
	e := newEnv(t)
	id := e.createExport("plain", localConfig("plain"))

	t.Run("without a session pages redirect to sign-in and the API still answers", func(t *testing.T) {
		c := e.client()
		resp, _ := c.get("/exports/" + id)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin?next=") {
			t.Fatalf("HTTP %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = c.post("/exports/"+id+"/pause", url.Values{})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("post without a session: HTTP %d", resp.StatusCode)
		}
		resp, _ = c.get("/healthz")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz through the console handler: HTTP %d", resp.StatusCode)
		}
		resp, _ = c.get("/api/v1/batch_exports")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("API without a token: HTTP %d", resp.StatusCode)
		}
	})

	t.Run("sign-in sets an HttpOnly SameSite=Strict cookie and refuses a bad token", func(t *testing.T) {
		c := e.client()
		_, page := c.get("/signin")
		resp, body := c.post("/signin", url.Values{"csrf_token": {csrfOf(t, page)}, "token": {"nope"}})
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "unknown or revoked") {
			t.Fatalf("bad token: HTTP %d", resp.StatusCode)
		}
		resp, _ = c.post("/signin", url.Values{"token": {adminToken}}) // no CSRF token
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("sign-in without CSRF token: HTTP %d", resp.StatusCode)
		}
		_, page = c.get("/signin")
		resp, _ = c.post("/signin", url.Values{"csrf_token": {csrfOf(t, page)}, "token": {adminToken}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in: HTTP %d", resp.StatusCode)
		}
		var found bool
		for _, ck := range resp.Cookies() {
			if ck.Name == console.SessionCookie && ck.Value != "" {
				found = true
				if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
					t.Errorf("cookie %+v: want HttpOnly and SameSite=Strict", ck)
				}
				if strings.Contains(ck.Value, adminToken) {
					t.Error("the cookie holds the token")
				}
			}
		}
		if !found {
			t.Fatal("no session cookie")
		}
		resp, body = c.get("/exports")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "plain") {
			t.Fatalf("exports: HTTP %d", resp.StatusCode)
		}
	})

	t.Run("a POST without or with a wrong CSRF token is refused and changes nothing", func(t *testing.T) {
		c := e.client()
		csrf := c.signIn(adminToken)
		wrong := "0" + csrf[1:]
		if wrong == csrf { // a token that starts with 0 would be sent back unchanged
			wrong = "1" + csrf[1:]
		}
		for _, form := range []url.Values{{}, {"csrf_token": {wrong}}} {
			resp, _ := c.post("/exports/"+id+"/pause", form)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("form %v: HTTP %d, want 403", form, resp.StatusCode)
			}
		}
		if got := e.api(http.MethodGet, "/api/v1/batch_exports/"+id, nil, http.StatusOK); got["paused"] != false {
			t.Fatal("the export was paused")
		}
		// a cross-site Origin is refused even with the token
		req, _ := http.NewRequest(http.MethodPost, c.base+"/exports/"+id+"/pause", strings.NewReader(url.Values{"csrf_token": {csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://evil.example")
		resp, err := c.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-origin post: HTTP %d", resp.StatusCode)
		}
		// with the token it works
		resp, _ = c.post("/exports/"+id+"/pause", url.Values{"csrf_token": {csrf}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("pause: HTTP %d", resp.StatusCode)
		}
		resp, _ = c.post("/exports/"+id+"/unpause", url.Values{"csrf_token": {csrf}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("unpause: HTTP %d", resp.StatusCode)
		}
	})

	t.Run("a read-only token sees no write actions and gets 403 on a forged post", func(t *testing.T) {
		c := e.client()
		csrf := c.signIn(e.readToken)
		for _, p := range []string{"/exports", "/exports/" + id, "/plugins"} {
			resp, body := c.get(p)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: HTTP %d", p, resp.StatusCode)
			}
			for _, w := range []string{"/pause\"", "/retry\"", "/backfills\"", "/edit\"", "/delete\"", "New export", `action="/plugins"`} {
				if strings.Contains(body, w) {
					t.Errorf("%s shows the write action %q to a read-only token", p, w)
				}
			}
		}
		resp, body := c.post("/exports/"+id+"/pause", url.Values{"csrf_token": {csrf}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "forbidden") {
			t.Fatalf("forged pause: HTTP %d: %s", resp.StatusCode, body)
		}
		resp, _ = c.post("/exports/new", url.Values{"csrf_token": {csrf}, "type": {"s3"}, "name": {"x"}, "interval": {"hour"},
			"destination.config.bucket_name": {"x"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("forged create: HTTP %d", resp.StatusCode)
		}
		if got := e.api(http.MethodGet, "/api/v1/batch_exports/"+id, nil, http.StatusOK); got["paused"] != false {
			t.Fatal("the export was paused")
		}
	})

	t.Run("field errors come from the API; secrets are never echoed", func(t *testing.T) {
		c := e.client()
		csrf := c.signIn(adminToken)
		const secret = "s3cr3t-VALUE-never-shown"
		form := url.Values{"csrf_token": {csrf}, "type": {"s3"}, "name": {"with-keys"}, "interval": {"hour"}, "timezone": {"UTC"},
			"interval_offset": {"0"}, "destination.config.endpoint_url": {"local"},
			"destination.config.aws_access_key_id": {"AKIDCONSOLE"}, "destination.config.aws_secret_access_key": {secret}}
		resp, body := c.post("/exports/new", form)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="c-bucket_name"`) || !strings.Contains(body, "field-error") {
			t.Fatalf("missing bucket: HTTP %d", resp.StatusCode)
		}
		if strings.Contains(body, secret) || strings.Contains(body, "AKIDCONSOLE") {
			t.Fatal("the re-rendered form echoes a secret")
		}
		form.Set("destination.config.bucket_name", "keys")
		resp, body = c.post("/exports/new", form)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("create: HTTP %d: %s", resp.StatusCode, body)
		}
		loc := resp.Header.Get("Location")
		newID := strings.TrimPrefix(strings.Split(loc, "?")[0], "/exports/")
		for _, p := range []string{loc, "/exports/" + newID + "/edit", "/exports"} {
			_, body := c.get(p)
			if strings.Contains(body, secret) || strings.Contains(body, "AKIDCONSOLE") {
				t.Fatalf("%s shows a secret", p)
			}
			if p == "/exports/"+newID+"/edit" && !strings.Contains(body, "set (leave empty to keep)") {
				t.Errorf("the edit form does not say the secret is set")
			}
		}
		// The export page shows the pinned plugin version and module.
		dest := e.api(http.MethodGet, "/api/v1/batch_exports/"+newID, nil, http.StatusOK)["destination"].(map[string]any)
		if _, body := c.get("/exports/" + newID); !strings.Contains(body, dest["plugin_version"].(string)+` <code title="sha256 of the pinned module">`+dest["plugin_sha256"].(string)[:12]+"</code>") {
			t.Errorf("the export page does not show the pin %s %s", dest["plugin_version"], dest["plugin_sha256"])
		}
		// saving the edit form without retyping secrets keeps them
		_, page := c.get("/exports/" + newID + "/edit")
		_ = page
		resp, body = c.post("/exports/"+newID+"/edit", url.Values{"csrf_token": {csrf}, "name": {"with-keys-2"}, "interval": {"hour"},
			"timezone": {"UTC"}, "interval_offset": {"0"}, "destination.config.bucket_name": {"keys"},
			"destination.config.endpoint_url": {"local"}, "destination.config.file_format": {"JSONLines"}, "destination.config.compression": {"none"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("edit: HTTP %d: %s", resp.StatusCode, body)
		}
		got := e.api(http.MethodGet, "/api/v1/batch_exports/"+newID, nil, http.StatusOK)
		if dest := got["destination"].(map[string]any); len(dest["secrets_set"].([]any)) != 2 || got["name"] != "with-keys-2" {
			t.Fatalf("after the edit: %v", got)
		}
	})

	t.Run("a backfill the API refuses shows the API's message on the field", func(t *testing.T) {
		c := e.client()
		csrf := c.signIn(adminToken)
		resp, body := c.post("/exports/"+id+"/backfills", url.Values{"csrf_token": {csrf}, "start_at": {"2026-11-20T09:00"}, "end_at": {"2026-11-21T09:00"}})
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "future") {
			t.Fatalf("future backfill: HTTP %d: %s", resp.StatusCode, body)
		}
	})

	t.Run("test destination shows the plugin's steps", func(t *testing.T) {
		c := e.client()
		csrf := c.signIn(adminToken)
		resp, body := c.post("/exports/"+id+"/test", url.Values{"csrf_token": {csrf}})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Destination test") || !strings.Contains(body, "<li>") {
			t.Fatalf("test: HTTP %d: %s", resp.StatusCode, body)
		}
	})

	t.Run("the exports list pages past 50 exports", func(t *testing.T) {
		c := e.client()
		c.signIn(adminToken)
		for i := range 55 {
			e.createExport(fmt.Sprintf("paged-%02d", i), localConfig("paged"))
		}
		seen := 0
		path := "/exports"
		for pages := 0; path != ""; pages++ {
			if pages > 5 {
				t.Fatal("the exports list never ends")
			}
			resp, body := c.get(path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: HTTP %d", path, resp.StatusCode)
			}
			seen += strings.Count(body, ">paged-")
			path = ""
			if i := strings.Index(body, `href="/exports?cursor=`); i >= 0 {
				rest := body[i+len(`href="`):]
				path = html.UnescapeString(rest[:strings.Index(rest, `"`)])
			}
		}
		if seen != 55 {
			t.Fatalf("the pages listed %d of 55 exports", seen)
		}
	})

	t.Run("sign-out ends the session", func(t *testing.T) {
		c := e.client()
		csrf := c.signIn(adminToken)
		resp, _ := c.post("/signout", url.Values{"csrf_token": {csrf}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-out: HTTP %d", resp.StatusCode)
		}
		resp, _ = c.get("/exports")
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("after sign-out: HTTP %d", resp.StatusCode)
		}
	})
}
