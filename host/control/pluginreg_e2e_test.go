package control_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/pluginreg"
	"github.com/sluicehq/sluice/internal/lockfile"
)

// ociRegistry serves go-containerregistry's OCI registry (referrers API on) on loopback
// and returns its host:port.
func ociRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func signingKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// examplePlugin is the built example plugin, its lock entry, and the manifest annotation
// pushed with it (the host reads the manifest from the module, never from the annotation).
func examplePlugin(t *testing.T) ([]byte, lockfile.Entry, []byte) {
	t.Helper()
	root := repoRoot(t)
	wasm, err := os.ReadFile(filepath.Join(root, "bin", "plugins", "example.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := lockfile.Read(filepath.Join(root, "plugins.lock"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range l.Plugins {
		if e.Name == "example" {
			m, _ := json.Marshal(map[string]any{"name": e.Name, "version": e.Version, "capabilities": e.Capabilities})
			return wasm, e, m
		}
	}
	t.Fatal("example is not in plugins.lock")
	return nil, lockfile.Entry{}, nil
}

// installRef installs by reference through the API; it returns the status and the body.
func (e *env) installRef(ref string, caps ...string) (int, string) {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{"reference": ref, "capabilities": caps})
	req, _ := http.NewRequest("POST", e.url+"/api/v1/plugins", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// installSigned uploads a module with a signature file through the API.
func (e *env) installSigned(wasm, sig []byte, caps string) (int, string) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("module", "plugin.wasm")
	_, _ = fw.Write(wasm)
	fw, _ = mw.CreateFormFile("signature", "plugin.wasm.sig")
	_, _ = fw.Write(sig)
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

func (e *env) pluginCount() int {
	e.t.Helper()
	ps, err := e.host.DB().ListPlugins(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return len(ps)
}

func wantStatus(t *testing.T, what string, status int, body string, want int, msg string) {
	t.Helper()
	if status != want || !strings.Contains(body, msg) {
		t.Fatalf("%s: HTTP %d %s; want %d with %q", what, status, body, want, msg)
	}
}

// A plugin pushed to a registry is installed by reference through the API and an export
// runs with it; a reference whose digest is not the tag's, or is not in the registry, or
// names a registry the operator did not allow, is refused and installs nothing.
func TestInstallPluginFromRegistry(t *testing.T) {
	reg := ociRegistry(t)
	wasm, entry, manifest := examplePlugin(t)
	e := newEnv(t, "", func(c *control.Config) {
		c.PluginsDir, c.LockFile = "", "" // nothing installed but what comes from the registry
		c.PluginRegistry = pluginreg.Policy{Registries: []string{reg}, AllowPrivate: true}
	})
	ctx := context.Background()
	cli := pluginreg.NewClient(pluginreg.Policy{AnyRegistry: true, AllowPrivate: true})
	pushed, err := cli.Push(ctx, reg+"/sluice/example:"+entry.Version, wasm, manifest)
	if err != nil {
		t.Fatal(err)
	}
	other, err := cli.Push(ctx, reg+"/sluice/example:other", append(bytes.Clone(wasm), 0), manifest)
	if err != nil {
		t.Fatal(err)
	}

	st, body := e.installRef(reg+"/sluice/example:"+entry.Version+"@"+other.Ref.Digest.String(), "object")
	wantStatus(t, "tag at another digest", st, body, 422, "points at "+pushed.Ref.Digest.String())
	st, body = e.installRef(reg+"/sluice/example@sha256:"+strings.Repeat("0", 64), "object")
	wantStatus(t, "digest not in the registry", st, body, 422, "has no manifest")
	st, body = e.installRef("127.0.0.1:1/sluice/example:"+entry.Version, "object")
	wantStatus(t, "registry not allowed", st, body, 400, "not among the registries")
	// Allowed by name, but on loopback: refused at dial time without AllowPrivate.
	strict := newEnv(t, "", func(c *control.Config) {
		c.PluginsDir, c.LockFile = "", ""
		c.PluginRegistry = pluginreg.Policy{Registries: []string{reg}}
	})
	st, body = strict.installRef(pushed.Ref.String(), "object")
	wantStatus(t, "loopback registry without allow-private", st, body, 400, "SLUICE_PLUGIN_REGISTRY_ALLOW_PRIVATE")
	st, body = e.installRef(reg+"/sluice/missing:1.0", "object")
	wantStatus(t, "tag not in the registry", st, body, 422, "not found")
	st, body = e.installRef(pushed.Ref.String())
	wantStatus(t, "capability not granted", st, body, 422, "object")
	if n := e.pluginCount(); n != 0 {
		t.Fatalf("refused installs stored %d plugins", n)
	}

	st, body = e.installRef(pushed.Ref.String(), "object")
	wantStatus(t, "install by reference", st, body, 201, `"sha256":"`+entry.SHA256+`"`)
	id := e.createExportTo("example", "from-registry", map[string]any{"bucket_name": "fromregistry", "endpoint_url": "local"})
	e.backfill(id, t0.Truncate(time.Hour).Add(-2*time.Hour), t0.Truncate(time.Hour).Add(-time.Hour))
	rs := e.waitRuns(id, "the run of the plugin installed from the registry", allFinished(1))
	if rs[0].Status != "Completed" || rs[0].RecordsCompleted == 0 || rs[0].RecordsCompleted != e.countIn(rs[0].IntervalStart, rs[0].IntervalEnd) {
		t.Fatalf("run: %+v, source has %d", rs[0], e.countIn(rs[0].IntervalStart, rs[0].IntervalEnd))
	}
}

// With trusted keys configured, a module is installed only with a signature by one of them
// over its sha256 and the capabilities it requests: unsigned, signed by another key, or
// signed for other capabilities, it is refused, from a registry and as an upload.
func TestSignedPlugins(t *testing.T) {
	reg := ociRegistry(t)
	wasm, entry, manifest := examplePlugin(t)
	trusted, untrusted := signingKey(1), signingKey(2)
	e := newEnv(t, "", func(c *control.Config) {
		// The locked plugins are signed by the repository's test key, not trusted here.
		c.PluginTrust = pluginreg.NewTrust(trusted.Public().(ed25519.PublicKey))
		c.PluginRegistry = pluginreg.Policy{Registries: []string{reg}, AllowPrivate: true}
	})
	if n := e.pluginCount(); n != 0 {
		t.Fatalf("%d locked plugins installed without a signature by a trusted key", n)
	}
	ctx := context.Background()
	cli := pluginreg.NewClient(pluginreg.Policy{AnyRegistry: true, AllowPrivate: true})
	push := func(repo string, sigs ...[]byte) string {
		p, err := cli.Push(ctx, reg+"/"+repo+":"+entry.Version, wasm, manifest, sigs...)
		if err != nil {
			t.Fatal(err)
		}
		return p.Ref.String()
	}
	good := pluginreg.Sign(trusted, entry.SHA256, []string{"object"}).Marshal()
	byOther := pluginreg.Sign(untrusted, entry.SHA256, []string{"object"}).Marshal()
	otherCaps := pluginreg.Sign(trusted, entry.SHA256, []string{"http"}).Marshal()
	forged := pluginreg.Sign(trusted, entry.SHA256, []string{"http"})
	forged.Capabilities = []string{"object"}

	for _, tc := range []struct {
		name string
		sig  []byte // nil: unsigned
		msg  string
	}{
		{"unsigned", nil, "comes without a signature"},
		{"signed by an untrusted key", byOther, "not among the trusted keys"},
		{"signed for other capabilities", otherCaps, "signed for capabilities [http], but the module requests [object]"},
		{"signature document altered", forged.Marshal(), "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sigs [][]byte
			if tc.sig != nil {
				sigs = append(sigs, tc.sig)
			}
			st, body := e.installRef(push("sluice/"+strings.ReplaceAll(tc.name, " ", "-"), sigs...), "object")
			wantStatus(t, "registry install", st, body, 422, tc.msg)
			if tc.sig == nil {
				st, body = e.install("example.wasm", wasm, "object")
			} else {
				st, body = e.installSigned(wasm, tc.sig, "object")
			}
			wantStatus(t, "upload", st, body, 422, tc.msg)
			if n := e.pluginCount(); n != 0 {
				t.Fatalf("a refused module was stored (%d plugins)", n)
			}
		})
	}

	// Signed by a trusted key, among other signatures: accepted from the registry...
	st, body := e.installRef(push("sluice/signed", byOther, good), "object")
	wantStatus(t, "signed registry install", st, body, 201, `"sha256":"`+entry.SHA256+`"`)
	// ...and as an upload (the same module: installed already, the check runs again).
	st, body = e.installSigned(wasm, good, "object")
	wantStatus(t, "signed upload", st, body, 201, `"sha256":"`+entry.SHA256+`"`)
	st, body = e.install("example.wasm", wasm, "object")
	wantStatus(t, "unsigned upload of an installed module", st, body, 422, "comes without a signature")
	id := e.createExportTo("example", "signed", map[string]any{"bucket_name": "signed", "endpoint_url": "local"})
	e.backfill(id, t0.Truncate(time.Hour).Add(-2*time.Hour), t0.Truncate(time.Hour).Add(-time.Hour))
	if rs := e.waitRuns(id, "the signed plugin's run", allFinished(1)); rs[0].Status != "Completed" || rs[0].RecordsCompleted == 0 {
		t.Fatalf("run: %+v", rs[0])
	}
}

// The locked first-party plugins are signed by the repository's test key in
// plugins.lock.sig (make plugins-sign): a host trusting that key installs every one.
func TestLockedPluginsSignedByTestKey(t *testing.T) {
	root := repoRoot(t)
	trust, err := pluginreg.ParseTrustedKeys(filepath.Join(root, "keys", "TEST-ONLY-plugin-signing.pub"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := lockfile.Read(filepath.Join(root, "plugins.lock"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "", func(c *control.Config) { c.PluginTrust = trust })
	if n := e.pluginCount(); n != len(l.Plugins) {
		t.Fatalf("%d of %d locked plugins installed with their test-key signatures", n, len(l.Plugins))
	}
}
