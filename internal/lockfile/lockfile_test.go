package lockfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReadVerify(t *testing.T) {
	dir := t.TempDir()
	mod := []byte("\x00asm\x01\x00\x00\x00")
	if err := os.WriteFile(filepath.Join(dir, "b.wasm"), mod, 0o644); err != nil {
		t.Fatal(err)
	}
	lock := Lock{Plugins: []Entry{
		{Name: "b", Version: "1.0.0", ABIVersion: "1.0", SHA256: SHA256(mod), Capabilities: []string{"object"}},
		{Name: "a", Version: "0.1.0", ABIVersion: "1.0", SHA256: SHA256([]byte("other")), Capabilities: []string{}},
	}}
	path := filepath.Join(dir, "plugins.lock")
	if err := Write(path, lock); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Plugins[0].Name != "a" || got.Plugins[1].Name != "b" {
		t.Fatalf("entries not sorted by name: %+v", got.Plugins)
	}
	err = Verify(got, dir)
	if err == nil || !strings.Contains(err.Error(), "a: ") || strings.Contains(err.Error(), "b: built") {
		t.Fatalf("want only a reported (missing), got %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.wasm"), append(mod, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Verify(Lock{Plugins: got.Plugins[1:]}, dir); err == nil || !strings.Contains(err.Error(), "plugins.lock pins") {
		t.Fatalf("a changed module must fail verification, got %v", err)
	}
}

func TestReadRejectsUnknownFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugins.lock")
	if err := os.WriteFile(path, []byte(`{"plugins":[{"name":"x","sha":"1"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err == nil {
		t.Fatal("want an error for an unknown field")
	}
}
