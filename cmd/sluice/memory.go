package main

import (
	"fmt"
	"log/slog"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/host/membudget"
)

// memorySettings is what sluice serve was given about memory.
type memorySettings struct {
	limit       string // --memory-limit-mib: MiB, or "off"/"0"
	partMiB     int    // --s3-part-size-mib; 0: from the budget
	slots       int    // --workers + --backfill-parallelism
	goMemLimit  string // the GOMEMLIMIT environment variable
	defaultPart int    // part size when the budget is off and none is given
}

// memorySetup is what serve does with them.
type memorySetup struct {
	plan     membudget.Plan
	budget   *membudget.Budget // nil when the budget is off
	partSize int64
	conc     int // 0: objstore's default
	encoders int // 0: encode's default
}

// setupMemory derives the host's memory plan from s (host/membudget), sets the Go runtime's
// soft memory limit from it unless GOMEMLIMIT is set (GOMEMLIMIT wins), and logs the plan.
func setupMemory(s memorySettings, log *slog.Logger) (memorySetup, error) {
	v := strings.TrimSpace(strings.ToLower(s.limit))
	if v == "off" || v == "0" {
		part := s.partMiB
		if part == 0 {
			part = s.defaultPart
		}
		log.Info("memory budget off (--memory-limit-mib off): no soft memory limit, runs are not admitted against a budget", "s3_part_size_mib", part)
		return memorySetup{partSize: int64(part) << 20}, nil
	}
	mib, err := strconv.ParseInt(v, 10, 64)
	if err != nil || mib < 0 {
		return memorySetup{}, fmt.Errorf("--memory-limit-mib (SLUICE_MEMORY_LIMIT_MIB) must be a number of MiB or \"off\", got %q", s.limit)
	}
	in := membudget.Input{Limit: mib << 20, Slots: s.slots, CPUs: goruntime.GOMAXPROCS(0), PartSize: int64(s.partMiB) << 20}
	if s.goMemLimit != "" {
		// The runtime read GOMEMLIMIT at start; -1 reads the limit without changing it.
		in.GoLimit = debug.SetMemoryLimit(-1)
	}
	p, err := membudget.Derive(in)
	if err != nil {
		return memorySetup{}, fmt.Errorf("memory budget: %w", err)
	}
	if s.goMemLimit != "" {
		log.Info("GOMEMLIMIT is set: it is the Go soft memory limit, and the memory budget is sized from it instead of --memory-limit-mib", "GOMEMLIMIT", s.goMemLimit)
	} else {
		debug.SetMemoryLimit(p.GoLimit)
	}
	log.Info(p.String())
	if p.Short {
		log.Warn("the memory limit is smaller than one run's allowance: runs execute one at a time and may exceed it; raise --memory-limit-mib",
			"memory_limit_mib", p.Limit>>20, "run_mib", p.PerRun>>20, "minimum_mib", (membudget.OutsideGo+membudget.BaseHeap+p.PerRun)>>20)
	}
	return memorySetup{plan: p, budget: membudget.New(p), partSize: p.PartSize, conc: p.Concurrency, encoders: p.EncoderWorkers}, nil
}
