package objstore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// memoryStreamSize is what the bounded-memory tests stream through one upload (200 MiB;
// SLUICE_OBJSTORE_MEMORY_MIB changes it, e.g. to 1024 for a 1 GiB measurement), and
// memoryPartSize their part size (8 MiB; SLUICE_OBJSTORE_MEMORY_PART_MIB).
var (
	memoryStreamSize = envMiB("SLUICE_OBJSTORE_MEMORY_MIB", 200)
	memoryPartSize   = envMiB("SLUICE_OBJSTORE_MEMORY_PART_MIB", 8)
)

func envMiB(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n << 20
	}
	return def << 20
}

// memoryUse is what streaming one object cost the process: the peak of live heap above the
// level before the upload, and the bytes allocated meanwhile.
type memoryUse struct {
	peakHeld, allocated uint64
}

func (m memoryUse) String() string {
	return fmt.Sprintf("peak held %.1f MiB, allocated %.1f MiB", float64(m.peakHeld)/(1<<20), float64(m.allocated)/(1<<20))
}

// streamMeasured writes size bytes (a 1 MiB block over and over, so that the source costs
// nothing) through a new upload at key and commits it, sampling the heap every
// millisecond. A forced collection before each sample would hide garbage the upload
// makes; HeapAlloc without one counts it, so peakHeld is an upper bound of what the
// upload keeps.
func streamMeasured(t *testing.T, st Store, key string, size int) memoryUse {
	t.Helper()
	ctx := context.Background()
	block := randomData(1 << 20)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	u, err := st.Create(ctx, key, ObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Abort(ctx)
	for n := 0; n < size; n += len(block) {
		if _, err := u.Write(block[:min(len(block), size-n)]); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	info, err := u.Commit(ctx)
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if info.Bytes != int64(size) {
		t.Fatalf("committed %d bytes, want %d", info.Bytes, size)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	use := memoryUse{allocated: after.TotalAlloc - before.TotalAlloc}
	if peak > before.HeapAlloc {
		use.peakHeld = peak - before.HeapAlloc
	}
	return use
}

// checkBound fails when the upload held or allocated more than bound plus slack: an
// upload that buffered the object, or allocated a new buffer per part, goes far past it.
func checkBound(t *testing.T, use memoryUse, bound uint64) {
	t.Helper()
	const slack = 24 << 20 // the client's requests and responses, the sampler, the runtime
	t.Logf("%d MiB streamed in parts of %d MiB: %s; bound (concurrency+1) x part size = %d MiB (+%d MiB slack)",
		memoryStreamSize>>20, memoryPartSize>>20, use, bound>>20, slack>>20)
	if use.peakHeld > bound+slack {
		t.Errorf("held %d MiB at the peak, more than %d MiB + %d MiB", use.peakHeld>>20, bound>>20, slack>>20)
	}
	if use.allocated > bound+slack {
		t.Errorf("allocated %d MiB while streaming, more than %d MiB + %d MiB", use.allocated>>20, bound>>20, slack>>20)
	}
}

func TestAzureBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 200 MiB")
	}
	a := newAzurite(t)
	name := a.newContainer(t)
	const conc = 2
	part := int64(memoryPartSize)
	st := a.store(t, name, func(c *AzureConfig) { c.PartSize, c.Concurrency = part, conc })
	use := streamMeasured(t, st, "big.bin", memoryStreamSize)
	checkBound(t, use, uint64((conc+1)*part))
	props, err := a.blob(name, "exports/team-1/big.bin").GetProperties(context.Background(), nil)
	if err != nil || *props.ContentLength != int64(memoryStreamSize) {
		t.Fatalf("stored blob: %v", err)
	}
}

// fakeGCSChildEnv makes the test binary serve a fake-gcs-server instead of running tests
// (TestMain): the GCS memory test needs the fake, which keeps objects in memory, out of
// the process it measures.
const fakeGCSChildEnv = "SLUICE_OBJSTORE_FAKE_GCS_CHILD"

func serveFakeGCS() {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Writer: io.Discard})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "sluice-memory"})
	fmt.Println("url", srv.URL())
	io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	srv.Stop()
}

func TestGCSBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 200 MiB")
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fakeGCSChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "url ")
	if err != nil || !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("fake-gcs-server child: %q %v", line, err)
	}
	chunk := int64(memoryPartSize)
	st, err := NewGCS(context.Background(), GCSConfig{Bucket: "sluice-memory", Endpoint: url + "/storage/v1/", PartSize: chunk})
	if err != nil {
		t.Fatal(err)
	}
	defer st.(*gcsStore).Close()
	use := streamMeasured(t, st, "big.bin", memoryStreamSize)
	// A resumable upload sends one chunk at a time: the bound of an S3 or Azure upload with
	// concurrency 1.
	checkBound(t, use, uint64(2*chunk))
}

// The same measurement for S3, on versitygw (a separate process), for comparison.
func TestS3BoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 200 MiB")
	}
	bs := backends(t)
	if len(bs) < 2 {
		if os.Getenv("SLUICE_REQUIRE_SERVICES") == "1" {
			t.Fatal("SLUICE_TEST_S3_ENDPOINT is not set and SLUICE_REQUIRE_SERVICES=1")
		}
		t.Skip("needs versitygw: gofakes3 keeps the objects in this process")
	}
	b := bs[1]
	bucket := b.newBucket(t)
	const conc = 2
	part := int64(memoryPartSize)
	st := b.store(t, bucket, func(c *S3Config) { c.PartSize, c.Concurrency = part, conc })
	use := streamMeasured(t, st, "big.bin", memoryStreamSize)
	checkBound(t, use, uint64((conc+1)*part))
}
