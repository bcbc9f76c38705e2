package control_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/sluicehq/sluice/host/control"
)

// Every verb of the API on the real host (storage, queue, runtime, plugins), with sizes
// above every default page: the API's own tests use a stub controller.

// allRuns follows next_cursor through every page of an export's runs.
func (e *env) allRuns(exportID string) []run {
	e.t.Helper()
	var out []run
	path := "/api/v1/batch_exports/" + exportID + "/runs?limit=500"
	for {
		page := e.do("GET", path, nil, http.StatusOK)
		b, _ := json.Marshal(page["results"])
		var rs []run
		if err := json.Unmarshal(b, &rs); err != nil {
			e.t.Fatalf("runs: %v", err)
		}
		out = append(out, rs...)
		next, _ := page["next_cursor"].(string)
		if next == "" {
			return out
		}
		path = "/api/v1/batch_exports/" + exportID + "/runs?limit=500&cursor=" + neturl.QueryEscape(next)
	}
}

// waitAll polls every page of runs until cond holds.
func (e *env) waitAll(exportID, what string, timeout time.Duration, cond func([]run) bool) []run {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rs := e.allRuns(exportID)
		if cond(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			counts := map[string]int{}
			for _, r := range rs {
				counts[r.Status]++
			}
			e.t.Fatalf("timed out waiting for %s: %d runs by status %v", what, len(rs), counts)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *env) backfill(exportID string, start, end time.Time) map[string]any {
	e.t.Helper()
	return e.do("POST", "/api/v1/batch_exports/"+exportID+"/backfills",
		map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
}

func (e *env) getBackfill(exportID string, bf map[string]any) (status string, progress map[string]any) {
	e.t.Helper()
	got := e.do("GET", fmt.Sprintf("/api/v1/batch_exports/%s/backfills/%s", exportID, bf["id"]), nil, http.StatusOK)
	p, _ := got["progress"].(map[string]any)
	s, _ := got["status"].(string)
	return s, p
}

func statuses(rs []run) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		m[r.Status]++
	}
	return m
}

func TestVerbs(t *testing.T) {
	verbs(t, func(t *testing.T, o ...func(*control.Config)) *env { return newEnv(t, "", o...) })
}

func TestVerbsPostgres(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	verbs(t, func(t *testing.T, o ...func(*control.Config)) *env { return newEnv(t, freshDatabase(t, url), o...) })
}

