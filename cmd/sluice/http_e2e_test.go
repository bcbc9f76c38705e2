package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// serveProc is one `sluice serve` process of a test, with its API.
type serveProc struct {
	t     *testing.T
	base  string
	token string
	data  string
	log   string
}

func startServe(t *testing.T, bin, root, dir, name string, env []string, args ...string) *serveProc {
	t.Helper()
	addr := freeAddr(t)
	p := &serveProc{t: t, base: "http://" + addr, token: name + "-api-token", data: filepath.Join(dir, name),
		log: filepath.Join(dir, name+".log")}
	cmd := exec.Command(bin, append([]string{"serve", "--addr", addr, "--data-dir", p.data, "--api-token", p.token,
		"--plugins-dir", filepath.Join(root, "bin/plugins"), "--lock", filepath.Join(root, "plugins.lock"),
		"--settle-delay", "1s"}, args...)...)
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true",
		"SLUICE_BIGQUERY_ENDPOINT=http://127.0.0.1:1/", "SLUICE_SNOWFLAKE_ENDPOINT=http://127.0.0.1:1"), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			lines := strings.Split(string(b), "\n")
			t.Logf("%s (last lines):\n%s", name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	})
	waitHealthy(t, p.base)
	return p
}

// call sends one API request and returns the status and raw body; out, if not nil,
// receives the JSON answer.
func (p *serveProc) call(method, path string, body any, out any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	return resp.StatusCode, raw
}

type e2eRun struct {
	ID, Status       string
	LatestError      string `json:"latest_error"`
	Attempt          int
	RecordsCompleted int64     `json:"records_completed"`
	IntervalEnd      time.Time `json:"interval_end"`
}

