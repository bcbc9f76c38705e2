package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/demo"
)

// bodies holds a few /batch request bodies of PostHog-shaped events (internal/demo, as the
// JavaScript SDK sends them: event, distinct_id, properties, timestamp, uuid) with the
// offsets of each event's uuid, so that every request gets fresh uuids for the cost of a
// copy: the generator stays cheap next to the server it measures.
type bodies struct {
	tmpl   [][]byte
	uuids  [][]int // offsets of the 36-character uuid strings in tmpl[i]
	nonce  [8]byte
	serial atomic.Uint64
	random bool // v4-like random uuids instead of time-ordered ones
}

// phEvent is one event as an SDK sends it.
type phEvent struct {
	Event      string          `json:"event"`
	DistinctID string          `json:"distinct_id"`
	Properties json.RawMessage `json:"properties"`
	Timestamp  string          `json:"timestamp"`
	UUID       string          `json:"uuid"`
}

func newBodies(batch, variants int, key string) (*bodies, error) {
	b := &bodies{}
	if _, err := rand.Read(b.nonce[:]); err != nil {
		return nil, err
	}
	r := mrand.New(mrand.NewPCG(1, 2))
	now := time.Now().UTC()
	for v := range variants {
		evs := make([]phEvent, batch)
		for i := range evs {
			e := demo.One(r, now)
			evs[i] = phEvent{Event: e.Event, DistinctID: e.DistinctID, Properties: json.RawMessage(e.Properties),
				Timestamp: e.Timestamp.Format(time.RFC3339Nano), UUID: fmt.Sprintf("%08x-%04x-4000-8000-00000000cafe", v, i)}
		}
		raw, err := json.Marshal(map[string]any{"api_key": key, "batch": evs})
		if err != nil {
			return nil, err
		}
		offs := make([]int, batch)
		for i := range evs {
			o := bytes.Index(raw, []byte(`"`+evs[i].UUID+`"`))
			if o < 0 {
				return nil, fmt.Errorf("uuid placeholder %s not found", evs[i].UUID)
			}
			offs[i] = o + 1
		}
		b.tmpl, b.uuids = append(b.tmpl, raw), append(b.uuids, offs)
	}
	return b, nil
}

// next returns body number n with fresh, unique uuids written into buf: increasing ones (a
// random nonce of this process, then a counter: ordered like the v7 uuids posthog-js
// sends), or random ones (v4, as most server-side SDKs send) when b.random.
func (b *bodies) next(n int, buf []byte) []byte {
	t := b.tmpl[n%len(b.tmpl)]
	buf = append(buf[:0], t...)
	var u [16]byte
	copy(u[:8], b.nonce[:])
	for _, o := range b.uuids[n%len(b.tmpl)] {
		s := b.serial.Add(1)
		for i := range 8 {
			u[8+i] = byte(s >> (56 - 8*i))
		}
		if b.random {
			_, _ = rand.Read(u[:])
		}
		u[6] = u[6]&0x0f | 0x40
		u[8] = u[8]&0x3f | 0x80
		hex.Encode(buf[o:o+8], u[0:4])
		hex.Encode(buf[o+9:o+13], u[4:6])
		hex.Encode(buf[o+14:o+18], u[6:8])
		hex.Encode(buf[o+19:o+23], u[8:10])
		hex.Encode(buf[o+24:o+36], u[10:16])
	}
	return buf
}

// loadResult is one timed load.
type loadResult struct {
	events  int
	elapsed time.Duration
	lat     []time.Duration // sorted
	bytes   int64
	// serverCPU is the server's CPU time during the load (set by the caller)
	serverCPU time.Duration
}

func (r loadResult) cpuPerEvent() float64 { return float64(r.serverCPU) / 1e3 / float64(r.events) }

func (r loadResult) rate() float64 { return float64(r.events) / r.elapsed.Seconds() }

func (r loadResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))]
}

// drive sends requests of b's bodies to url with conc workers until events have been sent
// (rounded up to whole batches). Any answer other than 200 {"status":1} stops the load
// with an error: the figure counts acknowledged events only.
func drive(ctx context.Context, client *http.Client, url string, b *bodies, batch, events, conc int) (loadResult, error) {
	requests := (events + batch - 1) / batch
	var (
		next  atomic.Int64
		mu    sync.Mutex
		lat   = make([]time.Duration, 0, requests)
		sent  atomic.Int64
		errMu sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t0 := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			mine := make([]time.Duration, 0, requests/conc+1)
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				n := int(next.Add(1)) - 1
				if n >= requests {
					return
				}
				buf = b.next(n, buf)
				t := time.Now()
				err := post(ctx, client, url, buf)
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					cancel()
					return
				}
				mine = append(mine, time.Since(t))
				sent.Add(int64(len(buf)))
			}
		}()
	}
	wg.Wait()
	res := loadResult{events: requests * batch, elapsed: time.Since(t0), lat: lat, bytes: sent.Load()}
	slices.Sort(res.lat)
	return res, first
}

func post(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(bytes.TrimSpace(raw)) != `{"status":1}` {
		return fmt.Errorf("POST %s: HTTP %d: %s", url, resp.StatusCode, raw)
	}
	return nil
}
