package objstore

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// roundTripOpts are the attributes every round-trip test stores and reads back.
var roundTripOpts = ObjectOptions{ContentType: "application/jsonl", ContentEncoding: "identity", Metadata: map[string]string{"run": "r1"}}

// roundTrip checks the store's access, streams data (4 parts of 5 MiB) to
// "2024/01/01/events.jsonl" under the tests' prefix "exports/team-1" and commits it,
// checking Written and the ObjectInfo. The caller reads the object back from its server.
func roundTrip(t *testing.T, st Store, data []byte) (Upload, ObjectInfo) {
	t.Helper()
	ctx := context.Background()
	if err := st.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	u, err := st.Create(ctx, "2024/01/01/events.jsonl", roundTripOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Abort(ctx) })
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
	return u, info
}

// smallObjects writes objects of the sizes (up to one part) to key "obj" (a store bound
// without prefix), each read back with get.
func smallObjects(t *testing.T, st Store, sizes []int, get func(key string) []byte) {
	t.Helper()
	ctx := context.Background()
	for _, n := range sizes {
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
		if got := get("obj"); string(got) != string(data) {
			t.Fatalf("%d bytes: read back %d", n, len(got))
		}
	}
}

// inflight counts the part uploads in flight and their peak, for the concurrency-bound
// tests.
type inflight struct{ now, peak atomic.Int32 }

// hold is called by a request hook for each part: it counts the part in flight and holds
// it until another one is in flight too (or a while has passed), so that the overlap the
// bound allows happens however slow the writer is.
func (f *inflight) hold() {
	n := f.now.Add(1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	for deadline := time.Now().Add(500 * time.Millisecond); f.now.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	f.now.Add(-1)
}

// checkPeak: at most conc parts from the pool plus the last one, sent by Commit; and parts
// do overlap.
func (f *inflight) checkPeak(t *testing.T, conc int) {
	t.Helper()
	if p := int(f.peak.Load()); p > conc+1 || p < 2 {
		t.Fatalf("peak parts in flight %d, want 2..%d", p, conc+1)
	}
}

// checkUnreachable checks a store bound to a port where nothing listens: a key outside the
// prefix is refused before any request, and the refused connection is Retryable.
func checkUnreachable(t *testing.T, st Store) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.Create(ctx, "../x", ObjectOptions{}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Create(../x): %v", err)
	}
	if _, err := st.Create(ctx, strings.Repeat("k", MaxKeyLen+1), ObjectOptions{}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("a key too long: %v", err)
	}
	if err := st.Check(ctx); Classify(err) != Retryable {
		t.Fatalf("connection refused: %v (%v)", err, Classify(err))
	}
}
