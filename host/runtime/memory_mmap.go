//go:build linux || darwin || freebsd

package runtime

import (
	"runtime"
	"sync"
	"syscall"
)

// newLinearMemory reserves max bytes of address space outside the Go heap (anonymous,
// private, not committed: a page costs memory only once the guest writes it), so growing
// the memory never copies it and leaves no garbage behind, and closing the instance gives
// every page back to the OS at once instead of waiting for the GC and the scavenger.
// memory.grow past max fails in the guest (wazero never asks for more than the limit).
func newLinearMemory(capBytes, maxBytes uint64) linearMemory {
	if maxBytes == 0 || maxBytes != uint64(int(maxBytes)) {
		return &heapMemory{max: maxBytes}
	}
	b, err := syscall.Mmap(-1, 0, int(maxBytes), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|mapNoReserve)
	if err != nil {
		return &heapMemory{max: maxBytes}
	}
	r := &region{b: b}
	m := &mmapMemory{r: r}
	// Safety net: an instance dropped without release (a session abandoned after the
	// runtime closed) still unmaps its reservation once nothing references it.
	runtime.AddCleanup(m, func(r *region) { r.unmap() }, r)
	return m
}

type region struct {
	mu sync.Mutex
	b  []byte // the whole reservation; nil once unmapped
}

func (r *region) unmap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.b != nil {
		_ = syscall.Munmap(r.b)
		r.b = nil
	}
}

type mmapMemory struct{ r *region }

// Reallocate implements experimental.LinearMemory: the reservation never moves.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	m.r.mu.Lock()
	defer m.r.mu.Unlock()
	if m.r.b == nil || size > uint64(len(m.r.b)) {
		return nil
	}
	return m.r.b[:size]
}

// Free implements experimental.LinearMemory. wazero calls it when the module closes, which
// may happen (runtime closed, deadline) while a guest call is still unwinding on another
// goroutine: drop the pages (RSS goes down now, a late access reads zeros) but keep the
// mapping until release, which the pool calls once the instance can no longer run.
func (m *mmapMemory) Free() {
	m.r.mu.Lock()
	defer m.r.mu.Unlock()
	if m.r.b != nil {
		_ = syscall.Madvise(m.r.b, syscall.MADV_DONTNEED)
	}
}

func (m *mmapMemory) release() { m.r.unmap() }
