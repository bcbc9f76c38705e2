package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// backend is an S3 server the tests run against: an in-process gofakes3,
// and a real versitygw when SLUICE_TEST_S3_ENDPOINT is set.
type backend struct {
	name           string
	endpoint       string
	access, secret string
	admin          *s3.Client
	faithful       bool // checks signatures and implements more of S3
}

func newGofakes3(tb testing.TB) *backend {
	tb.Helper()
	faker := gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog()))
	srv := httptest.NewServer(faker.Server()) // listens on 127.0.0.1
	tb.Cleanup(srv.Close)
	return withAdmin(&backend{name: "gofakes3", endpoint: srv.URL, access: "fake", secret: "fake"})
}

func withAdmin(b *backend) *backend {
	b.admin = s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(b.endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(b.access, b.secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	return b
}

func backends(t *testing.T) []*backend {
	bs := []*backend{newGofakes3(t)}
	if ep := os.Getenv("SLUICE_TEST_S3_ENDPOINT"); ep != "" {
		bs = append(bs, withAdmin(&backend{
			name: "versitygw", endpoint: ep, faithful: true,
			access: os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"), secret: os.Getenv("SLUICE_TEST_S3_SECRET_KEY"),
		}))
	} else {
		t.Log("SLUICE_TEST_S3_ENDPOINT not set: versitygw cases skipped")
	}
	return bs
}

func forEachBackend(t *testing.T, f func(t *testing.T, b *backend)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// newBucket creates a bucket with a unique name and removes it afterwards.
func (b *backend) newBucket(tb testing.TB) string {
	tb.Helper()
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "sluice-test-" + hex.EncodeToString(rnd[:])
	ctx := context.Background()
	if _, err := b.admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		tb.Fatalf("CreateBucket: %v", err)
	}
	tb.Cleanup(func() {
		ups, _ := b.admin.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(name)})
		if ups != nil {
			for _, up := range ups.Uploads {
				b.admin.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(name), Key: up.Key, UploadId: up.UploadId})
			}
		}
		objs, _ := b.admin.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(name)})
		if objs != nil {
			for _, o := range objs.Contents {
				b.admin.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(name), Key: o.Key})
			}
		}
		b.admin.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)})
	})
	return name
}

