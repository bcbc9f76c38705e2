package rustsdk

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/internal/toolchain"
)

// The crate's own unit tests (`mod tests` in src/lib.rs, against its fake host), compiled
// natively with Debian's rustc (`rustc --test`) and run.
func TestCrateUnitTests(t *testing.T) {
	rustc := toolchain.RustC(t)
	bin := filepath.Join(t.TempDir(), "sluice_sdk_test")
	src, err := filepath.Abs(filepath.Join("src", "lib.rs"))
	if err != nil {
		t.Fatal(err)
	}
	toolchain.Run(t, t.TempDir(), nil, rustc, "--edition", "2018", "--test", "--crate-name", "sluice_sdk", "-o", bin, src)
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if testing.Verbose() {
		os.Stdout.Write(out)
	}
}
