package alert

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

var (
	ivStart = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	ivEnd   = ivStart.Add(time.Hour)
)

func sampleEvent(typ string) Event {
	return Event{
		ID: "run_failed:r1:0", Type: typ,
		Export:     ExportInfo{ID: "e1", Name: `nightly <S3> & "co"`, DestinationType: "s3"},
		Run:        RunInfo{ID: "r1", Attempt: 3, IntervalStart: ivStart, IntervalEnd: ivEnd},
		Error:      "NoSuchBucket: the bucket <b> does not exist ```x```",
		OccurredAt: ivEnd.Add(5 * time.Minute), Suppressed: 2, Period: 24 * time.Hour,
		FailedRuns: 10, ConsideredRuns: 50,
		Links: LinksFor("http://127.0.0.1:8080/", "e1", "r1"),
	}
}

func TestJSONPayload(t *testing.T) {
	for _, typ := range []string{TypeRunFailed, TypeExportPaused} {
		t.Run(typ, func(t *testing.T) {
			b, err := Payload(sampleEvent(typ), FormatJSON)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				ID, Type, Message, Error string
				Export                   ExportInfo
				Run                      struct {
					ID, Status string
					Attempt    int
				}
				Interval struct{ Start, End time.Time }
				Links    Links
				Sup      int `json:"suppressed_since_last_alert"`
				Pause    *struct {
					Failed     int `json:"failed_runs"`
					Considered int `json:"considered_runs"`
				} `json:"auto_pause"`
				OccurredAt time.Time `json:"occurred_at"`
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%v: %s", err, b)
			}
			if got.Type != typ || got.ID != "run_failed:r1:0" || got.Export.ID != "e1" || got.Export.Name != `nightly <S3> & "co"` ||
				got.Run.ID != "r1" || got.Run.Status != "Failed" || got.Run.Attempt != 3 ||
				!got.Interval.Start.Equal(ivStart) || !got.Interval.End.Equal(ivEnd) || !strings.HasPrefix(got.Error, "NoSuchBucket") ||
				got.Sup != 2 || !got.OccurredAt.Equal(ivEnd.Add(5*time.Minute)) {
				t.Fatalf("payload %s", b)
			}
			if got.Links.RunAPI != "http://127.0.0.1:8080/api/v1/batch_exports/e1/runs/r1" ||
				got.Links.RunConsole != "http://127.0.0.1:8080/exports/e1/runs/r1" ||
				got.Links.RunLogsAPI != got.Links.RunAPI+"/logs" || got.Links.ExportConsole != "http://127.0.0.1:8080/exports/e1" {
				t.Fatalf("links %+v", got.Links)
			}
			if (typ == TypeExportPaused) != (got.Pause != nil) || (got.Pause != nil && (got.Pause.Failed != 10 || got.Pause.Considered != 50)) {
				t.Fatalf("auto_pause %s", b)
			}
			if !strings.Contains(got.Message, "2 more failure alert(s)") || !strings.Contains(got.Message, "24h0m0s") {
				t.Fatalf("message does not say what was suppressed: %s", got.Message)
			}
		})
	}
}

