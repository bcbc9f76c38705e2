package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero/experimental"

	"github.com/sluicehq/sluice/abi"
)

// memBudget bounds the linear memory every live instance of every plugin may reach: each
// instance reserves its plugin's memory limit (MemoryLimitPages x 64 KiB) from the budget
// for its whole life, idle in a pool or borrowed, and gives it back when it is closed. So
// the sum of the instances' limits never exceeds Config.MemoryBudgetBytes, whatever the
// guests do with memory.grow.
type memBudget struct {
	total uint64

	mu      sync.Mutex
	used    uint64
	changed chan struct{} // closed and replaced whenever used decreases
}

func newMemBudget(total uint64) *memBudget {
	return &memBudget{total: total, changed: make(chan struct{})}
}

// errBudgetWait is returned by reserve when ctx ended while waiting.
var errBudgetWait = errors.New("waiting for room in the plugin memory budget")

// reserve takes n bytes from the budget, waiting until ctx ends. While the budget is short
// it asks evict to close an idle instance (of any plugin) and retries at once if it did.
func (b *memBudget) reserve(ctx context.Context, n uint64, evict func() bool) error {
	if n > b.total {
		return fmt.Errorf("an instance needs %d MiB, more than the whole plugin memory budget of %d MiB", n>>20, b.total>>20)
	}
	for {
		b.mu.Lock()
		if b.used+n <= b.total {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		if evict() {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return errBudgetWait
		}
	}
}

func (b *memBudget) release(n uint64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// InUse returns the bytes of the plugin memory budget reserved by live instances.
func (b *memBudget) inUse() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// MemoryBudget reports the host's plugin memory budget and how much of it live instances
// reserve (each instance reserves its plugin's memory limit).
func (rt *Runtime) MemoryBudget() (total, inUse uint64) {
	return rt.budget.total, rt.budget.inUse()
}

// evictIdle closes one idle instance of any loaded plugin, to make room in the memory
// budget. It reports whether it closed one.
func (rt *Runtime) evictIdle() bool {
	rt.mu.Lock()
	pools := make([]*pool, 0, len(rt.loaded))
	for _, p := range rt.loaded {
		pools = append(pools, p.pool)
	}
	rt.mu.Unlock()
	for _, pl := range pools {
		pl.mu.Lock()
		if len(pl.idle) == 0 {
			pl.mu.Unlock()
			continue
		}
		in := pl.idle[0] // the least recently returned
		pl.idle = pl.idle[1:]
		pl.mu.Unlock()
		rt.log.Info("plugin instance discarded", "plugin", pl.p.Manifest.Name, "sha256", pl.p.SHA256[:12], "reason", "idle instance evicted to make room in the plugin memory budget")
		in.destroy(context.Background())
		pl.mu.Lock()
		pl.maybeReleaseLocked(context.Background())
		pl.mu.Unlock()
		return true
	}
	return false
}

// reserveMemory takes the instance's share of the budget before it is instantiated.
func (p *Plugin) reserveMemory(ctx context.Context) (uint64, error) {
	n := uint64(p.limits.MemoryLimitPages) * 65536
	err := p.rt.budget.reserve(ctx, n, p.rt.evictIdle)
	if err == nil {
		return n, nil
	}
	if errors.Is(err, errBudgetWait) {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
			return 0, &CancelledError{Plugin: p.Manifest.Name, Export: "instance pool", Err: cerr}
		}
		total, used := p.rt.MemoryBudget()
		return 0, &HostError{Status: abi.StatusLimitExceeded, Msg: fmt.Sprintf(
			"plugin %q: no room for another instance (memory limit %d MiB) in the host's plugin memory budget of %d MiB (%d MiB reserved by running instances); try again later or raise SLUICE_PLUGIN_MEMORY_BUDGET_MIB",
			p.Manifest.Name, n>>20, total>>20, used>>20)}
	}
	return 0, &HostError{Status: abi.StatusLimitExceeded, Msg: fmt.Sprintf("plugin %q: %v", p.Manifest.Name, err)}
}

// linearMemory is an instance's linear memory allocated by the runtime (see
// memory_mmap.go): reserved once at the memory's maximum, so memory.grow never copies, and
// handed back to the OS when the instance is closed.
type linearMemory interface {
	experimental.LinearMemory
	// release returns the memory to the OS. The instance must not run any more.
	release()
}

// heapMemory is the portable fallback: a Go slice grown by copying (wazero's default).
type heapMemory struct {
	mu  sync.Mutex
	buf []byte
	max uint64
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if size > m.max {
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	nb := make([]byte, size)
	copy(nb, m.buf)
	m.buf = nb
	return m.buf
}

func (m *heapMemory) Free() {
	m.mu.Lock()
	m.buf = nil
	m.mu.Unlock()
}

func (m *heapMemory) release() { m.Free() }
