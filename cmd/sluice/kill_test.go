package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillNineMidRun kills `sluice serve` with SIGKILL while a run is exporting, restarts
// it on the same data dir, and checks that the run is rescued and completes, exporting
// every event of its interval exactly once. It drives a real process and the real API.
func TestKillNineMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes for about a minute")
	}
	root, _ := filepath.Abs("../..")
	if _, err := os.Stat(filepath.Join(root, "bin/plugins/example.wasm")); err != nil {
		t.Fatalf("run `make plugins` first: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	// Every event in one hourly interval of the past, [hour-1h, hour).
	const events = 100_000
	hour := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	seedStart := time.Now()
	if out, err := exec.Command(bin, "demo", "--data-dir", data, "--events", fmt.Sprint(events), "--span", "1h",
		"--end", hour.Format(time.RFC3339)).CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	base := "http://" + addr
	const token = "kill-test-token"
	start := func(logName string) *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--addr", addr, "--data-dir", data, "--api-token", token,
			"--plugins-dir", filepath.Join(root, "bin/plugins"), "--lock", filepath.Join(root, "plugins.lock"),
			"--run-timeout", "30s", "--rescue-after", "31s", "--settle-delay", "1s")
		logf, err := os.Create(filepath.Join(dir, logName))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true",
			// No warehouse capability may reach the cloud: a closed loopback port.
			"SLUICE_BIGQUERY_ENDPOINT=http://127.0.0.1:1/", "SLUICE_SNOWFLAKE_ENDPOINT=http://127.0.0.1:1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				lines := strings.Split(string(b), "\n")
				t.Logf("%s (last lines):\n%s", logName, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		})
		waitHealthy(t, base)
		return cmd
	}
	call := func(method, path string, body any, out any) int {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if out != nil {
			_ = json.Unmarshal(raw, out)
		}
		if resp.StatusCode >= 300 {
			t.Logf("%s %s: HTTP %d %s", method, path, resp.StatusCode, raw)
		}
		return resp.StatusCode
	}

	first := start("serve-1.log")
	var exp struct{ ID string }
	if code := call("POST", "/api/v1/batch_exports", map[string]any{"name": "kill", "interval": "hour",
		"destination": map[string]any{"type": "example", "config": map[string]any{"bucket_name": "kill", "endpoint_url": "local"}}}, &exp); code != 201 {
		t.Fatalf("create export: HTTP %d", code)
	}
	t.Logf("seeded %d events in %s", events, time.Since(seedStart).Round(time.Millisecond))
	if code := call("POST", "/api/v1/batch_exports/"+exp.ID+"/backfills",
		map[string]any{"start_at": hour.Add(-time.Hour).Format(time.RFC3339), "end_at": hour.Format(time.RFC3339)}, nil); code != 201 {
		t.Fatalf("backfill: HTTP %d", code)
	}
	type run struct {
		ID, Status       string
		LatestError      string `json:"latest_error"`
		Attempt          int
		RecordsCompleted int64     `json:"records_completed"`
		IntervalStart    time.Time `json:"interval_start"`
		IntervalEnd      time.Time `json:"interval_end"`
	}
	// backfilled finds the one run of the backfilled interval.
	backfilled := func(rs []run) (run, bool) {
		var found []run
		for _, r := range rs {
			if r.IntervalEnd.Equal(hour) {
				found = append(found, r)
			}
		}
		if len(found) != 1 {
			return run{}, false
		}
		return found[0], true
	}
	runs := func() []run {
		var out struct{ Results []run }
		call("GET", "/api/v1/batch_exports/"+exp.ID+"/runs?limit=50", nil, &out)
		return out.Results
	}
	// Kill -9 while the first run is Running.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		rs := runs()
		if r, ok := backfilled(rs); ok && r.Status == "Running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no run became Running: %+v", rs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	t.Log("killed sluice serve mid-run")

	start("serve-2.log")
	deadline = time.Now().Add(150 * time.Second)
	var rs []run
	for {
		rs = runs()
		done := len(rs) > 0
		for _, r := range rs {
			done = done && (r.Status == "Completed" || r.Status == "Failed")
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs did not finish after the restart: %+v", rs)
		}
		time.Sleep(250 * time.Millisecond)
	}
	var total int64
	for _, r := range rs {
		if r.Status != "Completed" {
			t.Fatalf("run %+v did not complete", r)
		}
		total += r.RecordsCompleted
	}
	// The backfilled interval's run was rescued; a run the schedule added meanwhile (the
	// test may cross an hour) has an empty interval.
	if r, ok := backfilled(rs); !ok || r.Attempt < 2 || r.RecordsCompleted != events {
		t.Errorf("want the backfilled run completed on attempt >= 2 with %d records, got %+v", events, rs)
	}
	if total != events {
		t.Errorf("runs report %d records in all, want %d: %+v", total, events, rs)
	}
	// Every exported event exactly once across the files the runs wrote.
	seen := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(data, "exports", "kill", "*.jsonl"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var row struct{ UUID string }
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatal(err)
			}
			if seen[row.UUID] {
				t.Fatalf("event %s exported twice", row.UUID)
			}
			seen[row.UUID] = true
		}
		fh.Close()
	}
	if int64(len(seen)) != total || total == 0 {
		t.Fatalf("files hold %d events, runs report %d", len(seen), total)
	}
	t.Logf("%d runs, %d events exported once each after kill -9 and restart", len(rs), total)
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHealthy waits for /readyz: a fresh data dir compiles every locked plugin first, which
// takes minutes on a loaded machine.
func waitHealthy(t *testing.T, base string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("sluice serve did not become ready")
}
