package conformance_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
)

func run(t *testing.T, name string) *conformance.Report {
	t.Helper()
	w, err := os.ReadFile("../testdata/" + name + ".wasm")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.New(context.Background(), runtime.Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	return conformance.Run(context.Background(), rt, w, conformance.Options{RowsPerBatch: 10})
}

func TestReportsFailures(t *testing.T) {
	rep := run(t, "trap")
	t.Log("\n" + rep.String())
	if rep.OK() || !strings.Contains(rep.String(), "FAIL write 3 batches") {
		t.Fatal("a trapping plugin passed")
	}
	// good.wat returns records 0 whatever it is sent: finish must fail.
	rep = run(t, "good")
	if rep.OK() || !strings.Contains(rep.String(), "result records 0, sent 30") {
		t.Fatalf("good.wat passed:\n%s", rep)
	}
	rep = run(t, "badimport")
	if rep.OK() || len(rep.Steps) != 1 {
		t.Fatalf("bad import:\n%s", rep)
	}
}
