// Package membudget sizes a Sluice host's memory from one number, the memory limit
// (`sluice serve --memory-limit-mib`, SLUICE_MEMORY_LIMIT_MIB): the Go runtime's soft memory
// limit, what one run may hold (its S3 part size and upload concurrency, the parallel
// encoder's workers) and so how many runs fit at once. A Budget then admits runs against it:
// a run reserves its allowance before it starts and waits while the budget is spent.
//
// The constants below were measured with bench/e2e.sh (docs/performance.md, "Memory bounded
// by default (issue 14)"); the arithmetic is Derive.
package membudget

import (
	"errors"
	"fmt"
	"math"
)

const (
	// MiB is 2^20 bytes.
	MiB = 1 << 20

	// DefaultLimit is the memory limit when none is given: one export of any size peaks
	// under 256 MB of resident memory with it (docs/performance.md).
	DefaultLimit = 232 * MiB

	// OutsideGo is the resident memory that the Go runtime does not count against its soft
	// limit: the binary's file pages (~60 MiB), the plugins' compiled code and the guests'
	// linear memory (~25 MiB anonymous), measured as an export's peak RSS less the Go
	// limit (83-90 MiB, docs/performance.md). The Go limit is the memory limit minus this.
	OutsideGo = 88 * MiB

	// BaseHeap is the Go heap of a host with its plugins loaded and no run executing
	// (storage, the queue, the runtime, HTTP), plus the runtime's own overhead.
	BaseHeap = 48 * MiB

	// RunBase is what one run holds besides its part buffers and encoder blocks: the
	// source's decoded blocks (ClickHouse's native reader: one block's columns, reused, a
	// few MB at 4,096 rows; clickhouse-go over HTTP: ~20 MB), the batch being built (8 MiB at most),
	// the plugin session, and room for the garbage made between two collections.
	RunBase = 32 * MiB

	// MinPartSize is S3's smallest part; MaxPartSize is the largest part the budget picks on
	// its own (an explicit --s3-part-size-mib may go up to S3's 5 GiB).
	MinPartSize = 5 * MiB
	MaxPartSize = 50 * MiB

	// DefaultConcurrency is the S3 upload concurrency when the allowance is large enough for
	// it: two parts in flight while a third fills. Below that, one part in flight.
	DefaultConcurrency = 2

	// EncoderBlockBytes is what one block of the parallel encoder holds in flight: its
	// uncompressed buffer (1 MiB block, allocated with a quarter more) and its compressed
	// output (host/encode/blocks.go).
	EncoderBlockBytes = 2 * MiB
)

// Input is what Derive sizes from.
type Input struct {
	// Limit is the memory the process should stay within, in bytes; 0 means DefaultLimit.
	Limit int64
	// GoLimit, when positive, is a Go soft limit set by the operator (GOMEMLIMIT): it wins,
	// and the memory limit becomes GoLimit + OutsideGo.
	GoLimit int64
	// Slots is how many runs the host may execute at once (scheduled workers + backfill
	// workers). Each run's share of the budget is the budget over Slots.
	Slots int
	// CPUs is GOMAXPROCS: the parallel encoder's default number of workers.
	CPUs int
	// PartSize and Concurrency, when positive, are set by the operator and are not derived.
	PartSize    int64
	Concurrency int
}

// Plan is the outcome of Derive.
type Plan struct {
	Limit   int64 // the memory limit the plan was sized for
	GoLimit int64 // the Go runtime's soft memory limit (debug.SetMemoryLimit)
	// Runs is the bytes of the Go limit available to runs: GoLimit - BaseHeap.
	Runs int64
	// PerRun is what each run reserves before it starts: RunBase + its encoder's blocks +
	// (Concurrency + 1) part buffers.
	PerRun int64
	// Fit is how many runs execute at once within Runs (at least 1, at most Slots); the
	// others wait for budget.
	Fit            int
	Slots          int
	PartSize       int64
	Concurrency    int
	EncoderWorkers int
	// Short is set when the budget is smaller than one run's allowance: one run is admitted
	// at a time anyway (so that a run always fits), and the host may exceed the limit.
	Short bool
}

