package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/sluicehq/sluice/internal/lockfile"
)

// keygen, sign, push with the signature, pull with and without the right trusted key,
// against go-containerregistry's registry on loopback.
func TestPluginsSignPushPull(t *testing.T) {
	ctx := context.Background()
	root, _ := filepath.Abs("../..")
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	wasm, err := os.ReadFile(filepath.Join(root, "bin", "plugins", "example.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(dir, "example.wasm")
	if err := os.WriteFile(mod, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := pluginsKeygen([]string{"--out", filepath.Join(dir, name)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pluginsKeygen([]string{"--out", filepath.Join(dir, "a")}); err == nil {
		t.Fatal("keygen overwrote an existing key")
	}
	if err := pluginsSign(ctx, []string{"--key", filepath.Join(dir, "a.key"), mod}); err != nil {
		t.Fatal(err)
	}
	ref := reg + "/acme/example:0.1.0"
	if err := pluginsPush(ctx, []string{"--signature", mod + ".sig", mod, ref}); err != nil {
		t.Fatal(err)
	}
	if err := pluginsPush(ctx, []string{"--signature", mod + ".sig", filepath.Join(root, "bin", "plugins", "s3.wasm"), reg + "/acme/s3:1"}); err == nil || !strings.Contains(err.Error(), "signs module sha256") {
		t.Fatalf("push with another module's signature: %v", err)
	}
	out := filepath.Join(dir, "pulled.wasm")
	if err := pluginsPull(ctx, []string{"-o", out, "--trusted-keys", filepath.Join(dir, "a.pub"), ref}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, wasm) {
		t.Fatal("pulled module differs")
	}
	if got, _ := os.ReadFile(out + ".sig"); len(got) == 0 {
		t.Fatal("signature not written next to the pulled module")
	}
	err = pluginsPull(ctx, []string{"-o", filepath.Join(dir, "other.wasm"), "--trusted-keys", filepath.Join(dir, "b.pub"), ref})
	if err == nil || !strings.Contains(err.Error(), "not among the trusted keys") {
		t.Fatalf("pull trusting another key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.wasm")); err == nil {
		t.Fatal("a module refused by its signatures was written")
	}
	// A second signer attaches a signature to the pushed artifact.
	if err := pluginsSign(ctx, []string{"--key", filepath.Join(dir, "b.key"), "--out", filepath.Join(dir, "b.sig"), "--attach", ref, mod}); err != nil {
		t.Fatal(err)
	}
	if err := pluginsPull(ctx, []string{"-o", filepath.Join(dir, "other.wasm"), "--trusted-keys", filepath.Join(dir, "b.pub"), ref}); err != nil {
		t.Fatalf("pull after a second signature was attached: %v", err)
	}
}

// plugins.lock.sig signs every pin with the repository's test key; a changed pin or
// another key fails `sluice plugins verify --trusted-keys`.
func TestVerifyLockSignatures(t *testing.T) {
	root, _ := filepath.Abs("../..")
	pub := filepath.Join(root, "keys", "TEST-ONLY-plugin-signing.pub")
	lockPath := filepath.Join(root, "plugins.lock")
	l, err := lockfile.Read(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyLockSignatures(l, lockPath, pub); err != nil {
		t.Fatalf("plugins.lock.sig is stale (run `make plugins-sign`): %v", err)
	}
	dir := t.TempDir()
	if err := pluginsKeygen([]string{"--out", filepath.Join(dir, "other")}); err != nil {
		t.Fatal(err)
	}
	if err := verifyLockSignatures(l, lockPath, filepath.Join(dir, "other.pub")); err == nil {
		t.Fatal("signatures accepted with an untrusted key")
	}
	l.Plugins[0].Capabilities = append(l.Plugins[0].Capabilities, "http")
	if err := verifyLockSignatures(l, lockPath, pub); err == nil || !strings.Contains(err.Error(), l.Plugins[0].Name+": ") {
		t.Fatalf("a pin with other capabilities: %v", err)
	}
}
