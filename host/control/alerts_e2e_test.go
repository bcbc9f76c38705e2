package control_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/sluicehq/sluice/host/alert"
	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/queue"
	"github.com/sluicehq/sluice/storage"
)

// receiver is a loopback webhook: it records every request and answers the first
// failFirst of them with 500 (failFirst < 0: always).
type receiver struct {
	*httptest.Server
	mu        sync.Mutex
	failFirst int
	reqs      []received
}

type received struct {
	status int
	id     string
	path   string
	body   []byte
}

func newReceiver(t *testing.T, failFirst int) *receiver {
	r := &receiver{failFirst: failFirst}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := http.StatusOK
		if r.failFirst < 0 || len(r.reqs) < r.failFirst {
			status = http.StatusInternalServerError
		}
		r.reqs = append(r.reqs, received{status, req.Header.Get("X-Sluice-Alert-Id"), req.URL.Path, body})
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

// delivered returns the bodies answered 200.
func (r *receiver) delivered() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []received
	for _, x := range r.reqs {
		if x.status == http.StatusOK {
			out = append(out, x)
		}
	}
	return out
}

func (r *receiver) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.reqs) }

// failingS3 is the config of an S3 destination whose bucket does not exist: versitygw when
// it runs here, else an in-process S3 fake on loopback. Either fails the run at once
// (NoSuchBucket is not retryable).
func failingS3(t *testing.T) map[string]any {
	cfg := map[string]any{"bucket_name": fmt.Sprintf("alerts-missing-%d", time.Now().UnixNano()), "region": "us-east-1",
		"file_format": "JSONLines"}
	if ep := os.Getenv("SLUICE_TEST_S3_ENDPOINT"); ep != "" {
		cfg["endpoint_url"], cfg["aws_access_key_id"], cfg["aws_secret_access_key"] = ep, os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"), os.Getenv("SLUICE_TEST_S3_SECRET_KEY")
		return cfg
	}
	s3 := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(s3.Close)
	cfg["endpoint_url"], cfg["aws_access_key_id"], cfg["aws_secret_access_key"] = s3.URL, "AKIDTEST", "secret"
	return cfg
}