func verbs(t *testing.T, mk func(*testing.T, ...func(*control.Config)) *env) {
	t.Run("backfills larger than a page complete every run, and a second one re-runs them", func(t *testing.T) {
		e := mk(t)
		const n = 250 // > ListRuns' default page of 100
		id := e.createExport("big-backfill", localConfig("big"))
		end := t0.Truncate(time.Hour)
		start := end.Add(-n * time.Hour)
		bf := e.backfill(id, start, end)
		rs := e.waitAll(id, "250 backfill runs", 3*time.Minute, func(rs []run) bool {
			return len(rs) == n && statuses(rs)["Completed"] == n
		})
		for _, r := range rs {
			if r.Attempt != 1 {
				t.Fatalf("run %s took %d attempts", r.ID, r.Attempt)
			}
		}
		waitBackfill(t, e, id, bf, "Completed", n)
		files := e.exported("big")
		if want := e.countIn(start, end); int64(len(files)) != want {
			t.Fatalf("the backfill exported %d events, want %d", len(files), want)
		}
		// Records progress over more runs than a page: the count and the sum of every run.
		b := e.waitBackfillDone(id, bf["id"].(string))
		if p, want := b["progress"].(map[string]any), float64(e.countIn(start, end)); b["total_records_count"] != want || p["records"] != want || p["records_fraction"] != float64(1) {
			t.Fatalf("records progress of %d runs: %v, want %v records", n, b, want)
		}

		// The same range again: every interval runs again as part of the new backfill.
		bf2 := e.backfill(id, start, end)
		e.waitAll(id, "the re-run", 3*time.Minute, func(rs []run) bool {
			if len(rs) != n {
				return false
			}
			for _, r := range rs {
				if r.Status != "Completed" || r.Attempt != 2 {
					return false
				}
			}
			return true
		})
		waitBackfill(t, e, id, bf2, "Completed", n)
		if _, p := e.getBackfill(id, bf); p["created_runs"].(float64) != 0 {
			t.Errorf("the first backfill still owns runs: %v", p)
		}
		// The local object store's keys are deterministic: a re-run overwrites its file.
		if again := e.exported("big"); len(again) != len(files) {
			t.Errorf("after the re-run the files hold %d events, before %d", len(again), len(files))
		}
	})

	t.Run("cancelling a backfill cancels every waiting run", func(t *testing.T) {
		e := mk(t, func(c *control.Config) { c.BackfillParallelism = 1 })
		const n = 300
		id := e.createExport("cancelled-backfill", localConfig("cancelled"))
		end := t0.Truncate(time.Hour)
		bf := e.backfill(id, end.Add(-n*time.Hour), end)
		e.do("POST", fmt.Sprintf("/api/v1/batch_exports/%s/backfills/%s/cancel", id, bf["id"]), nil, http.StatusAccepted)
		rs := e.waitAll(id, "every run finished", time.Minute, func(rs []run) bool {
			s := statuses(rs)
			return len(rs) == n && s["Completed"]+s["Cancelled"] == n
		})
		if s := statuses(rs); s["Cancelled"] < n/2 {
			t.Errorf("only %d of %d runs were cancelled: %v", s["Cancelled"], n, s)
		}
		if st, _ := e.getBackfill(id, bf); st != "Cancelled" {
			t.Errorf("backfill is %s", st)
		}
		// Nothing waiting starts later.
		time.Sleep(time.Second)
		if s := statuses(e.allRuns(id)); s["Completed"] != statuses(rs)["Completed"] {
			t.Errorf("runs completed after the cancel: %v then %v", statuses(rs), s)
		}
	})

	t.Run("retrying a FailedRetryable run executes it once, not twice", func(t *testing.T) {
		e := mk(t, func(c *control.Config) { c.RetryBase = 3 * time.Second })
		s3 := newCountingS3(t, "retry")
		id := e.createExport("retry-race", s3.config("retry"))
		end := t0.Truncate(time.Hour)
		e.backfill(id, end.Add(-time.Hour), end)
		rs := e.waitRuns(id, "the run to fail once", func(rs []run) bool { return len(rs) == 1 && rs[0].Status == "FailedRetryable" })
		// River holds an automatic retry in ~3 s; the user's retry must not add a second
		// execution, even while the re-run is still uploading when that retry comes due.
		s3.failing.Store(false)
		s3.delay.Store(int64(8 * time.Second))
		e.do("POST", fmt.Sprintf("/api/v1/batch_exports/%s/runs/%s/retry", id, rs[0].ID), nil, http.StatusAccepted)
		e.waitRuns(id, "the retried run", func(rs []run) bool { return rs[0].Status == "Completed" })
		time.Sleep(4 * time.Second) // past the automatic retry's time
		rs = e.runs(id)
		if rs[0].Status != "Completed" || rs[0].Attempt != 2 {
			t.Fatalf("after the automatic retry's time: %+v", rs[0])
		}
		if n := s3.uploads.Load(); n != 1 {
			t.Fatalf("%d successful uploads, want 1: two jobs executed the run", n)
		}
	})

	t.Run("a plugin's own count of records, even 0, is what the run records", func(t *testing.T) {
		e := mk(t)
		wasm, err := os.ReadFile(filepath.Join(repoRoot(t), "host", "runtime", "testdata", "good.wasm"))
		if err != nil {
			t.Fatal(err)
		}
		if code, body := e.install("good.wasm", wasm, ""); code != http.StatusCreated {
			t.Fatalf("install: HTTP %d %s", code, body)
		}
		id := e.createExportTo("good", "counts-nothing", map[string]any{})
		end := t0.Truncate(time.Hour)
		e.backfill(id, end.Add(-time.Hour), end)
		rs := e.waitRuns(id, "the run", allFinished(1))
		streamed := e.countIn(end.Add(-time.Hour), end)
		if rs[0].Status != "Completed" || rs[0].RecordsCompleted != 0 || streamed == 0 {
			t.Fatalf("run %+v; the plugin wrote 0 of %d records", rs[0], streamed)
		}
		logs := e.do("GET", "/api/v1/batch_exports/"+id+"/runs/"+rs[0].ID+"/logs", nil, http.StatusOK)
		if b, _ := json.Marshal(logs); !strings.Contains(string(b), fmt.Sprintf("reports 0 records written of %d streamed", streamed)) {
			t.Errorf("the run's log does not say the counts differ: %s", b)
		}
	})

	t.Run("ten failures among the last fifty runs pause the export on the real host", func(t *testing.T) {
		e := mk(t, func(c *control.Config) { c.BackfillParallelism = 1 })
		s3 := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
		defer s3.Close()
		cfg := map[string]any{"bucket_name": "no-such-bucket", "endpoint_url": s3.URL, "region": "us-east-1",
			"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "secret", "file_format": "JSONLines"}
		id := e.createExport("auto-pause", cfg)
		end := t0.Truncate(time.Hour)
		bf := e.backfill(id, end.Add(-30*time.Hour), end)
		rs := e.waitAll(id, "the export to pause", time.Minute, func(rs []run) bool {
			s := statuses(rs)
			return s["Failed"]+s["Cancelled"]+s["Completed"] == 30 && s["Failed"] >= 10
		})
		if s := statuses(rs); s["Failed"] < 10 || s["Failed"] > 10+1 || s["Cancelled"] < 30-11 {
			t.Errorf("runs: %v; want 10 Failed (11 at most: a second run may have been in flight) and the rest Cancelled", s)
		}
		got := e.do("GET", "/api/v1/batch_exports/"+id, nil, http.StatusOK)
		if got["paused"] != true {
			t.Errorf("the export is not paused: %v", got)
		}
		if st, _ := e.getBackfill(id, bf); st != "Cancelled" {
			t.Errorf("the export's backfill is %s, want Cancelled", st)
		}
		logs := e.do("GET", "/api/v1/batch_exports/"+id+"/logs?limit=500", nil, http.StatusOK)
		if b, _ := json.Marshal(logs); !strings.Contains(string(b), "paused automatically: 10 of its last 10 runs failed") {
			t.Errorf("the export's log does not say why it paused: %s", b)
		}
	})
}

func waitBackfill(t *testing.T, e *env, exportID string, bf map[string]any, want string, runs int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, p := e.getBackfill(exportID, bf)
		if st == want && p["finished_runs"].(float64) == float64(runs) && p["created_runs"].(float64) == float64(runs) &&
			p["total_runs"].(float64) == float64(runs) && p["fraction"].(float64) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backfill is %s with %v, want %s with %d finished runs", st, p, want, runs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countingS3 is an in-memory S3 that fails every upload with a 503 while failing is set,
// makes the others wait delay, and counts the uploads that succeed.
type countingS3 struct {
	url     string
	failing atomic.Bool
	delay   atomic.Int64 // a successful upload's wait, in nanoseconds
	uploads atomic.Int32
}

func newCountingS3(t *testing.T, bucket string) *countingS3 {
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	fake := gofakes3.New(backend).Server()
	c := &countingS3{}
	c.failing.Store(true)
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upload := r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "" ||
			r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
		if upload && c.failing.Load() {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>try later</Message></Error>`)
			return
		}
		if upload {
			time.Sleep(time.Duration(c.delay.Load()))
		}
		mu.Lock()
		defer mu.Unlock()
		rec := httptest.NewRecorder()
		fake.ServeHTTP(rec, r)
		if upload && rec.Code == http.StatusOK {
			c.uploads.Add(1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

func (c *countingS3) config(bucket string) map[string]any {
	return map[string]any{"bucket_name": bucket, "endpoint_url": c.url, "region": "us-east-1",
		"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "secret", "file_format": "JSONLines", "compression": "gzip"}
}
