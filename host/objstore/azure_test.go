package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
)

// Azurite's well-known development account (public, documented by Microsoft).
const (
	azuriteAccount = "devstoreaccount1"
	azuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// azurite is the Azurite blob service the Azure tests run against: started by
// .ci/services/azurite.sh, which prints SLUICE_TEST_AZURITE_CONNECTION_STRING.
type azurite struct {
	connStr  string
	endpoint string // the blob service URL, http://127.0.0.1:10000/devstoreaccount1
	admin    *service.Client
}

func newAzurite(tb testing.TB) *azurite {
	tb.Helper()
	cs := os.Getenv("SLUICE_TEST_AZURITE_CONNECTION_STRING")
	if cs == "" {
		if os.Getenv("SLUICE_REQUIRE_SERVICES") == "1" {
			tb.Fatal("SLUICE_TEST_AZURITE_CONNECTION_STRING is not set and SLUICE_REQUIRE_SERVICES=1 (eval \"$(bash .ci/services/azurite.sh)\")")
		}
		tb.Skip("SLUICE_TEST_AZURITE_CONNECTION_STRING not set: eval \"$(bash .ci/services/azurite.sh)\"")
	}
	admin, err := service.NewClientFromConnectionString(cs, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &azurite{connStr: cs, endpoint: strings.TrimSuffix(admin.URL(), "/"), admin: admin}
}

// newContainer creates a container with a unique name and removes it afterwards.
func (a *azurite) newContainer(tb testing.TB) string {
	tb.Helper()
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "sluice-objbackends-" + hex.EncodeToString(rnd[:])
	if _, err := a.admin.CreateContainer(context.Background(), name, nil); err != nil {
		tb.Fatalf("CreateContainer: %v", err)
	}
	tb.Cleanup(func() { a.admin.DeleteContainer(context.Background(), name, nil) })
	return name
}

func (a *azurite) store(tb testing.TB, name string, mod func(*AzureConfig)) Store {
	tb.Helper()
	cfg := AzureConfig{
		Container: name, Prefix: "exports/team-1", ConnectionString: a.connStr,
		PartSize: MinPartSize, Concurrency: 3, RetryBaseDelay: time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	st, err := NewAzureBlob(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

func (a *azurite) blob(name, key string) *blockblob.Client {
	return a.admin.NewContainerClient(name).NewBlockBlobClient(key)
}

func (a *azurite) get(tb testing.TB, name, key string) []byte {
	tb.Helper()
	out, err := a.blob(name, key).DownloadStream(context.Background(), nil)
	if err != nil {
		tb.Fatalf("download %s: %v", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// blobs lists the committed blobs of a container.
func (a *azurite) blobs(tb testing.TB, name string) []string {
	tb.Helper()
	var out []string
	pager := a.admin.NewContainerClient(name).NewListBlobsFlatPager(&container.ListBlobsFlatOptions{})
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			tb.Fatalf("list blobs: %v", err)
		}
		for _, b := range page.Segment.BlobItems {
			out = append(out, *b.Name)
		}
	}
	return out
}

func isStageBlock(req *http.Request) bool {
	return req.Method == http.MethodPut && req.URL.Query().Get("comp") == "block"
}

func azureErrorResponse(req *http.Request, status int, code string) *http.Response {
	body := `<?xml version="1.0" encoding="utf-8"?><Error><Code>` + code + `</Code><Message>injected
RequestId:test</Message></Error>`
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/xml"}, "X-Ms-Error-Code": {code}, "X-Ms-Request-Id": {"test-request"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: req,
	}
}

func TestAzureRoundTrip(t *testing.T) {
	a := newAzurite(t)
	for _, auth := range []string{"connection string", "account key"} {
		t.Run(auth, func(t *testing.T) {
			ctx := context.Background()
			name := a.newContainer(t)
			st := a.store(t, name, func(c *AzureConfig) {
				if auth == "account key" {
					c.ConnectionString, c.AccountName, c.AccountKey, c.EndpointURL = "", azuriteAccount, azuriteKey, a.endpoint
				}
			})
			data := randomData(17<<20 + 12345) // 4 blocks of 5 MiB (the last one short)
			u, info := roundTrip(t, st, data)
			if got := a.get(t, name, info.Key); !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, differ from the %d written", len(got), len(data))
			}
			props, err := a.blob(name, info.Key).GetProperties(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			run := props.Metadata["Run"] // Go's header parsing capitalises the name
			if *props.ContentType != "application/jsonl" || *props.ContentEncoding != "identity" || run == nil || *run != "r1" {
				t.Errorf("attributes: type %q encoding %q metadata %v", *props.ContentType, *props.ContentEncoding, props.Metadata)
			}
			bl, err := a.blob(name, info.Key).GetBlockList(ctx, blockblob.BlockListTypeAll, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(bl.CommittedBlocks) != 4 || len(bl.UncommittedBlocks) != 0 {
				t.Fatalf("%d committed blocks (want 4), %d uncommitted (want 0)", len(bl.CommittedBlocks), len(bl.UncommittedBlocks))
			}
			if err := u.Abort(ctx); err != nil {
				t.Fatalf("Abort after Commit: %v", err)
			}
			if got := a.get(t, name, info.Key); len(got) != len(data) {
				t.Fatal("Abort after Commit removed the blob")
			}
		})
	}
}

func TestAzureSmallAndEmptyObjects(t *testing.T) {
	a := newAzurite(t)
	name := a.newContainer(t)
	var puts, blocks atomic.Int32
	st := a.store(t, name, func(c *AzureConfig) {
		c.Prefix = ""
		c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
			switch {
			case isStageBlock(req):
				blocks.Add(1)
			case req.Method == http.MethodPut && !req.URL.Query().Has("comp"):
				puts.Add(1)
			}
			return nil
		})
	})
	smallObjects(t, st, []int{0, 1, 1 << 20, MinPartSize - 1}, func(key string) []byte { return a.get(t, name, key) })
	if puts.Load() != 4 || blocks.Load() != 0 {
		t.Fatalf("%d Put Blob, %d Put Block; want one Put Blob per object", puts.Load(), blocks.Load())
	}
}

func TestAzureAbortLeavesNoBlob(t *testing.T) {
	a := newAzurite(t)
	ctx := context.Background()
	name := a.newContainer(t)
	st := a.store(t, name, nil)
	const key = "exports/team-1/aborted.bin"

	// A first upload that aborts: nothing at the key.
	u, err := st.Create(ctx, "aborted.bin", ObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, u, randomData(12<<20)) // two blocks staged, one being filled
	if err := u.Abort(ctx); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if bs := a.blobs(t, name); len(bs) != 0 {
		t.Fatalf("blobs after Abort: %v", bs)
	}
	if _, err := a.blob(name, key).GetProperties(ctx, nil); err == nil {
		t.Fatal("aborted blob exists")
	}
	if _, err := u.Commit(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Abort: %v", err)
	}

	// A committed blob, then an aborted upload at the same key: the blob is untouched.
	first := randomData(7 << 20)
	u, _ = st.Create(ctx, "aborted.bin", ObjectOptions{})
	writeChunks(t, u, first)
	if _, err := u.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	u, _ = st.Create(ctx, "aborted.bin", ObjectOptions{})
	writeChunks(t, u, randomData(11<<20))
	if err := u.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.get(t, name, key); !bytes.Equal(got, first) {
		t.Fatalf("an aborted upload changed the committed blob (%d bytes, want %d)", len(got), len(first))
	}
	// The next commit at the key discards the blocks the aborted uploads left.
	u, _ = st.Create(ctx, "aborted.bin", ObjectOptions{})
	writeChunks(t, u, first)
	if _, err := u.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	bl, err := a.blob(name, key).GetBlockList(ctx, blockblob.BlockListTypeUncommitted, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(bl.UncommittedBlocks) != 0 {
		t.Fatalf("%d uncommitted blocks left after a commit at the key", len(bl.UncommittedBlocks))
	}
}

func TestAzureBlockFailureAborts(t *testing.T) {
	a := newAzurite(t)
	ctx := context.Background()
	name := a.newContainer(t)
	var denied, blocks atomic.Int32
	st := a.store(t, name, func(c *AzureConfig) {
		c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
			if isStageBlock(req) && blocks.Add(1) == 2 {
				denied.Add(1)
				return azureErrorResponse(req, 403, "AuthorizationPermissionMismatch")
			}
			return nil
		})
	})
	u, err := st.Create(ctx, "denied.bin", ObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for chunk := range slices.Chunk(randomData(17<<20), 1<<20) {
		if _, werr = u.Write(chunk); werr != nil {
			break
		}
	}
	_, cerr := u.Commit(ctx)
	if cerr == nil {
		t.Fatal("Commit succeeded after a denied block")
	}
	var e *Error
	if !errors.As(cerr, &e) || e.Code != "AuthorizationPermissionMismatch" || e.Status != 403 || Classify(cerr) != Denied || e.RequestID != "test-request" {
		t.Fatalf("error %v: %+v class %v", cerr, e, Classify(cerr))
	}
	if strings.Contains(cerr.Error(), "\n") || !strings.Contains(cerr.Error(), "injected") {
		t.Errorf("error text %q: want one line with the service's message", cerr.Error())
	}
	if denied.Load() != 1 {
		t.Fatalf("a denied block was retried: %d attempts", denied.Load())
	}
	if bs := a.blobs(t, name); len(bs) != 0 {
		t.Fatalf("blobs after a failure: %v", bs)
	}
	if err := u.Abort(ctx); err != nil {
		t.Fatalf("Abort after failure: %v", err)
	}
}

func TestAzureRetriesFailedBlock(t *testing.T) {
	a := newAzurite(t)
	ctx := context.Background()
	name := a.newContainer(t)
	var injected, blocks, commits atomic.Int32
	st := a.store(t, name, func(c *AzureConfig) {
		c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
			switch {
			case isStageBlock(req):
				if blocks.Add(1) == 2 && injected.CompareAndSwap(0, 1) {
					return azureErrorResponse(req, 503, "ServerBusy")
				}
			case req.URL.Query().Get("comp") == "blocklist":
				if commits.Add(1) == 1 {
					return azureErrorResponse(req, 500, "InternalError")
				}
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
	if injected.Load() != 1 || blocks.Load() != 5 || commits.Load() != 2 {
		t.Fatalf("injected %d, Put Block requests %d (want 4+1), Put Block List %d (want 1+1)", injected.Load(), blocks.Load(), commits.Load())
	}
	if got := a.get(t, name, info.Key); !bytes.Equal(got, data) {
		t.Fatal("data differs after a retried block")
	}
}

func TestAzureRetriesExhausted(t *testing.T) {
	a := newAzurite(t)
	ctx := context.Background()
	name := a.newContainer(t)
	var attempts atomic.Int32
	st := a.store(t, name, func(c *AzureConfig) {
		c.MaxRetries = 2
		c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
			if isStageBlock(req) {
				attempts.Add(1)
				return azureErrorResponse(req, 500, "InternalError")
			}
			return nil
		})
	})
	u, _ := st.Create(ctx, "x", ObjectOptions{})
	u.Write(randomData(MinPartSize)) // exactly one block, staged in the background
	_, err := u.Commit(ctx)
	var e *Error
	if Classify(err) != Retryable || !errors.As(err, &e) || e.Code != "InternalError" || attempts.Load() != 3 {
		t.Fatalf("err %v class %v after %d attempts (want 3)", err, Classify(err), attempts.Load())
	}
	if bs := a.blobs(t, name); len(bs) != 0 {
		t.Fatalf("blobs: %v", bs)
	}
}

func TestAzureBadCredentials(t *testing.T) {
	a := newAzurite(t)
	name := a.newContainer(t)
	wrongKey := strings.Repeat("A", 86) + "==" // valid base64, not the account's key
	for _, mod := range []func(*AzureConfig){
		func(c *AzureConfig) {
			c.ConnectionString, c.AccountName, c.AccountKey, c.EndpointURL = "", azuriteAccount, wrongKey, a.endpoint
		},
		func(c *AzureConfig) { c.ConnectionString = strings.Replace(a.connStr, azuriteKey, wrongKey, 1) },
	} {
		st := a.store(t, name, mod)
		err := st.Check(context.Background())
		var e *Error
		// Azure answers AuthenticationFailed; Azurite AuthorizationFailure.
		authCode := func(e *Error) bool { return e.Code == "AuthenticationFailed" || e.Code == "AuthorizationFailure" }
		if Classify(err) != Denied || !errors.As(err, &e) || !authCode(e) || e.Status != 403 {
			t.Fatalf("Check with a wrong key: %v (%v)", err, Classify(err))
		}
		for _, n := range []int{10, 6 << 20} { // Put Blob; Put Block
			u, _ := st.Create(context.Background(), "x", ObjectOptions{})
			_, werr := u.Write(randomData(n))
			_, cerr := u.Commit(context.Background())
			err = errors.Join(werr, cerr)
			if !errors.As(err, &e) || !authCode(e) || Classify(err) != Denied || !Classify(err).Permanent() {
				t.Fatalf("%d bytes with a wrong key: %v", n, err)
			}
		}
	}
	if _, err := NewAzureBlob(context.Background(), AzureConfig{Container: name, AccountName: azuriteAccount, AccountKey: "not base64!", EndpointURL: "http://127.0.0.1:1/" + azuriteAccount}); Classify(err) != Denied {
		t.Fatalf("a key that is not base64: %v (%v)", err, Classify(err))
	}
}

func TestAzureMissingContainer(t *testing.T) {
	a := newAzurite(t)
	ctx := context.Background()
	st := a.store(t, "sluice-objbackends-missing", func(c *AzureConfig) { c.MaxRetries = -1 })
	err := st.Check(ctx)
	if Classify(err) != NotFound || !Classify(err).Permanent() {
		t.Fatalf("Check on a missing container: %v (%v)", err, Classify(err))
	}
	for _, n := range []int{10, 6 << 20} {
		u, _ := st.Create(ctx, "x", ObjectOptions{})
		_, werr := u.Write(randomData(n))
		_, cerr := u.Commit(ctx)
		err = errors.Join(werr, cerr)
		var e *Error
		if !errors.As(err, &e) || e.Code != "ContainerNotFound" || e.Status != 404 || Classify(err) != NotFound {
			t.Fatalf("%d bytes: %v (%v)", n, err, Classify(err))
		}
	}
}

func TestAzureConcurrencyBound(t *testing.T) {
	a := newAzurite(t)
	for _, conc := range []int{1, 2} {
		t.Run(fmt.Sprint("concurrency ", conc), func(t *testing.T) {
			ctx := context.Background()
			name := a.newContainer(t)
			var blocks inflight
			st := a.store(t, name, func(c *AzureConfig) {
				c.Concurrency = conc
				c.HTTPClient = hookClient(func(req *http.Request) *http.Response {
					if isStageBlock(req) {
						blocks.hold()
					}
					return nil
				})
			})
			u, _ := st.Create(ctx, "x", ObjectOptions{})
			writeChunks(t, u, randomData(31<<20))
			if _, err := u.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			blocks.checkPeak(t, conc)
		})
	}
}

func TestAzureCancelled(t *testing.T) {
	a := newAzurite(t)
	name := a.newContainer(t)
	st := a.store(t, name, nil)
	ctx, cancel := context.WithCancel(context.Background())
	u, _ := st.Create(ctx, "x", ObjectOptions{})
	writeChunks(t, u, randomData(6<<20))
	cancel()
	_, err := u.Commit(ctx)
	if Classify(err) != Cancelled {
		t.Fatalf("%v classified %v", err, Classify(err))
	}
	if bs := a.blobs(t, name); len(bs) != 0 {
		t.Fatalf("blobs after cancel: %v", bs)
	}
}

func TestAzureConfig(t *testing.T) {
	ctx := context.Background()
	base := AzureConfig{Container: "c-1", AccountName: "acct", AccountKey: azuriteKey, EndpointURL: "http://127.0.0.1:1/acct"}
	bad := []func(*AzureConfig){
		func(c *AzureConfig) { c.Container = "" },
		func(c *AzureConfig) { c.Container = "Upper" },
		func(c *AzureConfig) { c.Container = "a--b" },
		func(c *AzureConfig) { c.Container = "-ab" },
		func(c *AzureConfig) { c.Prefix = "../x" },
		func(c *AzureConfig) { c.PartSize = 1 << 20 },
		func(c *AzureConfig) { c.Concurrency = -1 },
		func(c *AzureConfig) { c.EndpointURL = "ftp://x" },
		func(c *AzureConfig) { c.EndpointURL = "not a url" },
		func(c *AzureConfig) { c.AccountKey = "" },
		func(c *AzureConfig) { c.AccountName, c.AccountKey = "", "" },
		func(c *AzureConfig) { c.ConnectionString = "AccountName=x;AccountKey=y" },
		func(c *AzureConfig) {
			c.AccountName, c.AccountKey, c.EndpointURL, c.ConnectionString = "", "", "", "garbage-with-secret"
		},
	}
	for i, mod := range bad {
		c := base
		mod(&c)
		_, err := NewAzureBlob(ctx, c)
		if Classify(err) != Fatal {
			t.Errorf("case %d: %v (%v)", i, err, Classify(err))
		}
		if err != nil && strings.Contains(err.Error(), "garbage-with-secret") {
			t.Errorf("case %d: the error quotes the connection string: %v", i, err)
		}
	}
	st, err := NewAzureBlob(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	checkUnreachable(t, st) // nothing listens on port 1
}
