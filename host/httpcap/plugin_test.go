package httpcap_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/httpcap"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
)

const pluginKey = "phc_plugin_test_key_93b1"

// receiver records what the http plugin posts and answers with fault(path, request number).
type receiver struct {
	mu      sync.Mutex
	batches [][]map[string]any
	keys    []string
	fault   func(w http.ResponseWriter, n int) bool // true: answered
	n       int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.n++
	n := rc.n
	rc.mu.Unlock()
	if rc.fault != nil && rc.fault(w, n) {
		return
	}
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		rd = zr
	}
	var body struct {
		APIKey string           `json:"api_key"`
		Batch  []map[string]any `json:"batch"`
	}
	if err := json.NewDecoder(rd).Decode(&body); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	rc.mu.Lock()
	rc.batches = append(rc.batches, body.Batch)
	rc.keys = append(rc.keys, body.APIKey)
	rc.mu.Unlock()
	io.WriteString(w, `{"status":1}`)
}

var plugin struct {
	once sync.Once
	p    *runtime.Plugin
	err  error
}

// loadPlugin loads bin/plugins/http.wasm once for every test of the package.
func loadPlugin(t *testing.T) *runtime.Plugin {
	t.Helper()
	plugin.once.Do(func() {
		wasm, err := os.ReadFile("../../bin/plugins/http.wasm")
		if err != nil {
			plugin.err = err
			return
		}
		rt, err := runtime.New(context.Background(), runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")}) // compiled once across runs
		if err != nil {
			plugin.err = err
			return
		}
		plugin.p, plugin.err = rt.Load(context.Background(), wasm, []string{abi.CapHTTP}, runtime.Limits{})
	})
	if plugin.err != nil {
		t.Fatalf("loading bin/plugins/http.wasm (make plugins): %v", plugin.err)
	}
	return plugin.p
}

// runPlugin runs the built http plugin (bin/plugins/http.wasm) over events in one batch,
// bound to url, and returns the run's error (nil after a successful finish) and how the
// plugin classifies it.
func runPlugin(t *testing.T, url string, config map[string]any, events int) (abi.Result, error, abi.Classification) {
	t.Helper()
	ctx := context.Background()
	p := loadPlugin(t)
	hb, err := httpcap.Bind(httpcap.Config{AllowPrivate: true}, map[string]string{"base_url": url, "secret_token": pluginKey})
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	b := runtime.Bindings{HTTP: hb, Sinks: map[string]runtime.ObjectStore{abi.SinkHTTPBody: hb.Sink()}, Encoders: conformance.Encoders}
	cfg := map[string]any{"url": url, "mode": "posthog", "batch_size": float64(100), "compression": "gzip",
		"max_retry_after_wait_seconds": float64(2), "request_timeout_seconds": float64(2)}
	for k, v := range config {
		cfg[k] = v
	}
	req := abi.OpenRequest{RunID: "r1", Attempt: 1, Config: cfg, Columns: abi.EventColumns}
	s, err := p.Open(ctx, req, b)
	if err != nil {
		return abi.Result{}, err, p.Classify(ctx, err, 1)
	}
	defer s.Close(ctx)
	if err := s.WriteBatch(ctx, conformance.Batch(conformance.Events(events, 100, 1)), events); err != nil {
		return abi.Result{}, err, s.Classify(ctx, err)
	}
	res, err := s.Finish(ctx)
	if err != nil {
		return abi.Result{}, err, s.Classify(ctx, err)
	}
	return res.Result, nil, abi.Classification{}
}

func TestHTTPPluginPostsBatches(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	res, err, _ := runPlugin(t, srv.URL+"/batch", nil, 250)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 250 || len(rc.batches) != 3 || len(rc.batches[0]) != 100 || len(rc.batches[2]) != 50 {
		t.Fatalf("records %d, request sizes %d", res.Records, len(rc.batches))
	}
	seen := map[string]bool{}
	for i, batch := range rc.batches {
		if rc.keys[i] != pluginKey {
			t.Errorf("request %d api_key %q", i, rc.keys[i])
		}
		for _, e := range batch {
			u, _ := e["uuid"].(string)
			if seen[u] || e["event"] == nil || e["distinct_id"] == nil || e["timestamp"] == nil {
				t.Fatalf("event %v duplicated or incomplete", e)
			}
			if _, ok := e["properties"].(map[string]any); !ok {
				t.Fatalf("properties %v not an object", e["properties"])
			}
			seen[u] = true
		}
	}
	if len(seen) != 250 {
		t.Errorf("%d distinct events", len(seen))
	}
}

func TestHTTPPluginFaults(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the unbound origin got a request")
	}))
	defer other.Close()
	cases := []struct {
		name    string
		fault   func(w http.ResponseWriter, n int) bool
		outcome string
		retryMS int64
		inErr   string
	}{
		{"500 is retried", func(w http.ResponseWriter, n int) bool { http.Error(w, "boom", 500); return true },
			abi.OutcomeRetry, 0, "HTTP 500: boom"},
		{"429 with a short Retry-After is waited for in the run", func(w http.ResponseWriter, n int) bool {
			if n == 1 {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "slow down", 429)
				return true
			}
			return false
		}, "", 0, ""},
		{"429 with a long Retry-After retries the run after it", func(w http.ResponseWriter, n int) bool {
			w.Header().Set("Retry-After", "120")
			http.Error(w, "slow down", 429)
			return true
		}, abi.OutcomeRetryAfter, 120_000, "HTTP 429"},
		{"401 fails with the server's message", func(w http.ResponseWriter, n int) bool {
			http.Error(w, `{"detail":"project API key invalid"}`, 401)
			return true
		}, abi.OutcomeFail, 0, "project API key invalid"},
		{"slow response times out and is retried", func(w http.ResponseWriter, n int) bool {
			time.Sleep(3 * time.Second)
			return false
		}, abi.OutcomeRetry, 0, "timed out"},
		{"oversized answer is cut, the request succeeded", func(w http.ResponseWriter, n int) bool {
			w.Write(bytes.Repeat([]byte("x"), 8<<20))
			return true
		}, "", 0, ""},
		{"redirect to another origin is not followed and fails", func(w http.ResponseWriter, n int) bool {
			w.Header().Set("Location", other.URL+"/batch")
			w.WriteHeader(http.StatusTemporaryRedirect)
			return true
		}, abi.OutcomeFail, 0, "HTTP 307"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(&receiver{fault: c.fault})
			defer srv.Close()
			_, err, cl := runPlugin(t, srv.URL+"/batch", nil, 50)
			if c.outcome == "" {
				if err != nil {
					t.Fatalf("run failed: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.inErr) {
				t.Fatalf("err %v, want one containing %q", err, c.inErr)
			}
			if strings.Contains(err.Error(), pluginKey) {
				t.Errorf("error holds the key: %v", err)
			}
			if cl.Outcome != c.outcome || cl.RetryAfterMS != c.retryMS {
				t.Errorf("classified %+v, want %s after %d ms", cl, c.outcome, c.retryMS)
			}
		})
	}
}
