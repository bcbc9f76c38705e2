package control_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/sluicehq/sluice/host/control"
)

// objTarget is one object store behind its plugin, for the end-to-end scenarios every
// object destination passes (issue 15).
type objTarget struct {
	plugin string
	// config is a working export config for bucket, and secret one of its secret values.
	config func(bucket string) map[string]any
	secret string
	// badAuth is a config (and its bucket) whose credentials the store refuses.
	badAuth func(t *testing.T) (config map[string]any, bucket string)
	// newBucket creates an empty bucket (container); read returns every object in it.
	newBucket func(t *testing.T) string
	read      func(t *testing.T, bucket string) map[string][]byte
	// faults: while positive, the store's front answers write requests with a transient
	// error (and counts down).
	faults *atomic.Int32
}

// exerciseObjectStore: 3 hourly backfill runs land every event once under PostHog's names;
// a run that hits injected faults is retried and, like a deliberate re-run, does not double;
// refused credentials fail the run at attempt 1; the API never returns a secret.
func exerciseObjectStore(t *testing.T, e *env, tg objTarget) {
	end := t0.Truncate(time.Hour)
	start := end.Add(-3 * time.Hour)
	backfill := func(id string, from, to time.Time) {
		e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": from.Format(time.RFC3339), "end_at": to.Format(time.RFC3339)}, http.StatusCreated)
	}
	uuidsIn := func(t *testing.T, objs map[string][]byte) []string {
		var out []string
		for k, data := range objs {
			if !strings.HasSuffix(k, ".jsonl.gz") {
				t.Fatalf("unexpected object %s", k)
			}
			out = append(out, decodeUUIDs(t, "JSONLines", data)...)
		}
		return out
	}

	t.Run("3 hourly runs land every event once", func(t *testing.T) {
		e.t = t
		bucket := tg.newBucket(t)
		id := e.createExportTo(tg.plugin, tg.plugin+"-hourly", tg.config(bucket))
		for _, path := range []string{"/api/v1/batch_exports/" + id, "/api/v1/batch_exports"} {
			if b, _ := json.Marshal(e.do("GET", path, nil, http.StatusOK)); strings.Contains(string(b), tg.secret) {
				t.Fatalf("GET %s returned the secret: %s", path, b)
			}
		}
		backfill(id, start, end)
		for _, r := range e.waitRuns(id, "3 runs", allFinished(3)) {
			if r.Status != "Completed" || r.RecordsCompleted != e.countIn(r.IntervalStart, r.IntervalEnd) {
				t.Fatalf("run %+v, want Completed with %d records", r, e.countIn(r.IntervalStart, r.IntervalEnd))
			}
		}
		objs := tg.read(t, bucket)
		var keys []string
		for k := range objs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			s := start.Add(time.Duration(i) * time.Hour)
			want := fmt.Sprintf("posthog/%s/%s-%s.jsonl.gz", s.Add(time.Hour).Format("2006/01/02/15"),
				s.Format("2006-01-02T15:04:05+00:00"), s.Add(time.Hour).Format("2006-01-02T15:04:05+00:00"))
			if k != want {
				t.Errorf("key %d = %s, want %s", i, k, want)
			}
		}
		e.exactlyOnce(uuidsIn(t, objs), start, end)
	})

	t.Run("a run retried after injected faults does not double", func(t *testing.T) {
		e.t = t
		bucket := tg.newBucket(t)
		id := e.createExportTo(tg.plugin, tg.plugin+"-faults", tg.config(bucket))
		// More than one attempt's own tries (each store retries a request 3 times), fewer
		// than the run's 3 attempts take.
		tg.faults.Store(5)
		defer tg.faults.Store(0)
		backfill(id, end.Add(-time.Hour), end)
		rs := e.waitRuns(id, "the faulty run", allFinished(1))
		if rs[0].Status != "Completed" || rs[0].Attempt < 2 {
			t.Fatalf("want Completed after a retry, got %+v (faults left %d)", rs[0], tg.faults.Load())
		}
		e.exactlyOnce(uuidsIn(t, tg.read(t, bucket)), end.Add(-time.Hour), end)
		// A deliberate re-run of the interval rewrites the same object.
		e.do("POST", fmt.Sprintf("/api/v1/batch_exports/%s/runs/%s/retry", id, rs[0].ID), nil, http.StatusAccepted)
		e.waitRuns(id, "the re-run", func(rr []run) bool {
			return len(rr) == 1 && rr[0].Status == "Completed" && rr[0].Attempt == rs[0].Attempt+1
		})
		objs := tg.read(t, bucket)
		if len(objs) != 1 {
			t.Fatalf("objects after the re-run: %d", len(objs))
		}
		e.exactlyOnce(uuidsIn(t, objs), end.Add(-time.Hour), end)
	})

	t.Run("refused credentials fail the run at attempt 1", func(t *testing.T) {
		e.t = t
		cfg, bucket := tg.badAuth(t)
		id := e.createExportTo(tg.plugin, tg.plugin+"-badauth", cfg)
		backfill(id, end.Add(-time.Hour), end)
		rs := e.waitRuns(id, "the refused run", allFinished(1))
		if rs[0].Status != "Failed" || rs[0].Attempt != 1 {
			t.Fatalf("want Failed at attempt 1, got %+v", rs[0])
		}
		if objs := tg.read(t, bucket); len(objs) != 0 {
			t.Fatalf("a refused run wrote %d objects", len(objs))
		}
	})
}

