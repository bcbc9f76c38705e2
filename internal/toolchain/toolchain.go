// Package toolchain finds and runs the plugin toolchains that the SDK and scaffold tests
// build with: npm (AssemblyScript's asc, pinned by a package-lock.json) and Debian's rustc
// with the wasm32-wasi standard library. A missing toolchain skips the test, except with
// SLUICE_REQUIRE_SERVICES=1 (CI), where it fails it: CI installs them (.ci/deps).
package toolchain

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// missing skips t, or fails it in CI.
func missing(t testing.TB, what, hint string) {
	t.Helper()
	if os.Getenv("SLUICE_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s is missing and SLUICE_REQUIRE_SERVICES=1: %s", what, hint)
	}
	t.Skipf("%s is missing (%s)", what, hint)
}

// NPM returns the path of npm, or skips t when npm is not installed.
func NPM(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("npm")
	if err != nil {
		missing(t, "npm", "apt-get install nodejs npm, or make deps")
	}
	return p
}

// RustC returns Debian's rustc ($RUSTC, default /usr/bin/rustc) when it has the wasm32-wasi
// target, or skips t.
func RustC(t testing.TB) string {
	t.Helper()
	rustc := os.Getenv("RUSTC")
	if rustc == "" {
		rustc = "/usr/bin/rustc"
	}
	out, err := exec.Command(rustc, "--print", "target-list").Output()
	if err != nil || !strings.Contains(string(out), "wasm32-wasi\n") {
		missing(t, rustc+" with wasm32-wasi", "apt-get install rustc libstd-rust-dev-wasm32 lld-14, or make deps")
	}
	return rustc
}

// Run runs a command in dir with extra environment, failing t with its output.
func Run(t testing.TB, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
}