func (b *backend) store(tb testing.TB, bucket string, mod func(*S3Config)) Store {
	tb.Helper()
	cfg := S3Config{
		Bucket: bucket, Prefix: "exports/team-1", EndpointURL: b.endpoint,
		AccessKeyID: b.access, SecretAccessKey: b.secret,
		PartSize: MinPartSize, Concurrency: 3, RetryBaseDelay: time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	st, err := NewS3(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

func (b *backend) get(tb testing.TB, bucket, key string) ([]byte, *s3.GetObjectOutput) {
	tb.Helper()
	out, err := b.admin.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		tb.Fatalf("GetObject %s: %v", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return data, out
}

func (b *backend) pendingUploads(tb testing.TB, bucket string) []types.MultipartUpload {
	tb.Helper()
	out, err := b.admin.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		tb.Fatalf("ListMultipartUploads: %v", err)
	}
	return out.Uploads
}

func randomData(n int) []byte {
	data := make([]byte, n)
	r := mrand.NewChaCha8([32]byte{1, 2, 3})
	r.Read(data)
	return data
}

// writeChunks writes data in uneven pieces, as an encoder would.
func writeChunks(tb testing.TB, w io.Writer, data []byte) {
	tb.Helper()
	for len(data) > 0 {
		n := min(len(data), 100_003)
		if _, err := w.Write(data[:n]); err != nil {
			tb.Fatalf("Write: %v", err)
		}
		data = data[n:]
	}
}

// hookTransport lets a test see or answer each request before it is sent.
type hookTransport struct {
	base http.RoundTripper
	hook func(*http.Request) *http.Response // nil response: send for real
}

func (h *hookTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if resp := h.hook(req); resp != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return resp, nil
	}
	return h.base.RoundTrip(req)
}

func hookClient(hook func(*http.Request) *http.Response) *http.Client {
	return &http.Client{Transport: &hookTransport{base: http.DefaultTransport.(*http.Transport).Clone(), hook: hook}}
}

func isUploadPart(req *http.Request) bool {
	q := req.URL.Query()
	return req.Method == http.MethodPut && q.Has("partNumber") && q.Has("uploadId")
}

func s3ErrorResponse(req *http.Request, status int, code string) *http.Response {
	body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>injected</Message><RequestId>test</RequestId></Error>`
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/xml"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: req,
	}
}

func TestS3MultipartRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		bucket := b.newBucket(t)
		st := b.store(t, bucket, nil)
		if err := st.Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
		data := randomData(17<<20 + 12345) // 4 parts of 5 MiB (last one short)
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
		if b.faithful && !strings.HasSuffix(info.ETag, "-4") {
			t.Errorf("ETag %q is not a 4-part multipart ETag", info.ETag)
		}
		got, out := b.get(t, bucket, info.Key)
		if !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, differ from the %d written", len(got), len(data))
		}
		if aws.ToString(out.ContentType) != "application/jsonl" || out.Metadata["run"] != "r1" {
			t.Errorf("attributes: type %q metadata %v", aws.ToString(out.ContentType), out.Metadata)
		}
		if ups := b.pendingUploads(t, bucket); len(ups) != 0 {
			t.Fatalf("pending uploads after Commit: %d", len(ups))
		}
		if err := u.Abort(ctx); err != nil {
			t.Fatalf("Abort after Commit: %v", err)
		}
		if got, _ := b.get(t, bucket, info.Key); len(got) != len(data) {
			t.Fatal("Abort after Commit removed the object")
		}
	})
}

func TestS3SmallAndEmptyObjects(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		bucket := b.newBucket(t)
		st := b.store(t, bucket, func(c *S3Config) { c.Prefix = "" })
		smallObjects(t, st, []int{0, 1, 1 << 20, MinPartSize}, func(key string) []byte {
			got, _ := b.get(t, bucket, key)
			return got
		})
	})
}

func TestS3AbortLeavesNoUpload(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		bucket := b.newBucket(t)
		st := b.store(t, bucket, nil)
		u, err := st.Create(ctx, "aborted.bin", ObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeChunks(t, u, randomData(12<<20)) // two parts sent, one being filled
		if ups := b.pendingUploads(t, bucket); len(ups) != 1 {
			t.Fatalf("expected one multipart upload in progress, got %d", len(ups))
		}
		if err := u.Abort(ctx); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		if ups := b.pendingUploads(t, bucket); len(ups) != 0 {
			t.Fatalf("pending uploads after Abort: %d", len(ups))
		}
		if _, err := b.admin.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("exports/team-1/aborted.bin")}); err == nil {
			t.Fatal("aborted object exists")
		}
		if _, err := u.Commit(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Commit after Abort: %v", err)
		}
	})
}

func TestS3PartFailureAborts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		bucket := b.newBucket(t)
		var denied atomic.Int32
		st := b.store(t, bucket, func(c *S3Config) {
			c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
				if isUploadPart(req) && req.URL.Query().Get("partNumber") == "2" {
					denied.Add(1)
					return s3ErrorResponse(req, 403, "AccessDenied")
				}
				return nil
			})
		})
		u, err := st.Create(ctx, "denied.bin", ObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data := randomData(17 << 20)
		var werr error
		for chunk := range slices.Chunk(data, 1<<20) {
			if _, werr = u.Write(chunk); werr != nil {
				break
			}
		}
		_, cerr := u.Commit(ctx)
		if cerr == nil {
			t.Fatal("Commit succeeded after a denied part")
		}
		if werr != nil && !errors.Is(cerr, werr) && cerr.Error() != werr.Error() {
			t.Logf("write error %v, commit error %v", werr, cerr)
		}
		var e *Error
		if !errors.As(cerr, &e) || e.Code != "AccessDenied" || e.Status != 403 || Classify(cerr) != Denied {
			t.Fatalf("error %v: code %q status %d class %v", cerr, e.Code, e.Status, Classify(cerr))
		}
		if denied.Load() != 1 {
			t.Fatalf("a denied part was retried: %d attempts", denied.Load())
		}
		if ups := b.pendingUploads(t, bucket); len(ups) != 0 {
			t.Fatalf("pending uploads after failure: %d", len(ups))
		}
		if err := u.Abort(ctx); err != nil {
			t.Fatalf("Abort after failure: %v", err)
		}
	})
}

func TestS3RetriesFailedPart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		bucket := b.newBucket(t)
		var injected, parts atomic.Int32
		st := b.store(t, bucket, func(c *S3Config) {
			c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
				if !isUploadPart(req) {
					return nil
				}
				parts.Add(1)
				if req.URL.Query().Get("partNumber") == "2" && injected.CompareAndSwap(0, 1) {
					return s3ErrorResponse(req, 503, "SlowDown")
				}
				return nil
			})
		})
		data := randomData(17 << 20)
		u, err := st.Create(ctx, "retried.bin", ObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeChunks(t, u, data)
		info, err := u.Commit(ctx)
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if injected.Load() != 1 || parts.Load() != 5 {
			t.Fatalf("injected %d, UploadPart requests %d (want 1 and 4+1)", injected.Load(), parts.Load())
		}
		if got, _ := b.get(t, bucket, info.Key); !bytes.Equal(got, data) {
			t.Fatal("data differs after a retried part")
		}
	})
}

func TestS3RetriesExhausted(t *testing.T) {
	b := newGofakes3(t)
	ctx := context.Background()
	bucket := b.newBucket(t)
	var attempts atomic.Int32
	st := b.store(t, bucket, func(c *S3Config) {
		c.MaxRetries = 2
		c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
			if isUploadPart(req) {
				if req.URL.Query().Get("partNumber") == "1" {
					attempts.Add(1)
				}
				return s3ErrorResponse(req, 500, "InternalError")
			}
			return nil
		})
	})
	u, _ := st.Create(ctx, "x", ObjectOptions{})
	u.Write(randomData(MinPartSize)) // exactly one part, sent in the background
	_, err := u.Commit(ctx)
	if Classify(err) != Retryable || attempts.Load() != 3 {
		t.Fatalf("err %v class %v after %d attempts", err, Classify(err), attempts.Load())
	}
	if ups := b.pendingUploads(t, bucket); len(ups) != 0 {
		t.Fatalf("pending uploads: %d", len(ups))
	}
}

func TestS3SendsSSEHeaders(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		bucket := b.newBucket(t)
		modes := []struct{ enc, kms string }{{"AES256", ""}, {"aws:kms", "arn:aws:kms:us-east-1:111122223333:key/test"}}
		if b.faithful {
			modes = modes[:1] // versitygw has no KMS
		}
		for _, m := range modes {
			var mu sync.Mutex
			seen := map[string]http.Header{} // operation -> headers
			st := b.store(t, bucket, func(c *S3Config) {
				c.Encryption, c.KMSKeyID = m.enc, m.kms
				c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
					op := req.Method
					switch q := req.URL.Query(); {
					case q.Has("uploads") && req.Method == http.MethodPost:
						op = "CreateMultipartUpload"
					case q.Has("uploads"):
						op = "ListMultipartUploads"
					case q.Has("partNumber"):
						op = "UploadPart"
					case q.Has("uploadId"):
						op = "CompleteMultipartUpload"
					case req.Method == http.MethodPut:
						op = "PutObject"
					}
					mu.Lock()
					seen[op] = req.Header.Clone()
					mu.Unlock()
					return nil
				})
			})
			for _, n := range []int{1000, 6 << 20} { // PutObject, then multipart
				u, err := st.Create(ctx, "sse-"+m.enc, ObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				writeChunks(t, u, randomData(n))
				if _, err := u.Commit(ctx); err != nil {
					t.Fatalf("%s %d bytes: %v", m.enc, n, err)
				}
			}
			for _, op := range []string{"PutObject", "CreateMultipartUpload"} {
				h := seen[op]
				if h == nil {
					t.Fatalf("%s not sent", op)
				}
				if got := h.Get("X-Amz-Server-Side-Encryption"); got != m.enc {
					t.Errorf("%s %s: x-amz-server-side-encryption %q", m.enc, op, got)
				}
				if got := h.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"); got != m.kms {
					t.Errorf("%s %s: kms key id %q", m.enc, op, got)
				}
			}
		}
	})
}

func TestS3MissingBucket(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		st := b.store(t, "sluice-test-missing-bucket", func(c *S3Config) { c.MaxRetries = -1 })
		err := st.Check(ctx)
		if err == nil || Classify(err) != NotFound || !Classify(err).Permanent() {
			t.Fatalf("Check on a missing bucket: %v (%v)", err, Classify(err))
		}
		for _, n := range []int{10, 6 << 20} {
			u, err := st.Create(ctx, "x", ObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, werr := u.Write(randomData(n))
			_, cerr := u.Commit(ctx)
			err = errors.Join(werr, cerr)
			var e *Error
			if !errors.As(err, &e) || e.Code != "NoSuchBucket" || e.Status != 404 {
				t.Fatalf("%d bytes: %v", n, err)
			}
			if c := Classify(err); c != NotFound || !c.Permanent() {
				t.Fatalf("NoSuchBucket classified %v", c)
			}
		}
	})
}

func TestS3BadCredentials(t *testing.T) {
	if os.Getenv("SLUICE_TEST_S3_ENDPOINT") == "" {
		t.Skip("needs versitygw (gofakes3 accepts any credentials)")
	}
	b := backends(t)[1]
	bucket := b.newBucket(t)
	st := b.store(t, bucket, func(c *S3Config) { c.SecretAccessKey = "wrong" })
	err := st.Check(context.Background())
	if Classify(err) != Denied {
		t.Fatalf("Check with a wrong secret: %v (%v)", err, Classify(err))
	}
	u, _ := st.Create(context.Background(), "x", ObjectOptions{})
	u.Write([]byte("x"))
	_, err = u.Commit(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Code != "SignatureDoesNotMatch" || Classify(err) != Denied {
		t.Fatalf("PutObject with a wrong secret: %v", err)
	}
}

func TestS3ConcurrencyBound(t *testing.T) {
	b := newGofakes3(t)
	for _, conc := range []int{1, 2} {
		t.Run(fmt.Sprint("concurrency ", conc), func(t *testing.T) {
			ctx := context.Background()
			bucket := b.newBucket(t)
			var parts inflight
			st := b.store(t, bucket, func(c *S3Config) {
				c.Concurrency = conc
				c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
					if isUploadPart(req) {
						parts.hold()
					}
					return nil
				})
			})
			u, _ := st.Create(ctx, "x", ObjectOptions{})
			writeChunks(t, u, randomData(31<<20))
			if _, err := u.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			parts.checkPeak(t, conc)
		})
	}
}

func TestS3Cancelled(t *testing.T) {
	b := newGofakes3(t)
	bucket := b.newBucket(t)
	st := b.store(t, bucket, nil)
	ctx, cancel := context.WithCancel(context.Background())
	u, _ := st.Create(ctx, "x", ObjectOptions{})
	writeChunks(t, u, randomData(6<<20))
	cancel()
	_, err := u.Commit(ctx)
	if Classify(err) != Cancelled {
		t.Fatalf("%v classified %v", err, Classify(err))
	}
	if ups := b.pendingUploads(t, bucket); len(ups) != 0 {
		t.Fatalf("pending uploads after cancel: %d", len(ups))
	}
}

func TestS3Config(t *testing.T) {
	ctx := context.Background()
	base := S3Config{Bucket: "b", EndpointURL: "http://127.0.0.1:1", AccessKeyID: "a", SecretAccessKey: "s"}
	bad := []func(*S3Config){
		func(c *S3Config) { c.Bucket = "" },
		func(c *S3Config) { c.Prefix = "../x" },
		func(c *S3Config) { c.PartSize = 1 << 20 },
		func(c *S3Config) { c.Encryption = "rot13" },
		func(c *S3Config) { c.KMSKeyID = "k" },
		func(c *S3Config) { c.EndpointURL = "ftp://x" },
		func(c *S3Config) { c.EndpointURL = "not a url" },
		func(c *S3Config) { c.SecretAccessKey = "" },
	}
	for i, mod := range bad {
		c := base
		mod(&c)
		if _, err := NewS3(ctx, c); Classify(err) != Fatal {
			t.Errorf("case %d: %v", i, err)
		}
	}
	st, err := NewS3(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	checkUnreachable(t, st) // nothing listens on port 1
}

// BenchmarkS3Write measures streaming 64 MiB through the S3 store into an
// in-process gofakes3 (and versitygw when configured), against io.Discard.
func BenchmarkS3Write(b *testing.B) {
	const size = 64 << 20
	data := randomData(size)
	write := func(b *testing.B, w io.Writer) {
		for chunk := range slices.Chunk(data, 256<<10) {
			if _, err := w.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("discard", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			write(b, io.Discard)
		}
	})
	run := func(b *testing.B, be *backend) {
		bucket := be.newBucket(b)
		st := be.store(b, bucket, func(c *S3Config) { c.PartSize = 8 << 20; c.Concurrency = 5 })
		ctx := context.Background()
		b.SetBytes(size)
		for b.Loop() {
			u, err := st.Create(ctx, "bench.bin", ObjectOptions{})
			if err != nil {
				b.Fatal(err)
			}
			write(b, u)
			if _, err := u.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("gofakes3", func(b *testing.B) { run(b, newGofakes3(b)) })
	if ep := os.Getenv("SLUICE_TEST_S3_ENDPOINT"); ep != "" {
		b.Run("versitygw", func(b *testing.B) {
			run(b, withAdmin(&backend{name: "versitygw", endpoint: ep,
				access: os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"), secret: os.Getenv("SLUICE_TEST_S3_SECRET_KEY")}))
		})
	}
}

// Issue 17: an S3 store bound without keys used the host's own AWS credentials (the SDK's
// default chain) for whatever bucket and endpoint the export named. Without
// AmbientCredentials it must refuse at binding; with it, the default chain applies.
func TestS3NoKeysNoAmbientCredentials(t *testing.T) {
	if os.Getenv("SLUICE_TEST_S3_ENDPOINT") == "" {
		t.Skip("needs versitygw (gofakes3 accepts any credentials)")
	}
	b := backends(t)[1]
	bucket := b.newBucket(t)
	// The host's environment holds working keys for the server.
	t.Setenv("AWS_ACCESS_KEY_ID", b.access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", b.secret)
	cfg := S3Config{Bucket: bucket, EndpointURL: b.endpoint}

	st, err := NewS3(context.Background(), cfg)
	if err == nil {
		// Show what the escalation does: the environment's keys work.
		if cerr := st.Check(context.Background()); cerr == nil {
			t.Fatal("a store without keys used the host's AWS credentials from the environment")
		}
		t.Fatal("a store without keys was bound")
	}
	if Classify(err) != Fatal || !strings.Contains(err.Error(), "no access key") {
		t.Fatalf("error %v (%v), want a Fatal config error saying there is no access key", err, Classify(err))
	}

	cfg.AmbientCredentials = true
	st, err = NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(context.Background()); err != nil {
		t.Fatalf("ambient credentials allowed: %v", err)
	}
}

// afterTransport sends every request; for the first one that match picks, it throws the
// server's answer away and returns a 500 instead: the server carried the request out and
// the client cannot know.
type afterTransport struct {
	base  http.RoundTripper
	match func(*http.Request) bool
	done  atomic.Bool
}

func (a *afterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.base.RoundTrip(req)
	if err != nil || !a.match(req) || !a.done.CompareAndSwap(false, true) {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return s3ErrorResponse(req, http.StatusInternalServerError, "InternalError"), nil
}

func isCreateMultipart(req *http.Request) bool {
	return req.Method == http.MethodPost && req.URL.Query().Has("uploads")
}

func TestS3CommitAbortsStaleUploadsAtItsKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		bucket := b.newBucket(t)
		tr := &afterTransport{base: http.DefaultTransport.(*http.Transport).Clone(), match: isCreateMultipart}
		st := b.store(t, bucket, func(c *S3Config) { c.HTTPClient = &http.Client{Transport: tr} })
		const key = "exports/team-1/stale.bin"
		// an earlier attempt at the same object whose host died, and an upload at a key
		// that merely starts with this one, which must survive
		for _, k := range []string{key, key + ".other"} {
			if _, err := b.admin.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(k)}); err != nil {
				t.Fatal(err)
			}
		}
		data := randomData(12 << 20)
		u, err := st.Create(ctx, "stale.bin", ObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeChunks(t, u, data)
		if !tr.done.Load() {
			t.Fatal("the create was not answered with an injected error")
		}
		if ups := b.pendingUploads(t, bucket); len(ups) != 4 {
			t.Fatalf("before the commit: %d open uploads, want 4 (ours, the one lost to the error, the dead attempt's, the other key's)", len(ups))
		}
		info, err := u.Commit(ctx)
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if info.CleanupErr != nil || info.StaleUploadsAborted != 2 {
			t.Fatalf("aborted %d stale uploads (err %v), want 2", info.StaleUploadsAborted, info.CleanupErr)
		}
		ups := b.pendingUploads(t, bucket)
		if len(ups) != 1 || aws.ToString(ups[0].Key) != key+".other" {
			t.Fatalf("open uploads after the commit: %d, want only the other key's", len(ups))
		}
		if got, _ := b.get(t, bucket, info.Key); !bytes.Equal(got, data) {
			t.Fatal("data differs")
		}
	})
}

// use_virtual_style_addressing: with an endpoint, requests name the bucket in the host
// (bucket.endpoint/key) instead of the path (endpoint/bucket/key, the default). The endpoint
// is named localhost: the SDK keeps path style for an IP address. No request is sent.
func TestS3VirtualStyleAddressing(t *testing.T) {
	b := newGofakes3(t)
	endpoint := strings.Replace(strings.TrimPrefix(b.endpoint, "http://"), "127.0.0.1", "localhost", 1)
	for _, virtual := range []bool{false, true} {
		var hosts, paths []string
		client := hookClient(func(req *http.Request) *http.Response {
			hosts, paths = append(hosts, req.URL.Host), append(paths, req.URL.Path)
			return s3ErrorResponse(req, http.StatusForbidden, "AccessDenied") // never sent
		})
		st := b.store(t, "vbucket", func(c *S3Config) {
			c.VirtualStyleAddressing, c.HTTPClient, c.MaxRetries = virtual, client, -1
			c.EndpointURL = "http://" + endpoint
		})
		u, err := st.Create(context.Background(), "k", ObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		u.Write([]byte("x"))
		if _, err := u.Commit(context.Background()); err == nil {
			t.Fatal("the injected 403 was not seen")
		}
		wantHost, wantPath := endpoint, "/vbucket/exports/team-1/k"
		if virtual {
			wantHost, wantPath = "vbucket."+endpoint, "/exports/team-1/k"
		}
		if len(hosts) == 0 || hosts[0] != wantHost || paths[0] != wantPath {
			t.Errorf("virtual=%v: requests to %v %v, want %s%s", virtual, hosts, paths, wantHost, wantPath)
		}
	}
}
