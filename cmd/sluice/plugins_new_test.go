package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/toolchain"
)

// `sluice plugins new` for each language writes a project that builds with the real
// toolchain (its own Makefile: go with GOOS=wasip1, Debian's rustc, npm's asc), passes the
// conformance suite and runs over its recorded batch with the test kit.
func TestPluginsNewBuildsAndPasses(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range []string{"go", "rust", "assemblyscript"} {
		t.Run(lang, func(t *testing.T) {
			var env []string
			switch lang {
			case "rust":
				env = append(env, "RUSTC="+toolchain.RustC(t))
			case "assemblyscript":
				toolchain.NPM(t)
			}
			dir := filepath.Join(t.TempDir(), "p")
			name := "my-" + lang
			if err := pluginsNew([]string{"--lang", lang, "--dir", dir, "--sluice-dir", root, name}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
				t.Fatal(err)
			}
			toolchain.Run(t, dir, env, "make", "build")
			wasm := filepath.Join(dir, name+".wasm")
			ctx := context.Background()
			if err := pluginsTest(ctx, []string{"--config", `{"bucket_name": "conformance"}`, wasm}); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			err := pluginsRun(ctx, []string{"--config", `{"bucket_name": "b"}`, "--batch", filepath.Join(dir, "testdata", "events.hex"),
				"--batch", filepath.Join(root, "abi", "testdata", "events_2.hex"), "--out", out, wasm})
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(out, "2025-01-01T00:00:00Z-2025-01-01T01:00:00Z.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(got), "\n"); n != 5 { // 3 + 2 recorded events
				t.Fatalf("%d lines, want 5:\n%s", n, got)
			}
		})
	}
}

func TestPluginsNewRefuses(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--lang", "cobol", "--dir", t.TempDir(), "p"}, `--lang "cobol"`},
		{[]string{"--lang", "rust", "--dir", t.TempDir(), "Bad Name"}, "must match"},
		{[]string{"--lang", "rust", "--dir", full, "p"}, "not empty"},
		{[]string{"--lang", "go", "--dir", t.TempDir(), "--sluice-dir", t.TempDir(), "p"}, "--sluice-dir"},
		{[]string{"p"}, "usage"},
	} {
		err := pluginsNew(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("plugins new %v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
