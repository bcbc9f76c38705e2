package runtime_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

// A sluice_describe that never returns must fail the install within the control deadline
// (a few seconds by default), not block it for the 60 s run-call deadline.
func TestDescribeDeadline(t *testing.T) {
	before := goruntime.NumGoroutine()
	rt := newRuntime(t, runtime.Config{})
	t0 := time.Now()
	_, err := rt.Validate(context.Background(), wasm(t, "describeloop"), nil)
	el := time.Since(t0)
	if err == nil {
		t.Fatal("install succeeded; want a deadline error")
	}
	if !errors.Is(err, runtime.ErrInvalidPlugin) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v; want an invalid plugin error wrapping a deadline", err)
	}
	if want := "sluice_describe did not return within its deadline of 5s"; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q; want it to contain %q", err, want)
	}
	if el > 8*time.Second {
		t.Errorf("install failed after %v; want within the 5s control deadline", el)
	}
	t.Logf("after %v: %v", el, err)
	requireGood(t, rt)
	checkGoroutines(t, before)
}

// Same for sluice_validate (an export's config check).
func TestValidateDeadline(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	ctx := context.Background()
	p, err := rt.Load(ctx, wasm(t, "validateloop"), nil, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err = p.Validate(ctx, abi.ValidateRequest{Config: map[string]any{}})
	el := time.Since(t0)
	var de *runtime.DeadlineError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v; want a DeadlineError", err)
	}
	if want := `plugin "validateloop": sluice_validate did not return within its deadline of 5s`; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q; want it to contain %q", err, want)
	}
	if el > 8*time.Second {
		t.Errorf("validate failed after %v; want within the 5s control deadline", el)
	}
	// The plugin still serves runs afterwards (a fresh instance).
	s, err := p.Open(ctx, openReq("after"), runtime.Bindings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

const memChildEnv = "SLUICE_RUNTIME_MEMORY_CHILD"

// Memory bomb: 4 concurrent runs of a guest that grows its memory to the limit and writes
// every page. The host must stay under its plugin memory budget (+100 MiB for everything
// else) and give the memory back once the instances are discarded. Measured in a child
// process so VmHWM is this scenario's alone.
func TestMemoryBombBudget(t *testing.T) {
	if os.Getenv(memChildEnv) == "1" {
		memoryBombChild(t)
		return
	}
	if goruntime.GOOS != "linux" {
		t.Skip("reads /proc/self/status")
	}
	if testing.Short() {
		t.Skip("short")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryBombBudget$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), memChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
}

const (
	bombBudget = 256 << 20 // host plugin memory budget of the child
	bombPages  = 2048      // 128 MiB per instance
)

func memoryBombChild(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, runtime.Config{MemoryBudgetBytes: bombBudget})
	p, err := rt.Load(ctx, wasm(t, "memhog"), nil, runtime.Limits{MemoryLimitPages: bombPages, PoolSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	goruntime.GC()
	idle := procStatus(t, "VmRSS")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range 4 {
		wg.Go(func() {
			s, err := p.Open(ctx, openReq(fmt.Sprint("bomb", i)), runtime.Bindings{})
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = s.WriteBatch(ctx, smallBatch, 3)
			s.Close(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		var te *runtime.TrapError
		if !errors.As(err, &te) || te.Kind != runtime.TrapMemory || !strings.Contains(err.Error(), "linear memory reached its limit of 128 MiB") {
			t.Errorf("run %d: %v; want a memory_limit trap naming the 128 MiB limit", i, err)
		}
	}
	hwm := procStatus(t, "VmHWM")
	time.Sleep(200 * time.Millisecond)
	after := procStatus(t, "VmRSS")
	t.Logf("MEMREPORT idle_rss=%dMiB peak_hwm=%dMiB rss_after=%dMiB budget=%dMiB", idle>>20, hwm>>20, after>>20, bombBudget>>20)
	if limit := uint64(bombBudget + 100<<20); hwm > limit {
		t.Errorf("peak RSS %d MiB; want under the %d MiB budget + 100 MiB", hwm>>20, bombBudget>>20)
	}
	if after > idle+32<<20 {
		t.Errorf("RSS %d MiB after the runs; want near the idle %d MiB", after>>20, idle>>20)
	}
	if _, used := rt.MemoryBudget(); used > bombPages*65536 {
		t.Errorf("%d MiB of the budget still reserved after the runs; want at most one idle instance", used>>20)
	}
}

// procStatus reads a "kB" field of /proc/self/status, in bytes.
func procStatus(t *testing.T, field string) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n << 10
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}
