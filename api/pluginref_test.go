package api_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api"
)

// A JSON install names a reference; the API hands it with the grants to the controller
// (host/control's tests pull from a real registry).
func TestInstallPluginByReference(t *testing.T) {
	e := newEnv(t)
	ref := "127.0.0.1:5000/sluice/s3test:1.0.0@sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct {
		name, body string
		status     int
		field      string
	}{
		{"no reference", `{"capabilities": ["object"]}`, 400, "reference"},
		{"blank reference", `{"reference": "  "}`, 400, "reference"},
		{"unknown field", `{"reference": "` + ref + `", "module": "x"}`, 400, "module"},
		{"bad capability", `{"reference": "` + ref + `", "capabilities": ["../x"]}`, 400, "capabilities"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/plugins", tc.body)
			if r.Status != tc.status || !slices.Contains(r.err(t).fieldNames(), tc.field) {
				t.Fatalf("%d %s; want %d naming %s", r.Status, r.Body, tc.status, tc.field)
			}
		})
	}
	// `curl -d` sends form-urlencoded: still JSON, like every JSON body of the API.
	r := e.raw("POST", "/api/v1/plugins", adminToken, strings.NewReader(`{"capabilities": []}`), "Content-Type", "application/x-www-form-urlencoded")
	if r.Status != 400 || r.err(t).fieldNames()[0] != "reference" {
		t.Fatalf("curl -d: %d %s", r.Status, r.Body)
	}
	if len(e.ctl.sources) != 0 {
		t.Fatalf("refused requests reached the controller: %+v", e.ctl.sources)
	}
	r = e.do("POST", "/api/v1/plugins", `{"reference": " `+ref+` ", "capabilities": ["object", "object,http"]}`)
	if r.Status != http.StatusBadGateway || r.err(t).Code != api.CodeRegistryUnavailable || r.err(t).Message != "fake: no registry" {
		t.Fatalf("controller's error: %d %s", r.Status, r.Body)
	}
	if len(e.ctl.sources) != 1 || e.ctl.sources[0].Reference != ref || !slices.Equal(e.ctl.granted[0], []string{"object", "http"}) {
		t.Fatalf("controller got %+v %v", e.ctl.sources, e.ctl.granted)
	}
}

// An upload's signature fields (a value or a file, several allowed) go to the controller
// with the module; without one, the upload takes the unsigned path.
func TestInstallPluginSignatureFields(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxPluginBytes = 64 << 10 })
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, _ := w.CreateFormFile("module", "s3test.wasm")
	fw.Write(module(s3Manifest))
	fw, _ = w.CreateFormFile("signature", "s3test.wasm.sig")
	fw.Write([]byte(`{"doc": 1}`))
	w.WriteField("signature", `{"doc": 2}`)
	w.WriteField("capabilities", "object")
	w.Close()
	r := e.raw("POST", "/api/v1/plugins", adminToken, &buf, "Content-Type", w.FormDataContentType())
	if r.Status != 201 {
		t.Fatalf("signed upload: %d %s", r.Status, r.Body)
	}
	if len(e.ctl.sources) != 1 || len(e.ctl.sources[0].Signatures) != 2 || !bytes.Equal(e.ctl.sources[0].Module, module(s3Manifest)) {
		t.Fatalf("controller got %+v", e.ctl.sources)
	}
	got := []string{string(e.ctl.sources[0].Signatures[0]), string(e.ctl.sources[0].Signatures[1])}
	slices.Sort(got)
	if got[0] != `{"doc": 1}` || got[1] != `{"doc": 2}` {
		t.Fatalf("signatures %q", got)
	}
	body, ct := multipartBody(t, map[string][]byte{"module": module(webhookManifest)}, map[string][]string{"signature": {strings.Repeat("x", 17<<10)}})
	if r := e.raw("POST", "/api/v1/plugins", adminToken, body, "Content-Type", ct); r.Status != 400 || r.err(t).fieldNames()[0] != "signature" {
		t.Fatalf("oversized signature: %d %s", r.Status, r.Body)
	}
	body, ct = multipartBody(t, map[string][]byte{"module": module(webhookManifest)}, nil)
	if r := e.raw("POST", "/api/v1/plugins", adminToken, body, "Content-Type", ct); r.Status != 201 || len(e.ctl.sources) != 1 || e.ctl.called("InstallPlugin") != 2 {
		t.Fatalf("unsigned upload: %d %s, sources %d", r.Status, r.Body, len(e.ctl.sources))
	}
}
