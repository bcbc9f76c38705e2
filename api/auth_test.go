package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api"
)

func TestAuthMissingOrInvalidToken(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name   string
		header string // Authorization value; "" for none
		msg    string
	}{
		{"no header", "", "missing bearer token"},
		{"basic scheme", "Basic dXNlcjpwYXNz", "missing bearer token"},
		{"bearer without token", "Bearer ", "missing bearer token"},
		{"bare token", adminToken, "missing bearer token"},
		{"wrong token", "Bearer nope", "invalid token"},
		{"admin token prefix", "Bearer " + adminToken[:len(adminToken)-1], "invalid token"},
		{"token-like but unknown", "Bearer sluice_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "invalid token"},
	}
	paths := []struct{ method, path string }{
		{"GET", "/api/v1/batch_exports"},
		{"POST", "/api/v1/batch_exports"},
		{"GET", "/api/v1/plugins"},
		{"GET", "/api/v1/tokens"},
		{"DELETE", "/api/v1/batch_exports/not-a-uuid"}, // 401 before 404
	}
	for _, c := range cases {
		for _, p := range paths {
			t.Run(c.name+" "+p.method+" "+p.path, func(t *testing.T) {
				var hdr []string
				if c.header != "" {
					hdr = []string{"Authorization", c.header}
				}
				r := e.raw(p.method, p.path, "", strings.NewReader(`{}`), hdr...)
				if r.Status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401: %s", r.Status, r.Body)
				}
				ae := r.err(t)
				if ae.Code != api.CodeUnauthorized || !strings.Contains(ae.Message, c.msg) {
					t.Errorf("error %+v, want code unauthorized and %q", ae, c.msg)
				}
				if got := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			})
		}
	}
	if e.exportCount() != 0 {
		t.Error("an unauthenticated POST created an export")
	}
}

func TestAuthBearerSchemeCaseInsensitive(t *testing.T) {
	e := newEnv(t)
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		r := e.raw("GET", "/api/v1/batch_exports", "", nil, "Authorization", scheme+" "+adminToken)
		if r.Status != http.StatusOK {
			t.Errorf("%s: status %d: %s", scheme, r.Status, r.Body)
		}
	}
}

// TestAuthScopes checks every kind of route against tokens of each scope: read reads,
// write also changes exports, only admin manages plugins and tokens.
func TestAuthScopes(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("scoped")
	cid := e.must("POST", "/api/v1/connections", map[string]any{"name": "c", "type": "s3test"}, http.StatusCreated).json(t)["id"].(string)
	_, read := e.token("read")
	_, write := e.token("write")
	_, admin := e.token("admin")
	_, readWrite := e.token("read", "write")

	const ex = "/api/v1/batch_exports"
	cases := []struct {
		method, path string
		body         string
		need         string // scope needed
	}{
		{"GET", ex, "", "read"},
		{"GET", ex + "/" + id, "", "read"},
		{"GET", ex + "/" + id + "/runs", "", "read"},
		{"GET", ex + "/" + id + "/logs", "", "read"},
		{"GET", ex + "/" + id + "/backfills", "", "read"},
		{"GET", "/api/v1/plugins", "", "read"},
		{"GET", "/api/v1/plugins/s3test", "", "read"},
		{"GET", "/api/v1/plugins/s3test/config.md", "", "read"},
		{"POST", ex, `{}`, "write"},
		{"PATCH", ex + "/" + id, `{"name": "renamed"}`, "write"},
		{"POST", ex + "/" + id + "/pause", "", "write"},
		{"POST", ex + "/" + id + "/unpause", "", "write"},
		{"POST", ex + "/" + id + "/test", "", "write"},
		{"POST", ex + "/" + id + "/backfills", `{}`, "write"},
		{"GET", "/api/v1/connections", "", "read"},
		{"GET", "/api/v1/connections/" + cid, "", "read"},
		{"POST", "/api/v1/connections", `{}`, "write"},
		{"PATCH", "/api/v1/connections/" + cid, `{"name": "renamed"}`, "write"},
		{"POST", "/api/v1/connections/" + cid + "/test", "", "write"},
		{"DELETE", "/api/v1/connections/00000000-0000-0000-0000-000000000000", "", "write"},
		{"POST", "/api/v1/plugins", "", "admin"},
		{"DELETE", "/api/v1/plugins/nope", "", "admin"},
		{"GET", "/api/v1/tokens", "", "admin"},
		{"POST", "/api/v1/tokens", `{}`, "admin"},
		{"DELETE", "/api/v1/tokens/00000000-0000-0000-0000-000000000000", "", "admin"},
	}
	tokens := []struct {
		name, token string
		scopes      []string // what it grants
	}{
		{"read", read, []string{"read"}},
		{"write", write, []string{"read", "write"}},
		{"read+write", readWrite, []string{"read", "write"}},
		{"admin", admin, []string{"read", "write", "admin"}},
		{"SLUICE_API_TOKEN", adminToken, []string{"read", "write", "admin"}},
	}
	for _, tk := range tokens {
		for _, c := range cases {
			t.Run(tk.name+" "+c.method+" "+c.path, func(t *testing.T) {
				r := e.as(tk.token, c.method, c.path, c.body)
				allowed := false
				for _, s := range tk.scopes {
					allowed = allowed || s == c.need
				}
				if !allowed {
					if r.Status != http.StatusForbidden {
						t.Fatalf("status %d, want 403: %s", r.Status, r.Body)
					}
					if ae := r.err(t); ae.Code != api.CodeForbidden || !strings.Contains(ae.Message, c.need) {
						t.Errorf("error %+v, want forbidden naming %q", ae, c.need)
					}
					return
				}
				if r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden {
					t.Fatalf("status %d with scope %s: %s", r.Status, c.need, r.Body)
				}
			})
		}
	}
	// Nothing a refused request tried was done.
	if x := e.exportRow(id); x.Name != "scoped" && x.Name != "renamed" {
		t.Errorf("name %q", x.Name)
	}
}