// Capacity is what a Budget admits against: Runs, or one run's allowance if Runs is
// smaller (a single run always fits).
func (p Plan) Capacity() int64 { return max(p.Runs, p.PerRun) }

// EncoderBytes is what the parallel encoder holds with w workers: 2w blocks in flight and
// the one being filled.
func EncoderBytes(w int) int64 { return int64(2*w+1) * EncoderBlockBytes }

// RunBytes is one run's allowance with these settings.
func RunBytes(partSize int64, concurrency, encoderWorkers int) int64 {
	return RunBase + EncoderBytes(encoderWorkers) + int64(concurrency+1)*partSize
}

// Derive sizes the host from in. Explicit PartSize and Concurrency are kept (and counted);
// the rest follows from the budget. The encoder keeps CPUs workers unless their blocks
// would take more than an eighth of Runs (many cores, a small budget; at least one worker).
// Each of Slots runs gets an equal share of Runs, and the part buffers what is left of it
// after RunBase and the encoder, with concurrency 2 when parts of at least MinPartSize fit, else
// 1, and parts between MinPartSize and MaxPartSize, rounded down to a MiB.
func Derive(in Input) (Plan, error) {
	p := Plan{Limit: in.Limit, Slots: max(in.Slots, 1)}
	switch {
	case in.GoLimit > 0:
		p.GoLimit = in.GoLimit
		p.Limit = min(in.GoLimit, math.MaxInt64-OutsideGo) + OutsideGo // GOMEMLIMIT may be MaxInt64
	case in.Limit < 0:
		return Plan{}, errors.New("negative memory limit")
	default:
		if p.Limit == 0 {
			p.Limit = DefaultLimit
		}
		p.GoLimit = p.Limit - OutsideGo
	}
	if in.PartSize != 0 && (in.PartSize < MinPartSize || in.PartSize > 5<<30) {
		return Plan{}, fmt.Errorf("part size %d bytes outside [5 MiB, 5 GiB]", in.PartSize)
	}
	if in.Concurrency < 0 {
		return Plan{}, errors.New("negative upload concurrency")
	}
	p.Runs = max(p.GoLimit-BaseHeap, 0)
	share := p.Runs / int64(p.Slots)

	p.EncoderWorkers = max(in.CPUs, 1)
	for p.EncoderWorkers > 1 && EncoderBytes(p.EncoderWorkers) > p.Runs/8 {
		p.EncoderWorkers--
	}
	left := share - RunBase - EncoderBytes(p.EncoderWorkers)

	p.PartSize, p.Concurrency = in.PartSize, in.Concurrency
	if p.PartSize == 0 {
		c := p.Concurrency
		if c == 0 {
			c = DefaultConcurrency
			if left/int64(c+1) < MinPartSize {
				c = 1
			}
		}
		p.PartSize = min(max(left/int64(c+1)/MiB*MiB, MinPartSize), MaxPartSize)
		p.Concurrency = c
	}
	if p.Concurrency == 0 {
		p.Concurrency = DefaultConcurrency
	}
	p.PerRun = RunBytes(p.PartSize, p.Concurrency, p.EncoderWorkers)
	p.Fit = int(min(p.Runs/p.PerRun, int64(p.Slots)))
	if p.Fit < 1 {
		p.Fit, p.Short = 1, true
	}
	return p, nil
}

// String is the plan in one line, for the start-up log.
func (p Plan) String() string {
	return fmt.Sprintf("memory limit %d MiB (Go soft limit %d MiB): %d of %d runs at once, %d MiB each (S3 parts %d MiB x %d in flight + 1 filling, encoder %d workers)",
		p.Limit/MiB, p.GoLimit/MiB, p.Fit, p.Slots, p.PerRun/MiB, p.PartSize/MiB, p.Concurrency, p.EncoderWorkers)
}
