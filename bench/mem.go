package bench

import (
	"bufio"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MemPeak is the peak of the Go runtime's memory statistics over a sampling period.
type MemPeak struct {
	HeapInuse uint64 // runtime.MemStats.HeapInuse: bytes in in-use heap spans
	HeapSys   uint64 // runtime.MemStats.HeapSys
	Sys       uint64 // runtime.MemStats.Sys: everything the Go runtime got from the OS
	Samples   int
}

// SampleMem samples runtime.MemStats every interval until the returned function is called,
// which returns the peaks. (wazero's linear memories are mmapped outside the Go heap: they
// show in VmHWM/VmRSS, not here.)
func SampleMem(interval time.Duration) (stop func() MemPeak) {
	var (
		mu   sync.Mutex
		peak MemPeak
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	sample := func() {
		var m goruntime.MemStats
		goruntime.ReadMemStats(&m)
		mu.Lock()
		peak.HeapInuse = max(peak.HeapInuse, m.HeapInuse)
		peak.HeapSys = max(peak.HeapSys, m.HeapSys)
		peak.Sys = max(peak.Sys, m.Sys)
		peak.Samples++
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() MemPeak {
		close(done)
		wg.Wait()
		sample()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// ProcStatus returns a field of /proc/self/status in bytes ("VmHWM", "VmRSS"), or -1 where
// there is no /proc.
func ProcStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		fs := strings.Fields(v) // "123456 kB"
		if len(fs) == 0 {
			return -1
		}
		n, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return -1
		}
		if len(fs) > 1 && fs[1] == "kB" {
			n <<= 10
		}
		return n
	}
	return -1
}
