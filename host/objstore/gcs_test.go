package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// fakeGCS is an in-process fake-gcs-server on a loopback port: the real JSON API with
// resumable uploads, as the official client speaks it.
type fakeGCS struct {
	srv      *fakestorage.Server
	endpoint string // JSON API base URL
}

func newFakeGCS(tb testing.TB) *fakeGCS {
	tb.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Writer: io.Discard})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Stop)
	if !strings.HasPrefix(srv.URL(), "http://127.0.0.1:") {
		tb.Fatalf("fake-gcs-server is not on loopback: %s", srv.URL())
	}
	return &fakeGCS{srv: srv, endpoint: srv.URL() + "/storage/v1/"}
}

func (f *fakeGCS) newBucket(tb testing.TB) string {
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "sluice-objbackends-" + hex.EncodeToString(rnd[:])
	f.srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
	return name
}

func (f *fakeGCS) store(tb testing.TB, bucket string, mod func(*GCSConfig)) Store {
	tb.Helper()
	cfg := GCSConfig{Bucket: bucket, Prefix: "exports/team-1", Endpoint: f.endpoint, PartSize: MinPartSize, RetryBaseDelay: time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	st, err := NewGCS(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.(*gcsStore).Close() })
	return st
}

func (f *fakeGCS) objects(tb testing.TB, bucket string) []string {
	tb.Helper()
	objs, _, err := f.srv.ListObjects(bucket, "", "", false)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	return names
}

// gcsRequests records the upload requests a store sends: the resumable session's start
// (POST ?uploadType=resumable), its chunks (to the session URI, ?upload_id=, with
// Content-Range), single-request uploads
// (POST ?uploadType=multipart).
type gcsRequests struct {
	mu                       sync.Mutex
	sessions, chunks, single int
	ranges                   []string
}

func (r *gcsRequests) observe(req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch q := req.URL.Query(); {
	case q.Has("upload_id"):
		r.chunks++
		r.ranges = append(r.ranges, req.Header.Get("Content-Range"))
	case req.Method == http.MethodPost && q.Get("uploadType") == "resumable":
		r.sessions++
	case req.Method == http.MethodPost && q.Get("uploadType") == "multipart":
		r.single++
	}
}

func isGCSChunk(req *http.Request) bool { return req.URL.Query().Has("upload_id") }

func gcsErrorResponse(req *http.Request, status int, reason string) *http.Response {
	body := fmt.Sprintf(`{"error":{"code":%d,"message":"injected","errors":[{"reason":%q,"message":"injected"}]}}`, status, reason)
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: req,
	}
}

