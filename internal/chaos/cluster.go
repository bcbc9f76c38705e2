package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RepoRoot is the module's root directory (where bin/plugins and plugins.lock are).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build compiles `sluice` into dir (without the race detector: the suite measures the
// host, not the detector) and returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "sluice")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/sluice")
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// HostConfig is what every host of a cluster is started with.
type HostConfig struct {
	Bin           string
	Dir           string // each host gets Dir/host-N (data dir and logs)
	DatabaseURL   string
	ClickHouseDSN string
	SecretKey     string
	Token         string
	RunTimeout    time.Duration
	RescueAfter   time.Duration
	SettleDelay   time.Duration
	ExtraArgs     []string
	// SharedCache, when set, is the wazero compilation cache of every host (a symlink from
	// each data dir): plugins compile once, not once per host. wazero writes its cache
	// files by rename, so processes can share it.
	SharedCache string
}

// Host is one `sluice serve` process, restartable on the same address and data dir.
type Host struct {
	N    int
	Addr string
	cfg  HostConfig

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
	kills  int
	logf   *os.File
}

// URL is the host's base URL.
func (h *Host) URL() string { return "http://" + h.Addr }

// DataDir is the host's data directory.
func (h *Host) DataDir() string { return filepath.Join(h.cfg.Dir, fmt.Sprintf("host-%d", h.N)) }

// LogPath is the host's log file (every start appends to it).
func (h *Host) LogPath() string { return filepath.Join(h.cfg.Dir, fmt.Sprintf("host-%d.log", h.N)) }

// Cluster is a set of hosts sharing one database and one source.
type Cluster struct {
	Hosts []*Host
}

// NewCluster reserves n addresses; nothing starts until Start.
func NewCluster(n int, cfg HostConfig) (*Cluster, error) {
	c := &Cluster{}
	for i := 0; i < n; i++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		c.Hosts = append(c.Hosts, &Host{N: i + 1, Addr: addr, cfg: cfg})
	}
	return c, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start starts every host and waits until each is ready.
func (c *Cluster) Start(ctx context.Context) error {
	for _, h := range c.Hosts {
		if err := h.Start(); err != nil {
			return err
		}
	}
	for _, h := range c.Hosts {
		if err := h.WaitReady(ctx, readyTimeout); err != nil {
			return err
		}
	}
	return nil
}

// Stop kills every host (SIGKILL: the suite never relies on a graceful stop).
func (c *Cluster) Stop() {
	for _, h := range c.Hosts {
		h.Kill()
	}
	for _, h := range c.Hosts {
		h.mu.Lock()
		if h.logf != nil {
			h.logf.Close()
			h.logf = nil
		}
		h.mu.Unlock()
	}
}

// Start starts the process (no-op when it runs).
func (h *Host) Start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil {
		return nil
	}
	if h.logf == nil {
		f, err := os.OpenFile(h.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		h.logf = f
	}
	if h.cfg.SharedCache != "" {
		link := filepath.Join(h.DataDir(), "cache", "wazero")
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				return err
			}
			if err := os.MkdirAll(h.cfg.SharedCache, 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.cfg.SharedCache, link); err != nil {
				return err
			}
		}
	}
	root := RepoRoot()
	args := []string{"serve", "--addr", h.Addr, "--data-dir", h.DataDir(), "--api-token", h.cfg.Token,
		"--database-url", h.cfg.DatabaseURL, "--secret-key", h.cfg.SecretKey,
		"--clickhouse-dsn", h.cfg.ClickHouseDSN, "--clickhouse-capture",
		"--plugins-dir", filepath.Join(root, "bin", "plugins"), "--lock", filepath.Join(root, "plugins.lock"),
		"--run-timeout", h.cfg.RunTimeout.String(), "--rescue-after", h.cfg.RescueAfter.String(),
		"--settle-delay", h.cfg.SettleDelay.String()}
	args = append(args, h.cfg.ExtraArgs...)
	cmd := exec.Command(h.cfg.Bin, args...)
	cmd.Stdout, cmd.Stderr = h.logf, h.logf
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true", "GCE_METADATA_HOST=127.0.0.1:1",
		"SLUICE_BIGQUERY_ENDPOINT=http://127.0.0.1:1/", "SLUICE_SNOWFLAKE_ENDPOINT=http://127.0.0.1:1")
	fmt.Fprintf(h.logf, "=== chaos: start %d at %s\n", h.starts+1, time.Now().UTC().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start host %d: %w", h.N, err)
	}
	h.starts++
	h.cmd = cmd
	done := make(chan struct{})
	h.done = done
	go func() { _ = cmd.Wait(); close(done) }()
	return nil
}

// Kill sends SIGKILL and waits for the process to exit; it reports whether one ran.
func (h *Host) Kill() bool {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.cmd = nil
	if cmd != nil {
		h.kills++
		if h.logf != nil {
			fmt.Fprintf(h.logf, "=== chaos: kill -9 at %s\n", time.Now().UTC().Format(time.RFC3339Nano))
		}
	}
	h.mu.Unlock()
	if cmd == nil {
		return false
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return true
}

// state reports whether a process was started (and not killed since) and whether it
// exited on its own.
func (h *Host) state() (started, exited bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return false, false
	}
	select {
	case <-h.done:
		return true, true
	default:
		return true, false
	}
}

// Running reports whether the process is started and has not exited.
func (h *Host) Running() bool {
	started, exited := h.state()
	return started && !exited
}

// Exited reports a process that exited on its own (a crash, not a kill).
func (h *Host) Exited() bool {
	_, exited := h.state()
	return exited
}

// Pid is the running process's id (0 when none).
func (h *Host) Pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil || h.cmd.Process == nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// Counts returns how many times the host was started and killed.
func (h *Host) Counts() (starts, kills int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.starts, h.kills
}

// WaitReady waits for /readyz to answer 200.
func (h *Host) WaitReady(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for ctx.Err() == nil {
		if h.Exited() {
			return fmt.Errorf("host %d exited while starting (see %s)", h.N, h.LogPath())
		}
		resp, err := client.Get(h.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("host %d not ready after %s (see %s)", h.N, d, h.LogPath())
}

// RSS is the process's resident set size in bytes, from /proc.
func (h *Host) RSS() (int64, error) {
	pid := h.Pid()
	if pid == 0 {
		return 0, errors.New("not running")
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// LogTail is the last n lines of the host's log.
func (h *Host) LogTail(n int) string {
	b, _ := os.ReadFile(h.LogPath())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// readyTimeout bounds a host's start: on a loaded machine the first start compiles every
// locked plugin (over a minute at a load average of 25 on 2 vCPUs).
const readyTimeout = 4 * time.Minute
