package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/httpcap"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/runtime/conformance"
)

// TestAgainstLoopbackFake builds the example for ABI 1.1, loads it into the host runtime
// with the http capability bound to a loopback fake of the import API, and checks that the
// fake received every event once, with the secret in the header; then that a 401 fails the
// run and a 429 with Retry-After asks for a retry after it.
func TestAgainstLoopbackFake(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasm module")
	}
	wasm := filepath.Join(t.TempDir(), "importapi.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-tags", "sluice_abi_1_1", "-o", wasm, ".")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	mod, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")}) // compiled once across runs
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	p, err := rt.Load(ctx, mod, []string{abi.CapHTTP}, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	seen := map[string]int{}
	status := http.StatusOK
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/import" || r.Header.Get("Authorization") != "Basic s3cret" {
			http.Error(w, `{"error":"bad credentials"}`, http.StatusUnauthorized)
			return
		}
		if status != http.StatusOK {
			w.Header().Set("Retry-After", "30")
			http.Error(w, "slow down", status)
			return
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e struct {
				ID    string `json:"$insert_id"`
				Event string `json:"event"`
				Time  string `json:"time"`
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.ID == "" || e.Event == "" || e.Time == "" {
				http.Error(w, "bad line", 400)
				return
			}
			mu.Lock()
			seen[e.ID]++
			mu.Unlock()
		}
		w.Write([]byte(`{"code":200,"num_records_imported":1}`))
	}))
	defer fake.Close()

	run := func(secret string) (abi.Result, error, abi.Classification) {
		hb, err := httpcap.Bind(httpcap.Config{AllowPrivate: true}, map[string]string{"base_url": fake.URL + "/", "secret_api_secret": secret})
		if err != nil {
			t.Fatal(err)
		}
		defer hb.Close()
		b := runtime.Bindings{HTTP: hb, Sinks: map[string]runtime.ObjectStore{abi.SinkHTTPBody: hb.Sink()}, Encoders: conformance.Encoders}
		s, err := p.Open(ctx, abi.OpenRequest{RunID: "r", Attempt: 1, Config: map[string]any{"url": fake.URL + "/"}, Columns: abi.EventColumns}, b)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(ctx)
		for i := range 3 {
			if err := s.WriteBatch(ctx, conformance.Batch(conformance.Events(100, 200, i+1)), 100); err != nil {
				return abi.Result{}, err, s.Classify(ctx, err)
			}
		}
		res, err := s.Finish(ctx)
		return res.Result, err, abi.Classification{}
	}

	res, err, _ := run("s3cret")
	if err != nil || res.Records != 300 || len(seen) != 300 {
		t.Fatalf("run: %v, %d records, the fake saw %d events", err, res.Records, len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("event %s received %d times", id, n)
		}
	}
	if _, err, c := run("wrong"); err == nil || c.Outcome != abi.OutcomeFail {
		t.Errorf("a wrong secret: %v, classified %+v; want fail", err, c)
	}
	status = http.StatusTooManyRequests
	if _, err, c := run("s3cret"); err == nil || c.Outcome != abi.OutcomeRetryAfter || c.RetryAfterMS != 30_000 {
		t.Errorf("429 Retry-After 30: %v, classified %+v", err, c)
	}
}
