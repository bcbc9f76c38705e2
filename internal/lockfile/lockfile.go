// Package lockfile reads and writes plugins.lock, which pins every first-party plugin:
// name, version, ABI version, sha256 of the built module and the capabilities it is
// granted. `make plugins` rebuilds the modules byte for byte; `sluice plugins verify`
// fails when a built module differs from its pin.
package lockfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Entry pins one plugin.
type Entry struct {
	Name         string   `json:"name"`
	Version      string   `json:"version"`
	ABIVersion   string   `json:"abi_version"`
	SHA256       string   `json:"sha256"`
	Capabilities []string `json:"capabilities"`
}

// Lock is the whole file.
type Lock struct {
	Plugins []Entry `json:"plugins"`
}

// Read parses a lock file.
func Read(path string) (Lock, error) {
	var l Lock
	b, err := os.ReadFile(path)
	if err != nil {
		return l, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return l, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// Write writes a lock file with entries sorted by name, so it diffs cleanly.
func Write(path string, l Lock) error {
	sort.Slice(l.Plugins, func(i, j int) bool { return l.Plugins[i].Name < l.Plugins[j].Name })
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Verify checks every pinned plugin's built module in dir (<name>.wasm) against its hash.
func Verify(l Lock, dir string) error {
	var errs []error
	for _, e := range l.Plugins {
		b, err := os.ReadFile(filepath.Join(dir, e.Name+".wasm"))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name, err))
			continue
		}
		if got := SHA256(b); got != e.SHA256 {
			errs = append(errs, fmt.Errorf("%s: built module has sha256 %s, plugins.lock pins %s (rebuild with `make plugins`, or update the lock if the change is intended)", e.Name, got, e.SHA256))
		}
	}
	return errors.Join(errs...)
}

// SHA256 is the hex digest of a module.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// SignaturesPath is the file next to a lock holding its plugins' signatures: <lock>.sig.
func SignaturesPath(lock string) string { return lock + ".sig" }

// signatures is the signature file: one signature document (host/pluginreg's format) per
// pinned plugin name.
type signatures struct {
	Plugins map[string]json.RawMessage `json:"plugins"`
}

// ReadSignatures reads a signature file: plugin name -> signature document.
func ReadSignatures(path string) (map[string][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s signatures
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make(map[string][]byte, len(s.Plugins))
	for name, doc := range s.Plugins {
		out[name] = doc
	}
	return out, nil
}

// WriteSignatures writes a signature file (names sorted, so it diffs cleanly).
func WriteSignatures(path string, sigs map[string][]byte) error {
	s := signatures{Plugins: map[string]json.RawMessage{}}
	for name, doc := range sigs {
		s.Plugins[name] = doc
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