func TestTokensLifecycle(t *testing.T) {
	e := newEnv(t)
	id, plain := e.token("read")
	if !strings.HasPrefix(plain, "sluice_") {
		t.Errorf("token %q lacks the sluice_ prefix", plain)
	}
	// It authenticates with its scope.
	if r := e.as(plain, "GET", "/api/v1/batch_exports", nil); r.Status != http.StatusOK {
		t.Fatalf("new token: %d %s", r.Status, r.Body)
	}
	// The list never shows token values but shows the use.
	r := e.must("GET", "/api/v1/tokens", nil, http.StatusOK)
	if strings.Contains(string(r.Body), plain) || strings.Contains(string(r.Body), `"token"`) {
		t.Errorf("token list shows a token value: %s", r.Body)
	}
	list := r.json(t)["results"].([]any)
	if len(list) != 1 {
		t.Fatalf("tokens: %s", r.Body)
	}
	tok := list[0].(map[string]any)
	if tok["id"] != id || tok["last_used_at"] == nil || tok["scopes"].([]any)[0] != "read" {
		t.Errorf("token view %v", tok)
	}
	// Revoked: 401 from then on; revoking again is 404.
	e.must("DELETE", "/api/v1/tokens/"+id, nil, http.StatusNoContent)
	if r := e.as(plain, "GET", "/api/v1/batch_exports", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("revoked token: %d %s", r.Status, r.Body)
	}
	e.must("DELETE", "/api/v1/tokens/"+id, nil, http.StatusNotFound)
	e.must("DELETE", "/api/v1/tokens/not-a-uuid", nil, http.StatusNotFound)
	// An admin token created through the API can create tokens in turn.
	_, adm := e.token("admin")
	if r := e.as(adm, "POST", "/api/v1/tokens", map[string]any{"name": "child", "scopes": []string{"write"}}); r.Status != http.StatusCreated {
		t.Errorf("admin token creating a token: %d %s", r.Status, r.Body)
	}
}

func TestTokenValidation(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, body string
		fields     []string
	}{
		{"empty body", ``, nil},
		{"not an object", `[]`, nil},
		{"missing name", `{"scopes": ["read"]}`, []string{"name"}},
		{"blank name", `{"name": "  ", "scopes": ["read"]}`, []string{"name"}},
		{"long name", `{"name": "` + strings.Repeat("n", 201) + `", "scopes": ["read"]}`, []string{"name"}},
		{"no scopes", `{"name": "x"}`, []string{"scopes"}},
		{"empty scopes", `{"name": "x", "scopes": []}`, []string{"scopes"}},
		{"unknown scope", `{"name": "x", "scopes": ["read", "root"]}`, []string{"scopes[1]"}},
		{"scope case", `{"name": "x", "scopes": ["READ"]}`, []string{"scopes[0]"}},
		{"scopes not array", `{"name": "x", "scopes": "read"}`, []string{"scopes"}},
		{"unknown field", `{"name": "x", "scopes": ["read"], "expires": 5}`, []string{"expires"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/tokens", c.body)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.Status, r.Body)
			}
			ae := r.err(t)
			if got := ae.fieldNames(); strings.Join(got, ",") != strings.Join(c.fields, ",") {
				t.Errorf("fields %v, want %v (%s)", got, c.fields, r.Body)
			}
		})
	}
	ts, err := e.db.ListAPITokens(context.Background())
	if err != nil || len(ts) != 0 {
		t.Errorf("rejected requests stored tokens: %v %v", ts, err)
	}
}

func TestNoAdminTokenConfigured(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.AdminToken = "" })
	// An empty bearer never matches the empty admin token.
	for _, h := range []string{"Bearer ", "Bearer  "} {
		if r := e.raw("GET", "/api/v1/tokens", "", nil, "Authorization", h); r.Status != http.StatusUnauthorized {
			t.Errorf("%q: %d", h, r.Status)
		}
	}
	if r := e.as(adminToken, "GET", "/api/v1/tokens", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("old admin token: %d", r.Status)
	}
	// A token stored out of band (the CLI) works.
	_, plain, err := e.db.CreateAPIToken(context.Background(), "cli", []string{"admin"})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.as(plain, "GET", "/api/v1/tokens", nil); r.Status != http.StatusOK {
		t.Errorf("stored admin token: %d %s", r.Status, r.Body)
	}
}
