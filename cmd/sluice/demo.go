package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/internal/demo"
)

// demo seeds synthetic events into a data dir's embedded store.
func demoSeed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dataDir := fs.String("data-dir", env("SLUICE_DATA_DIR", "data"), "data directory")
	n := fs.Int("events", 20_000, "events to insert, spread over the last --span")
	span := fs.Duration("span", 2*time.Hour, "insertion times cover [end-span, end)")
	endFlag := fs.String("end", "", "RFC 3339 end of the insertion times (default now)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o750); err != nil {
		return err
	}
	store, err := source.NewSQLite(filepath.Join(*dataDir, "events.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	now := time.Now().UTC()
	end := now
	if *endFlag != "" {
		if end, err = time.Parse(time.RFC3339, *endFlag); err != nil {
			return fmt.Errorf("--end: %w", err)
		}
	}
	if err := insertChunks(ctx, store, demo.Events(*n, end.Add(-*span), end, uint64(now.UnixNano()))); err != nil {
		return err
	}
	fmt.Printf("inserted %d events into %s\n", *n, filepath.Join(*dataDir, "events.db"))
	return nil
}

func insertChunks(ctx context.Context, store *source.SQLite, evs []abi.Event) error {
	for len(evs) > 0 {
		k := min(len(evs), 5000)
		if err := store.Insert(ctx, evs[:k]); err != nil {
			return err
		}
		evs = evs[k:]
	}
	return nil
}

// startDemo makes `make run` a complete system a newcomer can watch: two hours of
// synthetic events, a trickle of new ones, and an export "demo" every 5 minutes to
// JSON Lines files under DATA_DIR/exports/demo, backfilled over the last hour so files
// appear within a minute. It goes through the API like a user would.
func startDemo(ctx context.Context, h *control.Host, handler http.Handler, token string, log *slog.Logger) error {
	store := h.Events()
	if store == nil {
		return fmt.Errorf("--demo needs the embedded event store (no SLUICE_CLICKHOUSE_DSN)")
	}
	call := func(method, path, body string) (map[string]any, int) {
		req := httptest.NewRequestWithContext(ctx, method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		var out map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return out, rec.Code
	}
	list, code := call(http.MethodGet, "/api/v1/batch_exports", "")
	if code != http.StatusOK {
		return fmt.Errorf("list exports: HTTP %d %v", code, list)
	}
	if items, _ := list["results"].([]any); len(items) > 0 {
		log.Info("demo: exports exist already; not seeding again")
	} else {
		now := time.Now().UTC()
		if err := insertChunks(ctx, store, demo.Events(20_000, now.Add(-2*time.Hour), now, uint64(now.UnixNano()))); err != nil {
			return err
		}
		created, code := call(http.MethodPost, "/api/v1/batch_exports", `{"name": "demo", "interval": "every 5 minutes",
			"destination": {"type": "s3", "config": {"bucket_name": "demo", "endpoint_url": "local",
			"prefix": "events/{year}-{month}-{day}", "file_format": "JSONLines", "compression": "gzip"}}}`)
		if code != http.StatusCreated {
			return fmt.Errorf("create demo export: HTTP %d %v", code, created)
		}
		id, _ := created["id"].(string)
		start := now.Add(-time.Hour).Truncate(5 * time.Minute).Format(time.RFC3339)
		bf, code := call(http.MethodPost, "/api/v1/batch_exports/"+id+"/backfills",
			fmt.Sprintf(`{"start_at": %q, "end_at": %q}`, start, now.Truncate(5*time.Minute).Format(time.RFC3339)))
		if code != http.StatusCreated && code != http.StatusAccepted {
			return fmt.Errorf("demo backfill: HTTP %d %v", code, bf)
		}
		log.Info("demo: 20000 events seeded; export \"demo\" writes every 5 minutes under "+filepath.Join("DATA_DIR", "exports", "demo"), "export_id", id)
	}
	go func() { // a few events a second, as a live site would send
		r := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7))
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				evs := make([]abi.Event, 1+r.IntN(5))
				for i := range evs {
					evs[i] = demo.One(r, now.UTC())
				}
				if err := store.Insert(ctx, evs); err != nil && ctx.Err() == nil {
					log.Warn("demo: insert failed", "err", err)
				}
			}
		}
	}()
	return nil
}
