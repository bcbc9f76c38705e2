// Package depcheck enforces that the plugin-facing packages import the standard library
// only: a plugin author who imports sdk/ pulls in nothing else.
package depcheck

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestABIAndSDKImportStandardLibraryOnly(t *testing.T) {
	const mod = "github.com/sluicehq/sluice/"
	for _, target := range []struct{ goos, goarch string }{{"linux", "amd64"}, {"wasip1", "wasm"}} {
		cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "../../abi/...", "../../sdk/...")
		cmd.Env = append(os.Environ(), "GOOS="+target.goos, "GOARCH="+target.goarch)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list (%s/%s): %v\n%s", target.goos, target.goarch, err, out)
		}
		for _, pkg := range strings.Fields(string(out)) {
			if !strings.HasPrefix(pkg, mod+"abi") && !strings.HasPrefix(pkg, mod+"sdk") {
				t.Errorf("%s/%s: abi or sdk depends on %s; only the standard library (and sdk -> abi) is allowed", target.goos, target.goarch, pkg)
			}
		}
	}
}