func TestGCSResumableRoundTrip(t *testing.T) {
	f := newFakeGCS(t)
	ctx := context.Background()
	bucket := f.newBucket(t)
	var reqs gcsRequests
	st := f.store(t, bucket, func(c *GCSConfig) {
		c.HTTPClient = hookClient(func(req *http.Request) *http.Response { reqs.observe(req); return nil })
	})
	if err := st.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	data := randomData(17<<20 + 12345) // 4 chunks of 5 MiB (the last one short)
	u, err := st.Create(ctx, "2024/01/01/events.jsonl", ObjectOptions{
		ContentType: "application/jsonl", ContentEncoding: "identity", Metadata: map[string]string{"run": "r1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Abort(ctx)
	writeChunks(t, u, data)
	if u.Written() != int64(len(data)) {
		t.Fatalf("Written = %d", u.Written())
	}
	info, err := u.Commit(ctx)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if info.Key != "exports/team-1/2024/01/01/events.jsonl" || info.Bytes != int64(len(data)) || info.ETag == "" {
		t.Fatalf("info = %+v", info)
	}
	obj, err := f.srv.GetObject(bucket, info.Key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(obj.Content, data) {
		t.Fatalf("read back %d bytes, differ from the %d written", len(obj.Content), len(data))
	}
	if obj.ContentType != "application/jsonl" || obj.ContentEncoding != "identity" || obj.Metadata["run"] != "r1" {
		t.Errorf("attributes: type %q encoding %q metadata %v", obj.ContentType, obj.ContentEncoding, obj.Metadata)
	}
	// One resumable session, one PUT per 5 MiB chunk.
	if reqs.sessions != 1 || reqs.chunks != 4 || reqs.single != 0 {
		t.Fatalf("%d sessions, %d chunks (%v), %d single uploads; want 1, 4, 0", reqs.sessions, reqs.chunks, reqs.ranges, reqs.single)
	}
	if !strings.HasPrefix(reqs.ranges[0], fmt.Sprintf("bytes 0-%d/", MinPartSize-1)) {
		t.Errorf("first chunk's range %q, want 5 MiB", reqs.ranges[0])
	}
	if err := u.Abort(ctx); err != nil {
		t.Fatalf("Abort after Commit: %v", err)
	}
	if _, err := f.srv.GetObject(bucket, info.Key); err != nil {
		t.Fatal("Abort after Commit removed the object")
	}
}

func TestGCSSmallAndEmptyObjects(t *testing.T) {
	f := newFakeGCS(t)
	ctx := context.Background()
	bucket := f.newBucket(t)
	var reqs gcsRequests
	st := f.store(t, bucket, func(c *GCSConfig) {
		c.Prefix = ""
		c.HTTPClient = hookClient(func(req *http.Request) *http.Response { reqs.observe(req); return nil })
	})
	for _, n := range []int{0, 1, 1 << 20, MinPartSize - 1} {
		data := randomData(n)
		u, err := st.Create(ctx, "obj", ObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeChunks(t, u, data)
		info, err := u.Commit(ctx)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if info.Key != "obj" || info.Bytes != int64(n) {
			t.Fatalf("info %+v", info)
		}
		obj, err := f.srv.GetObject(bucket, "obj")
		if err != nil || !bytes.Equal(obj.Content, data) {
			t.Fatalf("%d bytes: read back %d (%v)", n, len(obj.Content), err)
		}
	}
	if reqs.chunks != 0 || reqs.single != 4 {
		t.Fatalf("%d chunks, %d single uploads; want every object smaller than a chunk in one request", reqs.chunks, reqs.single)
	}
}

func TestGCSAbortLeavesNoObject(t *testing.T) {
	f := newFakeGCS(t)
	ctx := context.Background()
	bucket := f.newBucket(t)
	st := f.store(t, bucket, nil)
	for _, n := range []int{1000, 12 << 20} { // nothing sent yet; two chunks sent
		u, err := st.Create(ctx, "aborted.bin", ObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeChunks(t, u, randomData(n))
		if err := u.Abort(ctx); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		if objs := f.objects(t, bucket); len(objs) != 0 {
			t.Fatalf("%d bytes: objects after Abort: %v", n, objs)
		}
		if _, err := u.Commit(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Commit after Abort: %v", err)
		}
	}
	// A committed object, then an aborted upload at the same key: the object is untouched.
	first := randomData(7 << 20)
	u, _ := st.Create(ctx, "aborted.bin", ObjectOptions{})
	writeChunks(t, u, first)
	info, err := u.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ = st.Create(ctx, "aborted.bin", ObjectOptions{})
	writeChunks(t, u, randomData(11<<20))
	u.Abort(ctx)
	if obj, err := f.srv.GetObject(bucket, info.Key); err != nil || !bytes.Equal(obj.Content, first) {
		t.Fatalf("an aborted upload changed the committed object (%v)", err)
	}
}

func TestGCSRetriesFailedChunk(t *testing.T) {
	f := newFakeGCS(t)
	ctx := context.Background()
	bucket := f.newBucket(t)
	var chunks, injected atomic.Int32
	st := f.store(t, bucket, func(c *GCSConfig) {
		c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
			if isGCSChunk(req) && chunks.Add(1) == 2 && injected.CompareAndSwap(0, 1) {
				return gcsErrorResponse(req, 503, "backendError")
			}
			return nil
		})
	})
	data := randomData(17 << 20)
	u, _ := st.Create(ctx, "retried.bin", ObjectOptions{})
	writeChunks(t, u, data)
	info, err := u.Commit(ctx)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if injected.Load() != 1 || chunks.Load() != 5 {
		t.Fatalf("injected %d, chunk requests %d (want 4+1)", injected.Load(), chunks.Load())
	}
	if obj, _ := f.srv.GetObject(bucket, info.Key); !bytes.Equal(obj.Content, data) {
		t.Fatalf("data differs after a retried chunk (%d bytes, want %d)", len(obj.Content), len(data))
	}
}

func TestGCSRetriesExhausted(t *testing.T) {
	f := newFakeGCS(t)
	ctx := context.Background()
	bucket := f.newBucket(t)
	var attempts atomic.Int32
	st := f.store(t, bucket, func(c *GCSConfig) {
		c.MaxRetries = 2
		c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
			if isGCSChunk(req) {
				attempts.Add(1)
				return gcsErrorResponse(req, 500, "backendError")
			}
			return nil
		})
	})
	u, _ := st.Create(ctx, "x", ObjectOptions{})
	_, werr := u.Write(randomData(MinPartSize + 1))
	_, cerr := u.Commit(ctx)
	err := errors.Join(werr, cerr)
	var e *Error
	if Classify(err) != Retryable || !errors.As(err, &e) || e.Status != 500 || e.Code != "backendError" || attempts.Load() != 3 {
		t.Fatalf("err %v class %v after %d attempts (want 3)", err, Classify(err), attempts.Load())
	}
	if objs := f.objects(t, bucket); len(objs) != 0 {
		t.Fatalf("objects: %v", objs)
	}
}

func TestGCSDeniedAndMissingBucket(t *testing.T) {
	f := newFakeGCS(t)
	ctx := context.Background()
	bucket := f.newBucket(t)
	cases := []struct {
		name   string
		bucket string
		hook   func(*http.Request) *http.Response
		class  Class
		status int
	}{
		{"forbidden", bucket, func(req *http.Request) *http.Response { return gcsErrorResponse(req, 403, "forbidden") }, Denied, 403},
		{"unauthorized", bucket, func(req *http.Request) *http.Response { return gcsErrorResponse(req, 401, "required") }, Denied, 401},
		{"missing bucket", "sluice-objbackends-missing", func(*http.Request) *http.Response { return nil }, NotFound, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var calls atomic.Int32
			st := f.store(t, c.bucket, func(cfg *GCSConfig) {
				cfg.HTTPClient = hookClient(func(req *http.Request) *http.Response { calls.Add(1); return c.hook(req) })
			})
			if err := st.Check(ctx); Classify(err) != c.class || !Classify(err).Permanent() {
				t.Fatalf("Check: %v (%v)", err, Classify(err))
			}
			for _, n := range []int{10, 6 << 20} {
				calls.Store(0)
				u, _ := st.Create(ctx, "x", ObjectOptions{})
				_, werr := u.Write(randomData(n))
				_, cerr := u.Commit(ctx)
				err := errors.Join(werr, cerr)
				var e *Error
				if !errors.As(err, &e) || e.Status != c.status || Classify(err) != c.class {
					t.Fatalf("%d bytes: %v (%v)", n, err, Classify(err))
				}
				if calls.Load() != 1 {
					t.Fatalf("%d bytes: %d requests; a permanent error was retried", n, calls.Load())
				}
			}
		})
	}
}

// A service-account key: the client signs a JWT with it and trades it for a token at the
// key's token_uri, here a loopback token server. A key the server refuses is Denied.
func TestGCSServiceAccountKey(t *testing.T) {
	// Google's emulator variable (set to 127.0.0.1:1 in the test environment) makes the
	// client drop authentication; this test is about authentication.
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	f := newFakeGCS(t)
	bucket := f.newBucket(t)
	var refuse atomic.Bool
	var tokenCalls atomic.Int32
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenCalls.Add(1)
		if err := r.ParseForm(); err != nil || r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || r.Form.Get("assertion") == "" {
			http.Error(w, "bad token request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if refuse.Load() {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
			return
		}
		io.WriteString(w, `{"access_token":"sluice-test-token","token_type":"Bearer","expires_in":3600}`)
	}))
	defer tokens.Close()
	// Record what reaches the storage API.
	var mu sync.Mutex
	var authHeaders []string
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		authHeaders = append(authHeaders, r.Header.Get("Authorization"))
		mu.Unlock()
		f.srv.HTTPHandler().ServeHTTP(w, r)
	}))
	defer front.Close()

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyJSON, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "sluice-test", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "exporter@sluice-test.iam.gserviceaccount.com", "token_uri": tokens.URL + "/token",
	})
	st, err := NewGCS(context.Background(), GCSConfig{Bucket: bucket, Endpoint: front.URL + "/storage/v1/", CredentialsJSON: keyJSON, PartSize: MinPartSize, RetryBaseDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.(*gcsStore).Close()
	u, _ := st.Create(context.Background(), "x", ObjectOptions{})
	writeChunks(t, u, randomData(6<<20))
	if _, err := u.Commit(context.Background()); err != nil {
		t.Fatalf("Commit with a service-account key: %v", err)
	}
	if tokenCalls.Load() == 0 {
		t.Fatal("the token endpoint was never called")
	}
	mu.Lock()
	for _, h := range authHeaders {
		if h != "Bearer sluice-test-token" {
			t.Fatalf("a request carried Authorization %q", h)
		}
	}
	mu.Unlock()

	refuse.Store(true)
	st2, err := NewGCS(context.Background(), GCSConfig{Bucket: bucket, Endpoint: front.URL + "/storage/v1/", CredentialsJSON: keyJSON, RetryBaseDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.(*gcsStore).Close()
	err = st2.Check(context.Background())
	var e *Error
	if Classify(err) != Denied || !errors.As(err, &e) || e.Code != "invalid_grant" {
		t.Fatalf("a refused key: %v (%v)", err, Classify(err))
	}
	u, _ = st2.Create(context.Background(), "y", ObjectOptions{})
	u.Write([]byte("y"))
	if _, err := u.Commit(context.Background()); Classify(err) != Denied {
		t.Fatalf("upload with a refused key: %v (%v)", err, Classify(err))
	}
}

func TestGCSCancelled(t *testing.T) {
	f := newFakeGCS(t)
	bucket := f.newBucket(t)
	st := f.store(t, bucket, nil)
	ctx, cancel := context.WithCancel(context.Background())
	u, _ := st.Create(ctx, "x", ObjectOptions{})
	writeChunks(t, u, randomData(6<<20))
	cancel()
	_, err := u.Commit(ctx)
	if Classify(err) != Cancelled {
		t.Fatalf("%v classified %v", err, Classify(err))
	}
	if objs := f.objects(t, bucket); len(objs) != 0 {
		t.Fatalf("objects after cancel: %v", objs)
	}
}

func TestGCSConfig(t *testing.T) {
	ctx := context.Background()
	base := GCSConfig{Bucket: "b-1", Endpoint: "http://127.0.0.1:1/storage/v1/", RetryBaseDelay: time.Millisecond}
	bad := []func(*GCSConfig){
		func(c *GCSConfig) { c.Bucket = "" },
		func(c *GCSConfig) { c.Bucket = "UPPER" },
		func(c *GCSConfig) { c.Bucket = "a" },
		func(c *GCSConfig) { c.Prefix = "../x" },
		func(c *GCSConfig) { c.PartSize = 1 << 20 },
		func(c *GCSConfig) { c.Endpoint = "ftp://x" },
		func(c *GCSConfig) { c.Endpoint = "" }, // no key, no endpoint
		func(c *GCSConfig) { c.CredentialsJSON = []byte("not json") },
		func(c *GCSConfig) {
			c.CredentialsJSON = []byte(`{"type":"external_account","credential_source":{"file":"/etc/shadow"}}`)
		},
	}
	for i, mod := range bad {
		c := base
		mod(&c)
		if _, err := NewGCS(ctx, c); Classify(err) != Fatal {
			t.Errorf("case %d: %v (%v)", i, err, Classify(err))
		}
	}
	st, err := NewGCS(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer st.(*gcsStore).Close()
	if st.(*gcsStore).chunkSize != DefaultPartSize {
		t.Errorf("default chunk %d", st.(*gcsStore).chunkSize)
	}
	odd, _ := NewGCS(ctx, GCSConfig{Bucket: "b-1", Endpoint: base.Endpoint, PartSize: MinPartSize + 1})
	if cs := odd.(*gcsStore).chunkSize; cs%gcsChunkAlign != 0 || cs < MinPartSize+1 {
		t.Errorf("chunk %d is not rounded up to 256 KiB", cs)
	}
	if _, err := st.Create(ctx, "../x", ObjectOptions{}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Create(../x): %v", err)
	}
	// Nothing listens on port 1: connection refused is retryable.
	if err := st.Check(ctx); Classify(err) != Retryable {
		t.Fatalf("connection refused: %v (%v)", err, Classify(err))
	}
}
