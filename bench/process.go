package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Helpers of the benchmarks that drive a real `sluice serve` process (bench/cmd/sluice-e2e,
// bench/cmd/sluice-scale).

// API is a client of a sluice serve's REST API.
type API struct{ Base, Token string }

// Do sends body as JSON, wants the status code want, and decodes the answer into out
// (when not nil).
func (a API) Do(method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.Base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// WaitReady waits up to 5 minutes (a first start compiles every locked plugin, slow on a
// busy machine) for GET base/readyz to answer 200, and fails at once when cmd has exited.
func WaitReady(base string, cmd *exec.Cmd) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if cmd.ProcessState != nil {
			return errors.New("sluice serve exited")
		}
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("sluice serve did not become ready in 5 minutes")
}

// ProcStatusOf returns a field of /proc/<pid>/status ("VmRSS", "VmHWM") in bytes, or -1.
func ProcStatusOf(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if fs := strings.Fields(v); ok && k == field && len(fs) > 0 {
			n, _ := strconv.ParseInt(fs[0], 10, 64)
			return n << 10
		}
	}
	return -1
}

// ProcCPU is the user + system CPU time of process pid so far, from /proc/<pid>/stat, or 0
// when it cannot be read. On a shared machine a process's CPU time varies far less than its
// wall time.
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces and parentheses) start
	// after its last ')': state, ppid, ... utime is field 14, stime field 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// LoadAvg is the 1, 5 and 15 minute load averages from /proc/loadavg, or "n/a".
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Stop sends SIGTERM to cmd and waits up to grace for it to exit, then kills it.
func Stop(cmd *exec.Cmd, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-waited
	}
}

// PrintLogTail prints the last n lines of the log file at path to stderr.
func PrintLogTail(path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sluice serve log: %v\n", err)
		return
	}
	lines := strings.Split(string(b), "\n")
	fmt.Fprintf(os.Stderr, "sluice serve log (last lines):\n%s\n", strings.Join(lines[max(0, len(lines)-n):], "\n"))
}