func TestSlackPayload(t *testing.T) {
	b, err := Payload(sampleEvent(TypeExportPaused), FormatSlack)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Text   string
		Blocks []struct {
			Type     string
			Text     *struct{ Type, Text string }
			Elements []struct{ Type, Text string }
			Fields   []struct{ Type, Text string }
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Text == "" || len(got.Blocks) != 4 || got.Blocks[0].Type != "section" || got.Blocks[3].Type != "context" {
		t.Fatalf("shape: %s", b)
	}
	var texts []string
	for _, bl := range got.Blocks {
		if bl.Text != nil {
			texts = append(texts, bl.Text.Text)
		}
		for _, x := range append(bl.Elements, bl.Fields...) {
			texts = append(texts, x.Text)
		}
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{
		"Export paused automatically", "10 of its last 50 runs failed",
		`<http://127.0.0.1:8080/exports/e1|nightly &lt;S3&gt; &amp; "co">`, // the name escaped inside Sluice's link
		"<http://127.0.0.1:8080/exports/e1/runs/r1|r1>", "the bucket &lt;b&gt; does not exist '''x'''",
		"2 more failure alert(s)",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("slack message lacks %q: %s", want, all)
		}
	}
	// The user's text never opens a link or a mention of its own.
	if strings.Contains(got.Text, "<S3>") || strings.Contains(got.Text, "<b>") {
		t.Errorf("unescaped text: %s", got.Text)
	}
	if _, err := Payload(sampleEvent(TypeRunFailed), "xml"); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestTruncateKeepsUTF8(t *testing.T) {
	s := strings.Repeat("é", 1000) // 2000 bytes
	got := truncate(s, 1501)
	if !strings.HasSuffix(got, "…") || len(got) > 1501+len("…") || !json.Valid([]byte(`"`+got+`"`)) || strings.ContainsRune(got, '\uFFFD') {
		t.Fatalf("truncate cut a rune: %d bytes", len(got))
	}
}

func TestValidateURL(t *testing.T) {
	for _, c := range []struct {
		url, want string
	}{
		{"https://hooks.slack.com/services/T/B/x", ""},
		{"http://127.0.0.1:9000/hook?x=1", ""},
		{"", "empty"},
		{"ftp://example.com/x", `scheme "ftp"`},
		{"file:///etc/passwd", `scheme "file"`},
		{"https:///path", "no host"},
		{"hooks.slack.com/services/x", `scheme ""`},
		{" https://a.example/x", "white space"},
		{"https://a.example/" + strings.Repeat("x", MaxURLLength), "longer than"},
		{"http://[::1/x", "does not parse"},
	} {
		err := ValidateURL(c.url)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%q: %v, want %q", c.url, err, c.want)
		}
	}
	if got := Origin("https://user:pw@hooks.slack.com/services/T/B/secret?x=1"); got != "https://hooks.slack.com" {
		t.Errorf("origin %q", got)
	}
}

func TestConfig(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Format != FormatJSON || c.Period != 24*time.Hour || c.PublicURL != DefaultPublicURL || c.Validate() != nil {
		t.Fatalf("defaults %+v: %v", c, c.Validate())
	}
	bad := Config{WebhookURL: "gopher://x", Format: "xml", PublicURL: "127.0.0.1:8080"}.WithDefaults()
	err := bad.Validate()
	for _, want := range []string{"SLUICE_ALERT_WEBHOOK_URL", "SLUICE_ALERT_FORMAT", "SLUICE_PUBLIC_URL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want it to name %s", err, want)
		}
	}
	if f, err := ParseFormat(" Slack "); err != nil || f != FormatSlack {
		t.Errorf("ParseFormat: %v %v", f, err)
	}
}

