package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/storage"
)

func TestHealthReadyMetrics(t *testing.T) {
	e := newEnv(t)
	r := e.raw("GET", "/healthz", "", nil)
	if r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", r.Status, r.Body)
	}
	r = e.raw("GET", "/readyz", "", nil)
	if r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"status":"ready"}` {
		t.Errorf("readyz: %d %s", r.Status, r.Body)
	}
	e.ctl.mu.Lock()
	e.ctl.ready = errors.New("database at /secret/path unreachable")
	e.ctl.mu.Unlock()
	r = e.raw("GET", "/readyz", "", nil)
	if r.Status != 503 || r.err(t).Code != api.CodeNotReady || strings.Contains(string(r.Body), "/secret/path") {
		t.Errorf("readyz when not ready: %d %s", r.Status, r.Body)
	}
	// Draining: not ready, and says so; still alive.
	e.ctl.mu.Lock()
	e.ctl.ready = fmt.Errorf("host a: %w", api.ErrDraining)
	e.ctl.mu.Unlock()
	if r = e.raw("GET", "/readyz", "", nil); r.Status != 503 || r.err(t).Message != "draining" {
		t.Errorf("readyz while draining: %d %s", r.Status, r.Body)
	}
	if r = e.raw("GET", "/healthz", "", nil); r.Status != 200 {
		t.Errorf("healthz while draining: %d %s", r.Status, r.Body)
	}

	// Runner metrics and HTTP metrics by route template, open without a token.
	e.srv.Metrics().RunFinished("s3test", storage.StatusCompleted, 2e9, 100, 2048)
	e.srv.Metrics().RunRetried("s3test")
	e.srv.Metrics().SetQueueDepth(3)
	e.do("GET", "/api/v1/batch_exports/5f1c0a52-0000-4000-8000-000000000000", nil)
	r = e.raw("GET", "/metrics", "", nil)
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`sluice_runs_total{destination="s3test",status="Completed"} 1`,
		`sluice_exported_records_total{destination="s3test"} 100`,
		`sluice_exported_bytes_total{destination="s3test"} 2048`,
		`sluice_run_retries_total{destination="s3test"} 1`,
		`sluice_queue_depth 3`,
		`sluice_run_duration_seconds_bucket`,
		`sluice_http_requests_total{code="404",method="GET",route="/api/v1/batch_exports/:id"} 1`,
		`sluice_http_requests_total{code="503",method="GET",route="/readyz"} 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A nil *Metrics is a no-op.
	var nilMetrics *api.Metrics
	nilMetrics.RunFinished("x", storage.StatusFailed, 0, 0, 0)
	nilMetrics.PluginCall("x", "open", 0)

	// Metrics behind the read scope when configured.
	e2 := newEnv(t, func(c *api.Config) { c.MetricsRequireAuth = true })
	if r := e2.raw("GET", "/metrics", "", nil); r.Status != 401 {
		t.Errorf("metrics without a token: %d", r.Status)
	}
	_, read := e2.token("read")
	if r := e2.as(read, "GET", "/metrics", nil); r.Status != 200 {
		t.Errorf("metrics with a read token: %d", r.Status)
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/api/v1/nothing", nil)
	if r.Status != 404 || r.err(t).Code != api.CodeNotFound {
		t.Errorf("unknown route: %d %s", r.Status, r.Body)
	}
	r = e.do("PUT", "/api/v1/batch_exports", `{}`)
	if r.Status != 405 || r.err(t).Code != api.CodeMethodNotAllowed {
		t.Errorf("PUT: %d %s", r.Status, r.Body)
	}
	if ae := r.err(t); ae.Message != "method not allowed" {
		t.Errorf("405 message %q", ae.Message)
	}
	if ae := e.do("GET", "/nothing", nil).err(t); ae.Message != "not found" {
		t.Errorf("404 message %q", ae.Message)
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t) // MaxBodyBytes = 16 KiB
	e.plugin(s3Manifest)
	big := with("name", strings.Repeat("x", 20<<10))
	b, _ := json.Marshal(big)
	r := e.do("POST", "/api/v1/batch_exports", b)
	if r.Status != http.StatusRequestEntityTooLarge || r.err(t).Code != api.CodeTooLarge || !strings.Contains(r.err(t).Message, "16 KiB") {
		t.Errorf("large body: %d %s", r.Status, r.Body)
	}
	// Without a Content-Length (chunked), reading stops at the limit.
	r = e.raw("POST", "/api/v1/batch_exports", adminToken, io.MultiReader(bytes.NewReader(b)), "Transfer-Encoding", "chunked")
	if r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked large body: %d %s", r.Status, r.Body)
	}
	id := e.export("small")
	r = e.do("PATCH", "/api/v1/batch_exports/"+id, `{"name": "`+strings.Repeat("y", 20<<10)+`"}`)
	if r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("large PATCH: %d", r.Status)
	}
	if e.exportCount() != 1 || e.exportRow(id).Name != "small" {
		t.Error("a too-large request changed something")
	}
}

// module is a fake WebAssembly module: the magic, a version, then the manifest the
// fake controller reads.
func module(m abi.Manifest) []byte {
	b, _ := json.Marshal(m)
	return append([]byte("\x00asm\x01\x00\x00\x00"), b...)
}

