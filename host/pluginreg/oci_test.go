package pluginreg

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	oras "oras.land/oras-go/v2"
)

// newRegistry serves go-containerregistry's OCI registry (with the referrers API, or
// without it: clients then use the referrers tag schema) on loopback; it returns host:port.
func newRegistry(t *testing.T, referrersAPI bool) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(referrersAPI), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

var (
	testModule   = []byte("\x00asm\x01\x00\x00\x00 a plugin")
	testManifest = []byte(`{"name":"demo","version":"0.1.0","capabilities":["object"]}`)
)

func TestPushPull(t *testing.T) {
	for _, referrersAPI := range []bool{true, false} {
		name := "referrers API"
		if !referrersAPI {
			name = "referrers tag schema"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			host := newRegistry(t, referrersAPI)
			c := NewClient(Policy{Registries: []string{host}, AllowPrivate: true})
			moduleSHA := digest.FromBytes(testModule).Encoded()
			sig := Sign(key(t, 1), moduleSHA, []string{"object"}).Marshal()
			pushed, err := c.Push(ctx, host+"/plugins/demo:0.1.0", testModule, testManifest, sig)
			if err != nil {
				t.Fatal(err)
			}
			// Same module: same manifest digest (the created annotation is fixed).
			again, err := c.Push(ctx, host+"/plugins/demo:0.1.0", testModule, testManifest)
			if err != nil || again.Ref.Digest != pushed.Ref.Digest {
				t.Fatalf("push again: %v, digest %s vs %s", err, again.Ref.Digest, pushed.Ref.Digest)
			}
			sig2 := Sign(key(t, 2), moduleSHA, []string{"object"}).Marshal()
			if _, err := c.PushSignature(ctx, host+"/plugins/demo:0.1.0", sig2); err != nil {
				t.Fatal(err)
			}
			// A signature of another module is not attached.
			if _, err := c.PushSignature(ctx, host+"/plugins/demo:0.1.0", Sign(key(t, 2), sha, nil).Marshal()); err == nil || !strings.Contains(err.Error(), "holds module sha256:"+moduleSHA) {
				t.Fatalf("signature of another module attached: %v", err)
			}
			for _, ref := range []string{pushed.Ref.String(), host + "/plugins/demo:0.1.0", host + "/plugins/demo@" + pushed.Ref.Digest.String()} {
				a, err := c.Pull(ctx, ref)
				if err != nil {
					t.Fatalf("pull %s: %v", ref, err)
				}
				if !bytes.Equal(a.Module, testModule) || a.ManifestJSON != string(testManifest) || a.Ref.Digest != pushed.Ref.Digest {
					t.Fatalf("pull %s: %+v", ref, a)
				}
				if len(a.Signatures) != 2 || !(bytes.Equal(a.Signatures[0], sig) || bytes.Equal(a.Signatures[1], sig)) {
					t.Fatalf("pull %s: signatures %q", ref, a.Signatures)
				}
			}
		})
	}
}

func TestPullRefusals(t *testing.T) {
	ctx := context.Background()
	host := newRegistry(t, true)
	c := NewClient(Policy{Registries: []string{host}, AllowPrivate: true})
	pushed, err := c.Push(ctx, host+"/plugins/demo:0.1.0", testModule, testManifest)
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.Push(ctx, host+"/plugins/demo:0.2.0", append(testModule, '!'), testManifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		client  *Client
		ref     string
		wantErr error
		msg     string
	}{
		{"tag points at another digest", c, host + "/plugins/demo:0.1.0@" + other.Ref.Digest.String(), ErrDigestMismatch, "points at " + pushed.Ref.Digest.String()},
		{"unknown digest", c, host + "/plugins/demo@sha256:" + strings.Repeat("0", 64), ErrDigestMismatch, "has no manifest"},
		{"registry not allowed", NewClient(Policy{Registries: []string{"127.0.0.1:1"}, AllowPrivate: true}), pushed.Ref.String(), ErrRegistryNotAllowed, "not among the registries"},
		{"no registry allowed", NewClient(Policy{AllowPrivate: true}), pushed.Ref.String(), ErrRegistryNotAllowed, "SLUICE_PLUGIN_REGISTRIES is empty"},
		{"loopback refused", NewClient(Policy{Registries: []string{host}}), pushed.Ref.String(), ErrAddressRefused, "SLUICE_PLUGIN_REGISTRY_ALLOW_PRIVATE"},
		{"no tag, no digest", c, host + "/plugins/demo", nil, "neither a tag nor a digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.Pull(ctx, tc.ref)
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("pull %s: %v; want %v with %q", tc.ref, err, tc.wantErr, tc.msg)
			}
		})
	}
	// An artifact that is not a plugin: another artifactType.
	r, _ := ParseRef(host + "/plugins/sbom:1")
	repo, err := c.repository(r)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.example.sbom", oras.PackManifestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag(ctx, desc, "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(ctx, r.String()); !errors.Is(err, ErrNotPlugin) {
		t.Fatalf("pull of a non-plugin artifact: %v", err)
	}
}

func TestParseRef(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct{ in, tag, digest, str string }{
		{"127.0.0.1:5000/a/b:1.0", "1.0", "", "127.0.0.1:5000/a/b:1.0"},
		{"127.0.0.1:5000/a/b@" + d, "", d, "127.0.0.1:5000/a/b@" + d},
		{"127.0.0.1:5000/a/b:1.0@" + d, "1.0", d, "127.0.0.1:5000/a/b:1.0@" + d},
	} {
		r, err := ParseRef(tc.in)
		if err != nil || r.Tag != tc.tag || r.Digest.String() != tc.digest || r.String() != tc.str || r.Repository != "a/b" {
			t.Errorf("%s: %+v %v", tc.in, r, err)
		}
	}
	if _, err := ParseRef("127.0.0.1:5000/a/b@md5:abc"); err == nil {
		t.Error("md5 digest accepted")
	}
}
