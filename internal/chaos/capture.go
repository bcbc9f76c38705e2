package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// CaptureKey is the project key the hosts accept (serve's default).
const CaptureKey = "phc_sluice_dev"

// Capturer sends events to the hosts' /batch endpoint at a steady rate, as an SDK would:
// each batch goes to a random running host; a batch that is not acknowledged (the host
// died, answered 5xx) is sent again, with the same uuids, to another host until one
// acknowledges it. It remembers every acknowledged uuid.
type Capturer struct {
	Cluster   *Cluster
	Rate      int // events per second
	BatchSize int // events per request

	HTTP *http.Client

	mu    sync.Mutex
	acked map[uuid.UUID]struct{}
	// uncertain holds uuids of batches that failed at least once before being acknowledged:
	// the failed try may have been stored too (a host killed between insert and answer).
	uncertain map[uuid.UUID]struct{}

	Requests, Failures, Batches atomic.Int64
	seq                         atomic.Int64
}

// CaptureStats summarises a Capturer's work.
type CaptureStats struct {
	Events    int   // acknowledged events
	Batches   int64 // acknowledged batches
	Requests  int64 // requests sent
	Failures  int64 // requests not acknowledged (then sent again)
	Uncertain int   // acknowledged events whose batch had a failed try before
}

// Run sends until stop is closed or ctx ends, then finishes the batch in flight (until
// ctx ends). It returns when the last batch is acknowledged.
func (c *Capturer) Run(ctx context.Context, stop <-chan struct{}) {
	if c.BatchSize <= 0 {
		c.BatchSize = 20
	}
	if c.HTTP == nil {
		c.HTTP = &http.Client{Timeout: 15 * time.Second}
	}
	c.mu.Lock()
	if c.acked == nil {
		c.acked, c.uncertain = map[uuid.UUID]struct{}{}, map[uuid.UUID]struct{}{}
	}
	c.mu.Unlock()
	every := time.Duration(float64(time.Second) * float64(c.BatchSize) / float64(max(c.Rate, 1)))
	tick := time.NewTicker(every)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-tick.C:
		}
		ids, body := c.batch()
		wg.Add(1)
		go func() { defer wg.Done(); c.send(ctx, ids, body) }()
	}
}

func (c *Capturer) batch() ([]uuid.UUID, []byte) {
	type ev struct {
		Event      string         `json:"event"`
		DistinctID string         `json:"distinct_id"`
		UUID       string         `json:"uuid"`
		Properties map[string]any `json:"properties"`
	}
	ids := make([]uuid.UUID, c.BatchSize)
	evs := make([]ev, c.BatchSize)
	for i := range evs {
		n := c.seq.Add(1)
		ids[i] = uuid.New()
		evs[i] = ev{Event: "$pageview", DistinctID: fmt.Sprintf("chaos-user-%d", n%97), UUID: ids[i].String(),
			Properties: map[string]any{"n": n, "$current_url": "https://example.com/chaos"}}
	}
	body, _ := json.Marshal(map[string]any{"api_key": CaptureKey, "batch": evs})
	return ids, body
}

// send posts one batch until a host acknowledges it or ctx ends.
func (c *Capturer) send(ctx context.Context, ids []uuid.UUID, body []byte) {
	failed := false
	for ctx.Err() == nil {
		hosts := c.Cluster.Hosts
		h := hosts[rand.IntN(len(hosts))]
		if !h.Running() {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		c.Requests.Add(1)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL()+"/batch", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.HTTP.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`"status":1`)) {
				c.Batches.Add(1)
				c.mu.Lock()
				for _, id := range ids {
					c.acked[id] = struct{}{}
					if failed {
						c.uncertain[id] = struct{}{}
					}
				}
				c.mu.Unlock()
				return
			}
		}
		c.Failures.Add(1)
		failed = true
		time.Sleep(50 * time.Millisecond)
	}
}

// Acked returns the acknowledged uuids.
func (c *Capturer) Acked() map[uuid.UUID]struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[uuid.UUID]struct{}, len(c.acked))
	for k := range c.acked {
		out[k] = struct{}{}
	}
	return out
}

// Stats returns the counters.
func (c *Capturer) Stats() CaptureStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CaptureStats{Events: len(c.acked), Batches: c.Batches.Load(), Requests: c.Requests.Load(),
		Failures: c.Failures.Load(), Uncertain: len(c.uncertain)}
}