type alertBody struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Message string `json:"message"`
	Export  struct {
		ID, Name        string
		DestinationType string `json:"destination_type"`
	} `json:"export"`
	Run struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Attempt int    `json:"attempt"`
	} `json:"run"`
	Interval struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"interval"`
	Error      string      `json:"error"`
	Suppressed int         `json:"suppressed_since_last_alert"`
	Links      alert.Links `json:"links"`
	AutoPause  *struct {
		FailedRuns int `json:"failed_runs"`
	} `json:"auto_pause"`
}

func decodeAlert(t *testing.T, b []byte) alertBody {
	t.Helper()
	var a alertBody
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("alert body: %v: %s", err, b)
	}
	return a
}

func TestAlerts(t *testing.T) { exerciseAlerts(t, "") }

func TestAlertsPostgres(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	exerciseAlerts(t, freshDatabase(t, url))
}

const publicURL = "http://127.0.0.1:18080"

func exerciseAlerts(t *testing.T, databaseURL string) {
	global := newReceiver(t, 0)
	e := newEnv(t, databaseURL, func(c *control.Config) {
		c.Alerts = alert.Config{WebhookURL: global.URL + "/global", PublicURL: publicURL,
			MaxAttempts: 4, RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, Timeout: 5 * time.Second}
		c.AutoPauseFailures, c.AutoPauseRuns = 3, 5
	})
	end := t0.Truncate(time.Hour)
	// fail backfills the hour ending k hours before end, and returns its (Failed) run.
	fail := func(id string, k int) run {
		e.t.Helper()
		iend := end.Add(-time.Duration(k) * time.Hour)
		e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": iend.Add(-time.Hour).Format(time.RFC3339), "end_at": iend.Format(time.RFC3339)}, http.StatusCreated)
		rs := e.waitRuns(id, "the failed run", func(rs []run) bool {
			for _, r := range rs {
				if r.IntervalEnd.Equal(iend) {
					return r.Status == "Failed"
				}
			}
			return false
		})
		for _, r := range rs {
			if r.IntervalEnd.Equal(iend) {
				return r
			}
		}
		panic("unreachable")
	}
	create := func(name string, extra map[string]any) string {
		e.t.Helper()
		body := map[string]any{"name": name, "interval": "hour", "paused": true,
			"destination": map[string]any{"type": "s3", "config": failingS3(t)}}
		for k, v := range extra {
			body[k] = v
		}
		out := e.do("POST", "/api/v1/batch_exports", body, http.StatusCreated)
		if b, _ := json.Marshal(out); strings.Contains(string(b), "secret-path") {
			t.Fatalf("the API returned the webhook URL: %s", b)
		}
		return out["id"].(string)
	}
	waitFor := func(what string, cond func() bool) {
		e.t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				e.t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	runLogHas := func(exportID, runID, text string) bool {
		out := e.do("GET", "/api/v1/batch_exports/"+exportID+"/runs/"+runID+"/logs", nil, http.StatusOK)
		b, _ := json.Marshal(out)
		return strings.Contains(string(b), text)
	}

	t.Run("a failed run alerts its export's webhook once; a second failure within the period does not", func(t *testing.T) {
		e.t = t
		recv := newReceiver(t, 0)
		id := create("alerting", map[string]any{"alert_webhook_url": recv.URL + "/hook/secret-path"})
		r1 := fail(id, 1)
		waitFor("the alert", func() bool { return len(recv.delivered()) == 1 })
		got := recv.delivered()[0]
		a := decodeAlert(t, got.body)
		if got.path != "/hook/secret-path" || a.Type != alert.TypeRunFailed || a.Export.ID != id || a.Export.Name != "alerting" || a.Export.DestinationType != "s3" ||
			a.Run.ID != r1.ID || a.Run.Status != "Failed" || a.Run.Attempt != 1 || !a.Interval.Start.Equal(r1.IntervalStart) || !a.Interval.End.Equal(r1.IntervalEnd) ||
			!strings.Contains(a.Error, "NoSuchBucket") || a.Suppressed != 0 || got.id != a.ID || a.ID == "" {
			t.Fatalf("alert %+v (id header %q, path %s)", a, got.id, got.path)
		}
		if want := fmt.Sprintf("%s/api/v1/batch_exports/%s/runs/%s", publicURL, id, r1.ID); a.Links.RunAPI != want || a.Links.RunConsole != fmt.Sprintf("%s/exports/%s/runs/%s", publicURL, id, r1.ID) {
			t.Fatalf("links %+v, want run_api %s", a.Links, want)
		}
		waitFor("the run log to say the alert was sent", func() bool { return runLogHas(id, r1.ID, "run_failed alert sent to "+recv.URL) })

		r2 := fail(id, 2)
		waitFor("the run log to say the alert was suppressed", func() bool { return runLogHas(id, r2.ID, "failure alert not sent") })
		if n := recv.count(); n != 1 {
			t.Fatalf("the receiver got %d requests, want 1", n)
		}
		st, err := e.host.DB().GetAlertState(t.Context(), id)
		if err != nil || st.Suppressed != 1 || !st.Delivered {
			t.Fatalf("alert state %+v, %v", st, err)
		}
		if n := global.count(); n != 0 {
			t.Fatalf("the host's webhook got %d alerts of an export with its own", n)
		}
	})

	t.Run("a receiver failing twice gets the alert on the third try, in Slack's format", func(t *testing.T) {
		e.t = t
		recv := newReceiver(t, 2)
		id := create("flaky-receiver", map[string]any{"alert_webhook_url": recv.URL + "/slack/secret-path", "alert_format": "slack"})
		r := fail(id, 1)
		waitFor("the delivered alert", func() bool { return len(recv.delivered()) == 1 })
		time.Sleep(300 * time.Millisecond) // no further delivery comes
		recv.mu.Lock()
		reqs := append([]received(nil), recv.reqs...)
		recv.mu.Unlock()
		if len(reqs) != 3 || reqs[0].id != reqs[2].id || reqs[0].id == "" {
			t.Fatalf("requests %d (ids %q...), want 3 of one alert", len(reqs), reqs[0].id)
		}
		var slack struct {
			Text   string           `json:"text"`
			Blocks []map[string]any `json:"blocks"`
		}
		if err := json.Unmarshal(reqs[2].body, &slack); err != nil || !strings.Contains(slack.Text, "flaky-receiver") || len(slack.Blocks) == 0 ||
			!strings.Contains(string(reqs[2].body), r.ID) {
			t.Fatalf("slack body %s (%v)", reqs[2].body, err)
		}
		if !runLogHas(id, r.ID, "(attempt 2 of 4), will retry: HTTP 500") {
			t.Error("the run log does not show the retries")
		}
	})

	t.Run("a receiver that always fails is given up after the last attempt", func(t *testing.T) {
		e.t = t
		recv := newReceiver(t, -1)
		id := create("dead-receiver", map[string]any{"alert_webhook_url": recv.URL + "/x"})
		r := fail(id, 1)
		waitFor("the alert given up", func() bool { return runLogHas(id, r.ID, "not delivered after 4 attempt(s), giving up: HTTP 500") })
		if n := recv.count(); n != 4 {
			t.Fatalf("the receiver got %d requests, want 4", n)
		}
		// Giving up frees the period: the next failure is alerted (and says one was lost).
		recv.mu.Lock()
		recv.failFirst = 0
		recv.mu.Unlock()
		fail(id, 2)
		waitFor("the next alert", func() bool { return len(recv.delivered()) == 1 })
		if a := decodeAlert(t, recv.delivered()[0].body); a.Suppressed != 1 {
			t.Fatalf("the next alert reports %d not sent, want 1", a.Suppressed)
		}
	})

	t.Run("a run job delivered again for a Failed run enqueues its missing alert (a host died in between)", func(t *testing.T) {
		e.t = t
		recv := newReceiver(t, 0)
		id := create("crashed-host", map[string]any{"alert_webhook_url": recv.URL + "/x"})
		// What a host dying between storing Failed and enqueuing the alert leaves: the run
		// Failed, no alert job, and the run's job still to be worked (River's rescuer hands
		// it to another host; here it is enqueued afresh).
		iend := end.Add(-5 * time.Hour)
		r, _, err := e.host.DB().CreateRunIfAbsent(t.Context(), storage.Run{ExportID: id, IntervalStart: iend.Add(-time.Hour), IntervalEnd: iend,
			Status: storage.StatusFailed, Attempt: 1, LatestError: "NoSuchBucket: lost with its host"})
		if err != nil {
			t.Fatal(err)
		}
		db := e.host.DB()
		q, err := queue.New(t.Context(), queue.Config{Dialect: db.Dialect(), SQL: db.SQL(), PostgresURL: databaseURL})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close(t.Context())
		if _, err := q.Enqueue(t.Context(), queue.Job{RunID: r.ID, ExportID: id, IntervalEnd: iend}, queue.EnqueueOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor("the alert", func() bool { return len(recv.delivered()) == 1 })
		if a := decodeAlert(t, recv.delivered()[0].body); a.Run.ID != r.ID || a.Error != "NoSuchBucket: lost with its host" || a.Type != alert.TypeRunFailed {
			t.Fatalf("alert %+v", a)
		}
		if rs := e.runs(id); len(rs) != 1 || rs[0].Status != "Failed" || rs[0].Attempt != 1 {
			t.Fatalf("the run changed: %+v", rs)
		}
	})

	t.Run("an auto-pause alerts the host's webhook even within the period", func(t *testing.T) {
		e.t = t
		id := create("pausing", nil) // no webhook of its own: the host's
		for k := 1; k <= 3; k++ {
			fail(id, k)
		}
		waitFor("the pause alert", func() bool {
			for _, x := range global.delivered() {
				if decodeAlert(t, x.body).Type == alert.TypeExportPaused {
					return true
				}
			}
			return false
		})
		if v := e.do("GET", "/api/v1/batch_exports/"+id, nil, http.StatusOK); v["paused"] != true {
			t.Fatalf("the export is not paused: %v", v)
		}
		time.Sleep(300 * time.Millisecond)
		types := map[string]int{}
		for _, x := range global.delivered() {
			a := decodeAlert(t, x.body)
			if a.Export.ID != id || x.path != "/global" {
				t.Fatalf("alert of %s to %s", a.Export.ID, x.path)
			}
			types[a.Type]++
			if a.Type == alert.TypeExportPaused && (a.AutoPause == nil || a.AutoPause.FailedRuns != 3) {
				t.Fatalf("pause alert %+v", a)
			}
		}
		if types[alert.TypeRunFailed] != 1 || types[alert.TypeExportPaused] != 1 {
			t.Fatalf("alerts by type %v, want one run_failed (the others suppressed) and one export_paused", types)
		}
	})
}