// faultFront is a loopback front for a store: it forwards to next, except that while
// faults is positive it answers write requests (PUT, and POST uploads) with 503 and the
// store's "server busy" error.
func faultFront(t *testing.T, next http.Handler, faults *atomic.Int32, body, code string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write := r.Method == http.MethodPut || (r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/upload/"))
		if write && faults.Add(-1) >= 0 {
			w.Header().Set("x-ms-error-code", code)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, body)
			return
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// TestEndToEndAzureBlob runs the scenarios with the azure-blob plugin against Azurite
// (.ci/services/azurite.sh), through a loopback front that injects ServerBusy.
func TestEndToEndAzureBlob(t *testing.T) {
	cs := os.Getenv("SLUICE_TEST_AZURITE_CONNECTION_STRING")
	if cs == "" {
		if os.Getenv("SLUICE_REQUIRE_SERVICES") == "1" {
			t.Fatal("SLUICE_TEST_AZURITE_CONNECTION_STRING is not set and SLUICE_REQUIRE_SERVICES=1")
		}
		t.Skip("SLUICE_TEST_AZURITE_CONNECTION_STRING is not set (eval \"$(bash .ci/services/azurite.sh)\")")
	}
	admin, err := azblob.NewClientFromConnectionString(cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]string{}
	for _, kv := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			parts[k] = v
		}
	}
	blob, err := url.Parse(strings.TrimSuffix(admin.URL(), "/"))
	if err != nil {
		t.Fatal(err)
	}
	var faults atomic.Int32
	front := faultFront(t, httputil.NewSingleHostReverseProxy(&url.URL{Scheme: blob.Scheme, Host: blob.Host}), &faults,
		`<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>injected</Message></Error>`, "ServerBusy")
	conn := func(key string) string {
		return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s%s;",
			parts["AccountName"], key, front.URL, blob.Path)
	}
	ctx := context.Background()
	newContainer := func(t *testing.T) string {
		name := randomName("objplugins-")
		if _, err := admin.CreateContainer(ctx, name, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = admin.DeleteContainer(context.Background(), name, nil) })
		return name
	}
	tg := objTarget{
		plugin: "azure-blob",
		secret: parts["AccountKey"],
		config: func(c string) map[string]any {
			return map[string]any{"container_name": c, "connection_string": conn(parts["AccountKey"]),
				"prefix": "posthog/{year}/{month}/{day}/{hour}", "file_format": "JSONLines", "compression": "gzip"}
		},
		badAuth: func(t *testing.T) (map[string]any, string) {
			c := newContainer(t)
			wrong := "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
			return map[string]any{"container_name": c, "account_name": parts["AccountName"], "account_key": wrong,
				"endpoint_url": front.URL + blob.Path, "file_format": "JSONLines", "compression": "gzip"}, c
		},
		newBucket: newContainer,
		read: func(t *testing.T, c string) map[string][]byte {
			out := map[string][]byte{}
			pager := admin.NewListBlobsFlatPager(c, nil)
			for pager.More() {
				page, err := pager.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, it := range page.Segment.BlobItems {
					resp, err := admin.DownloadStream(ctx, c, *it.Name, nil)
					if err != nil {
						t.Fatal(err)
					}
					data, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						t.Fatal(err)
					}
					out[*it.Name] = data
				}
			}
			return out
		},
		faults: &faults,
	}
	exerciseObjectStore(t, newEnv(t, ""), tg)
}

// TestEndToEndGCS runs the scenarios with the gcs plugin against an in-process
// fake-gcs-server, the host's GCS endpoint (SLUICE_GCS_ENDPOINT) pointed at a loopback front
// that injects 503s. With its own endpoint the host sends no credentials, so the front plays
// GCS refusing them: 401 authError for the buckets of the refused-credentials scenario.
func TestEndToEndGCS(t *testing.T) {
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Writer: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Stop)
	var faults atomic.Int32
	gcs := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/b/denied-") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":401,"message":"Invalid Credentials","errors":[{"domain":"global","reason":"authError","message":"Invalid Credentials"}]}}`)
			return
		}
		fake.HTTPHandler().ServeHTTP(w, r)
	})
	front := faultFront(t, gcs, &faults,
		`{"error":{"code":503,"message":"injected","errors":[{"reason":"backendError","message":"injected"}]}}`, "")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	key, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "sluice-e2e",
		"private_key_id": "k1", "private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "exporter@sluice-e2e.iam.gserviceaccount.com", "token_uri": "http://127.0.0.1:1/token"})
	config := func(b string) map[string]any {
		return map[string]any{"bucket_name": b, "service_account_key": string(key),
			"prefix": "posthog/{year}/{month}/{day}/{hour}", "file_format": "JSONLines", "compression": "gzip"}
	}
	newBucket := func(prefix string) string {
		name := randomName(prefix)
		fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
		return name
	}
	tg := objTarget{
		plugin: "gcs",
		secret: "BEGIN PRIVATE KEY",
		config: config,
		badAuth: func(*testing.T) (map[string]any, string) {
			b := newBucket("denied-")
			return config(b), b
		},
		newBucket: func(t *testing.T) string { return newBucket("objplugins-") },
		read: func(t *testing.T, b string) map[string][]byte {
			objs, _, err := fake.ListObjects(b, "", "", false)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string][]byte{}
			for _, o := range objs {
				obj, err := fake.GetObject(b, o.Name)
				if err != nil {
					t.Fatal(err)
				}
				out[o.Name] = obj.Content
			}
			return out
		},
		faults: &faults,
	}
	exerciseObjectStore(t, newEnv(t, "", func(c *control.Config) { c.GCSEndpoint = front.URL + "/storage/v1/" }), tg)
}
