package conformance_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/abi"
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

// badObject assembles testdata/badobject.wat in one of its modes (see the file).
func badObject(t *testing.T, mode int) []byte {
	t.Helper()
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm not on PATH (make deps installs wabt)")
	}
	src, err := os.ReadFile("testdata/badobject.wat")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wat, out := filepath.Join(dir, "m.wat"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(wat, bytes.ReplaceAll(src, []byte("(i32.const __MODE__)"), []byte("(i32.const "+strconv.Itoa(mode)+")")), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("wat2wasm", wat, "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	w, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func stepOf(rep *conformance.Report, name string) conformance.Step {
	for _, s := range rep.Steps {
		if s.Name == name {
			return s
		}
	}
	return conformance.Step{Name: name, Message: "(no such step)"}
}

func uuidOf(e abi.Event) string {
	u := e.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// The suite fails a plugin that drops or doubles records, that accepts malformed batches or
// that succeeds on sluice_finish after its write failed, each in its own step, naming the
// records; the same plugin without the bug passes every step.
func TestStricterSuite(t *testing.T) {
	rt, err := runtime.New(context.Background(), runtime.Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	first := uuidOf(conformance.Events(10, 500, 0)[0])
	for _, tc := range []struct {
		name      string
		mode      int
		failing   []string // the steps that fail; the first's message has every substring
		substring []string
	}{
		{"ok", 0, nil, nil},
		{"drops a record", 1, []string{"output matches input", "second run on the same instance"},
			[]string{"wrote 29 records for 30 sent", "1 of 30 records missing (" + first + ")"}},
		{"writes a record twice", 2, []string{"output matches input", "second run on the same instance"},
			[]string{"wrote 31 records for 30 sent", "1 records written more than once (" + first + " x2)"}},
		{"finish after its write failed", 3, []string{"finish refused after a failed write"},
			[]string{"non-zero flags: sluice_finish reported success (records 8)", "non-zero flags: committed out.jsonl after the failed write"}},
		{"accepts malformed batches", 4, []string{"malformed batches refused"}, []string{"non-zero flags: accepted", "no columns: accepted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := conformance.Run(context.Background(), rt, badObject(t, tc.mode), conformance.Options{RowsPerBatch: 10})
			t.Log("\n" + rep.String())
			// The required integer field without a default got a value of its type.
			if s := stepOf(rep, "manifest sanity"); !s.OK || !strings.Contains(s.Message, `given partitions=1`) ||
				!strings.Contains(s.Message, `sluice plugins test -config '{"partitions": ...}'`) {
				t.Errorf("manifest sanity: %+v", s)
			}
			for _, s := range rep.Steps {
				if want := !slices.Contains(tc.failing, s.Name); s.OK != want {
					t.Errorf("step %q: ok=%v, want %v", s.Name, s.OK, want)
				}
			}
			for _, sub := range tc.substring {
				if s := stepOf(rep, tc.failing[0]); !strings.Contains(s.Message, sub) {
					t.Errorf("step %q: %q lacks %q", s.Name, s.Message, sub)
				}
			}
		})
	}
}

// After a failed write the suite does what the host does: it classifies the failure and
// closes the run, without sluice_finish.
func TestStopsAfterAFailedWrite(t *testing.T) {
	rep := run(t, "trap")
	if s := stepOf(rep, "finish"); !s.Skipped || !strings.Contains(s.Message, "without sluice_finish") {
		t.Fatalf("finish after a failed write:\n%s", rep)
	}
	if s := stepOf(rep, "classify the write failure"); !s.OK {
		t.Fatalf("classify:\n%s", rep)
	}
}