// waitRuns waits until the export has n runs, all Completed or Failed.
func (p *serveProc) waitRuns(export string, n int) []e2eRun {
	deadline := time.Now().Add(4 * time.Minute)
	for {
		var out struct{ Results []e2eRun }
		p.call("GET", "/api/v1/batch_exports/"+export+"/runs?limit=50", nil, &out)
		done := len(out.Results) >= n
		for _, r := range out.Results {
			done = done && (r.Status == "Completed" || r.Status == "Failed")
		}
		if done {
			return out.Results
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("runs did not finish: %+v", out.Results)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

type storedEvent struct{ event, distinctID, timestamp, properties string }

// storedEvents reads an embedded event store: uuid -> event, and the number of rows.
func storedEvents(t *testing.T, dataDir string) (map[string]storedEvent, int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "events.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT lower(hex(uuid)), event, distinct_id, timestamp, properties FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out, n := map[string]storedEvent{}, 0
	for rows.Next() {
		var u string
		var e storedEvent
		var ts any
		if err := rows.Scan(&u, &e.event, &e.distinctID, &ts, &e.properties); err != nil {
			t.Fatal(err)
		}
		e.timestamp = fmt.Sprint(ts)
		out[u] = e
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out, n
}

// TestHTTPDestinationSluiceToSluice exports from a real `sluice serve` A, through the http
// plugin (posthog mode), into the capture endpoint of a second `sluice serve` B: 3 hourly
// backfill runs land every event of A in B exactly once, one of them retried after a 500 in
// the middle of its delivery (its first request arrives twice); a deliberate re-run of an interval
// re-sends it and B keeps one copy (its store dedups on uuid, event, distinct_id); a wrong
// token fails at attempt 1 with B's message; the token appears in no API answer and no log.
func TestHTTPDestinationSluiceToSluice(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two real sluice serve processes")
	}
	root, _ := filepath.Abs("../..")
	if _, err := os.Stat(filepath.Join(root, "bin/plugins/http.wasm")); err != nil {
		t.Fatalf("run `make plugins` first: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	const events = 3000
	const key = "phc_receiver_key_2f9c1e"
	hour := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	if out, err := exec.Command(bin, "demo", "--data-dir", filepath.Join(dir, "a"), "--events", fmt.Sprint(events), "--span", "3h",
		"--end", hour.Format(time.RFC3339)).CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	b := startServe(t, bin, root, dir, "b", nil, "--capture-key", key)
	// One backfill run at a time, so that the fault below lands inside a run that already
	// delivered a request.
	a := startServe(t, bin, root, dir, "a", []string{"SLUICE_HTTP_ALLOW_PRIVATE=true"}, "--backfill-parallelism", "1")

	// A proxy in front of B answers the second request 500: the first run fails after B
	// stored its first 250 events, is retried (after about 10 s) and sends them again.
	target, _ := url.Parse(b.base)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var requests atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 2 {
			http.Error(w, `{"type":"server_error","detail":"injected fault"}`, http.StatusInternalServerError)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	create := func(name, token string) string {
		var exp struct{ ID string }
		code, raw := a.call("POST", "/api/v1/batch_exports", map[string]any{"name": name, "interval": "hour",
			"destination": map[string]any{"type": "http", "config": map[string]any{"url": front.URL + "/batch", "token": token,
				"batch_size": 250}}}, &exp)
		if code != 201 {
			t.Fatalf("create export: HTTP %d %s", code, raw)
		}
		if strings.Contains(string(raw), token) {
			t.Errorf("the create answer holds the token: %s", raw)
		}
		return exp.ID
	}
	backfill := func(id string, from time.Time) {
		if code, raw := a.call("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": from.Format(time.RFC3339), "end_at": hour.Format(time.RFC3339)}, nil); code != 201 {
			t.Fatalf("backfill: HTTP %d %s", code, raw)
		}
	}

	id := create("to-b", key)
	backfill(id, hour.Add(-3*time.Hour))
	var rs []e2eRun // the backfilled ones: a scheduled run of a later hour may join (no events)
	for _, r := range a.waitRuns(id, 3) {
		if !r.IntervalEnd.After(hour) {
			rs = append(rs, r)
		}
	}
	var total int64
	for _, r := range rs {
		if r.Status != "Completed" {
			t.Fatalf("run %+v did not complete", r)
		}
		total += r.RecordsCompleted
	}
	if len(rs) != 3 || total != events {
		t.Fatalf("%d runs exported %d records, want 3 runs and %d", len(rs), total, events)
	}
	retried, want := 0, int32(2) // the first request sent twice, the refused one
	for _, r := range rs {
		if r.Attempt > 1 {
			retried++
		}
		want += int32((r.RecordsCompleted + 249) / 250)
	}
	if retried != 1 || requests.Load() != want {
		t.Errorf("want one run retried after the injected 500 and 2 extra requests; runs %+v, %d requests", rs, requests.Load())
	}
	src, _ := storedEvents(t, a.data)
	check := func(when string) {
		got, rows := storedEvents(t, b.data)
		if rows != events || len(got) != events {
			t.Fatalf("%s: B holds %d rows (%d distinct uuids), want %d", when, rows, len(got), events)
		}
		for u, e := range src {
			g, ok := got[u]
			if !ok {
				t.Fatalf("%s: event %s missing in B", when, u)
			}
			var pa, pb map[string]any
			_ = json.Unmarshal([]byte(e.properties), &pa)
			_ = json.Unmarshal([]byte(g.properties), &pb)
			if g.event != e.event || g.distinctID != e.distinctID || g.timestamp != e.timestamp || fmt.Sprint(pa) != fmt.Sprint(pb) {
				t.Fatalf("%s: event %s differs:\nA %+v\nB %+v", when, u, e, g)
			}
		}
	}
	check("after 3 hourly runs")

	// A deliberate re-run of one interval sends its events again: B keeps one copy.
	if code, raw := a.call("POST", "/api/v1/batch_exports/"+id+"/runs/"+rs[0].ID+"/retry", nil, nil); code >= 300 {
		t.Fatalf("retry: HTTP %d %s", code, raw)
	}
	time.Sleep(500 * time.Millisecond)
	a.waitRuns(id, 3)
	check("after a re-run")

	// A wrong key: B answers 401, the run fails at its first attempt with B's message.
	bad := create("bad-key", "phc_wrong_key_77aa01")
	backfill(bad, hour.Add(-time.Hour))
	br := a.waitRuns(bad, 1)
	if br[0].Status != "Failed" || br[0].Attempt != 1 || !strings.Contains(br[0].LatestError, "401") ||
		!strings.Contains(br[0].LatestError, "project API key invalid") {
		t.Errorf("wrong key: %+v, want Failed at attempt 1 with HTTP 401 and B's message", br[0])
	}

	// The tokens are in no API answer and no log line.
	for _, path := range []string{"/api/v1/batch_exports/" + id, "/api/v1/batch_exports/" + bad, "/api/v1/batch_exports/" + id + "/logs",
		"/api/v1/batch_exports/" + bad + "/logs", "/api/v1/batch_exports/" + bad + "/runs"} {
		_, raw := a.call("GET", path, nil, nil)
		if strings.Contains(string(raw), key) || strings.Contains(string(raw), "phc_wrong_key_77aa01") {
			t.Errorf("GET %s shows a token: %s", path, raw)
		}
	}
	if logs, _ := os.ReadFile(a.log); bytes.Contains(logs, []byte(key)) || bytes.Contains(logs, []byte("phc_wrong_key_77aa01")) {
		t.Errorf("A's log holds a token")
	}
	t.Logf("%d events from A in B exactly once over 3 runs and a re-run", events)
}
