//go:build !(linux || darwin || freebsd)

package runtime

// newLinearMemory: without mmap, a Go slice grown by copying, bounded by max.
func newLinearMemory(capBytes, maxBytes uint64) linearMemory {
	return &heapMemory{buf: make([]byte, 0, capBytes), max: maxBytes}
}