func TestRateLimit(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	var s storage.AlertState
	step := func(key string, force bool, at time.Time, want verdict, wantCarried int) {
		t.Helper()
		v, carried, _ := claim(&s, key, force, at, day)
		if v != want || carried != wantCarried {
			t.Fatalf("%s at %s: verdict %d carrying %d, want %d carrying %d (state %+v)", key, at, v, carried, want, wantCarried, s)
		}
	}
	step("a", false, t0, verdictSend, 0)
	step("a", false, t0.Add(time.Minute), verdictSend, 0) // a retry of the period's alert
	delivered(&s, "a", 0)
	step("a", false, t0.Add(2*time.Minute), verdictDuplicate, 0)
	step("b", false, t0.Add(time.Hour), verdictSuppress, 0)
	step("c", false, t0.Add(23*time.Hour), verdictSuppress, 0)
	if s.Suppressed != 2 {
		t.Fatalf("suppressed %d, want 2", s.Suppressed)
	}
	step("d", false, t0.Add(day), verdictSend, 2) // a new period reports the two
	step("e", false, t0.Add(day+time.Hour), verdictSuppress, 0)
	delivered(&s, "d", 2)
	if s.Suppressed != 1 {
		t.Fatalf("after d was delivered %d are pending, want 1 (e)", s.Suppressed)
	}
	// An auto-pause is sent within the period, and carries the count.
	step("pause", true, t0.Add(day+2*time.Hour), verdictSend, 1)
	// A delivery given up frees the period and is counted for the next alert.
	gaveUp(&s, "pause")
	if s.LastAlertAt != nil || s.Suppressed != 2 {
		t.Fatalf("after giving up: %+v", s)
	}
	step("f", false, t0.Add(day+3*time.Hour), verdictSend, 2)
	// Period 0: every alert is sent.
	v, _, _ := claim(&s, "g", false, t0.Add(day+3*time.Hour), 0)
	if v != verdictSend {
		t.Fatal("period 0 suppressed an alert")
	}
}

func TestSend(t *testing.T) {
	var lastID, lastType string
	var lastBody []byte
	mux := http.NewServeMux()
	mux.HandleFunc("/ok/secret-path", func(w http.ResponseWriter, r *http.Request) {
		lastID, lastType = r.Header.Get("X-Sluice-Alert-Id"), r.Header.Get("Content-Type")
		lastBody, _ = io.ReadAll(r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/500/secret-path", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upstream\nbroken", http.StatusInternalServerError)
	})
	mux.HandleFunc("/429/secret-path", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTooManyRequests) })
	mux.HandleFunc("/404/secret-path", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no_service", http.StatusNotFound)
	})
	mux.HandleFunc("/redirect/secret-path", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok/secret-path", http.StatusFound)
	})
	mux.HandleFunc("/slow/secret-path", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // then the server notices the client hanging up
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	mux.HandleFunc("/endless/secret-path", func(w http.ResponseWriter, r *http.Request) {
		// 200 with a body that never ends: the delivery still ends.
		chunk := []byte(strings.Repeat("x", 32<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s := NewSender(500 * time.Millisecond)
	ctx := context.Background()

	if err := s.Send(ctx, srv.URL+"/ok/secret-path", "id-1", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if lastID != "id-1" || lastType != "application/json" || string(lastBody) != `{"a":1}` {
		t.Fatalf("receiver got id %q type %q body %s", lastID, lastType, lastBody)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	for _, c := range []struct {
		url       string
		retryable bool
		status    int
		want      string
	}{
		{srv.URL + "/500/secret-path", true, 500, "HTTP 500: upstream broken"},
		{srv.URL + "/429/secret-path", true, 429, "HTTP 429"},
		{srv.URL + "/404/secret-path", false, 404, "HTTP 404: no_service"},
		{srv.URL + "/redirect/secret-path", false, 302, "redirects are not followed"},
		{srv.URL + "/slow/secret-path", true, 0, "post to " + srv.URL},
		{closedURL + "/secret-path", true, 0, "connection refused"},
		{"ftp://127.0.0.1/secret-path", false, 0, "scheme"},
	} {
		start := time.Now()
		err := s.Send(ctx, c.url, "id", []byte(`{}`))
		var de *DeliveryError
		if !errors.As(err, &de) || de.Retryable != c.retryable || de.Status != c.status || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (%+v), want retryable %v status %d mentioning %q", c.url, err, de, c.retryable, c.status, c.want)
			continue
		}
		if strings.Contains(err.Error(), "secret-path") {
			t.Errorf("%s: the error repeats the URL's path: %v", c.url, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s took %s", c.url, d)
		}
	}
	start := time.Now()
	err := s.Send(ctx, srv.URL+"/endless/secret-path", "id", []byte(`{}`))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("an endless response held the sender %s (err %v)", d, err)
	}
}