func multipartBody(t *testing.T, files map[string][]byte, values map[string][]string) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for name, data := range files {
		fw, err := w.CreateFormFile(name, name+".wasm")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	for k, vs := range values {
		for _, v := range vs {
			w.WriteField(k, v)
		}
	}
	w.Close()
	return &buf, w.FormDataContentType()
}

func TestPlugins(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxPluginBytes = 64 << 10 })
	install := func(token string, files map[string][]byte, values map[string][]string) resp {
		body, ct := multipartBody(t, files, values)
		return e.raw("POST", "/api/v1/plugins", token, body, "Content-Type", ct)
	}
	good := map[string][]byte{"module": module(s3Manifest)}
	caps := map[string][]string{"capabilities": {"object"}}

	_, write := e.token("write")
	if r := install(write, good, caps); r.Status != 403 {
		t.Errorf("install with write scope: %d", r.Status)
	}
	bad := []struct {
		name   string
		files  map[string][]byte
		values map[string][]string
		status int
		field  string
	}{
		{"no module", nil, caps, 400, "module"},
		{"two modules", map[string][]byte{"module": module(s3Manifest)}, map[string][]string{"module": {"x"}}, 400, "module"},
		{"not wasm", map[string][]byte{"module": []byte("#!/bin/sh\necho hi")}, caps, 400, "module"},
		{"unknown field", good, map[string][]string{"capabilities": {"object"}, "version": {"2"}}, 400, "version"},
		{"unknown file", map[string][]byte{"module": module(s3Manifest), "extra": {1}}, caps, 400, "extra"},
		{"bad capability", good, map[string][]string{"capabilities": {"object, ../etc"}}, 400, "capabilities"},
		{"capability not granted", good, nil, 422, ""},
		{"too large", map[string][]byte{"module": append(module(s3Manifest), make([]byte, 70<<10)...)}, caps, 413, ""},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			r := install(adminToken, c.files, c.values)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			ae := r.err(t)
			if c.field != "" && (len(ae.Fields) != 1 || ae.Fields[0].Field != c.field) {
				t.Errorf("fields %v, want %s", ae.fieldNames(), c.field)
			}
		})
	}
	r := e.raw("POST", "/api/v1/plugins", adminToken, bytes.NewReader(module(s3Manifest)), "Content-Type", "application/wasm")
	if r.Status != 415 || r.err(t).Code != api.CodeUnsupportedMedia {
		t.Errorf("raw body: %d %s", r.Status, r.Body)
	}
	if ps, _ := e.db.ListPlugins(t.Context()); len(ps) != 0 {
		t.Fatalf("rejected installs stored %d plugins", len(ps))
	}

	r = install(adminToken, good, map[string][]string{"capabilities": {"object,object", " "}})
	if r.Status != 201 {
		t.Fatalf("install: %d %s", r.Status, r.Body)
	}
	p := r.json(t)
	if p["name"] != "s3test" || p["version"] != "1.0.0" || len(p["capabilities"].([]any)) != 1 || p["manifest"].(map[string]any)["name"] != "s3test" {
		t.Errorf("installed %v", p)
	}
	v2 := s3Manifest
	v2.Version = "1.1.0"
	if r := install(adminToken, map[string][]byte{"module": module(v2)}, caps); r.Status != 201 {
		t.Fatalf("install v2: %d %s", r.Status, r.Body)
	}
	if r := install(adminToken, map[string][]byte{"module": module(v2)}, caps); r.Status != 409 {
		t.Errorf("same version again: %d %s", r.Status, r.Body)
	}

	_, read := e.token("read")
	r = e.as(read, "GET", "/api/v1/plugins", nil)
	list := r.json(t)["results"].([]any)
	if r.Status != 200 || len(list) != 1 {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	if pl := list[0].(map[string]any); pl["version"] != "1.1.0" || len(pl["versions"].([]any)) != 2 {
		t.Errorf("listed %v", pl)
	}
	if r := e.as(read, "GET", "/api/v1/plugins/s3test", nil); r.Status != 200 || r.json(t)["version"] != "1.1.0" {
		t.Errorf("get: %d %s", r.Status, r.Body)
	}
	r = e.as(read, "GET", "/api/v1/plugins/s3test/config.md", nil)
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/markdown") || !strings.Contains(string(r.Body), "bucket_name") {
		t.Errorf("config.md: %d %s", r.Status, r.Body)
	}
	for _, name := range []string{"nope", "Bad.Name", strings.Repeat("a", 65)} {
		if r := e.as(read, "GET", "/api/v1/plugins/"+name, nil); r.Status != 404 {
			t.Errorf("get %q: %d", name, r.Status)
		}
	}
	// An export uses it: deleting is refused until the export is deleted.
	id := e.export("user")
	if r := e.do("DELETE", "/api/v1/plugins/s3test", nil); r.Status != 409 || len(r.err(t).Exports) != 1 || r.err(t).Exports[0].ID != id {
		t.Errorf("delete in use: %d %s", r.Status, r.Body)
	}
	if r := e.as(write, "DELETE", "/api/v1/plugins/s3test", nil); r.Status != 403 {
		t.Errorf("delete with write: %d", r.Status)
	}
	e.must("DELETE", "/api/v1/batch_exports/"+id, nil, http.StatusNoContent)
	e.must("DELETE", "/api/v1/plugins/s3test", nil, http.StatusNoContent)
	e.must("GET", "/api/v1/plugins/s3test", nil, http.StatusNotFound)
	e.must("DELETE", "/api/v1/plugins/s3test", nil, http.StatusNotFound)
}
