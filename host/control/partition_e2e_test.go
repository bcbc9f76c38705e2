package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/demo"
)

// TestEndToEndPartitionByEvent: the s3 plugin with partition_by: event, through the API, the
// real runtime and host encoders (Parquet + zstd, files split at 1 MB) into a local bucket.
// Three hourly backfill runs put every event exactly once under its own event name's
// prefix, with a manifest per event name; an interval with 17 event names fails at attempt 1.
func TestEndToEndPartitionByEvent(t *testing.T) {
	e := newEnv(t, "")
	end := t0.Truncate(time.Hour)
	start := end.Add(-3 * time.Hour)
	id := e.createExport("by-event", map[string]any{"bucket_name": "byevent", "endpoint_url": "local",
		"prefix": "ev/{event}/{year}{month}{day}", "partition_by": "event", "file_format": "Parquet",
		"compression": "zstd", "legacy_parquet_extension": false, "max_file_size_mb": 1})
	e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
		map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
	for _, r := range e.waitRuns(id, "3 runs", allFinished(3)) {
		if r.Status != "Completed" || r.RecordsCompleted != e.countIn(r.IntervalStart, r.IntervalEnd) {
			t.Fatalf("run %+v, want Completed with %d records", r, e.countIn(r.IntervalStart, r.IntervalEnd))
		}
	}
	eventOf := map[string]string{}
	for _, ev := range e.events {
		eventOf[uuid.UUID(ev.UUID).String()] = ev.Event
	}
	root := filepath.Join(e.dataDir, "exports", "byevent")
	var uuids []string
	manifests := map[string][]string{} // event name -> files its manifests list
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		parts := strings.Split(rel, string(filepath.Separator)) // ev, {event}, yyyymmdd, file
		if len(parts) != 4 || parts[0] != "ev" {
			t.Fatalf("unexpected object %s", rel)
		}
		name, err := url.PathUnescape(parts[1])
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(rel, "_manifest.json"):
			var m struct{ Files []string }
			if err := json.Unmarshal(data, &m); err != nil {
				return err
			}
			manifests[name] = append(manifests[name], m.Files...)
		case strings.HasSuffix(rel, ".parquet"):
			for _, u := range decodeUUIDs(t, "Parquet", data) {
				if eventOf[u] != name {
					t.Fatalf("event %s (%q) is in the file set of %q: %s", u, eventOf[u], name, rel)
				}
				uuids = append(uuids, u)
			}
		default:
			t.Fatalf("unexpected object %s", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.exactlyOnce(uuids, start, end)
	if len(manifests) < 5 || len(manifests["$pageview"]) < 3 {
		t.Fatalf("manifests by event: %v", manifests)
	}
	for name, files := range manifests {
		for _, f := range files {
			if !strings.HasPrefix(f, "ev/"+url.PathEscape(name)+"/") {
				t.Errorf("%s manifest lists %s", name, f)
			}
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(f))); err != nil {
				t.Errorf("%s manifest lists %s: %v", name, f, err)
			}
		}
	}

	// 17 distinct event names in one interval, 60 hours before the others: the run fails at
	// its first attempt, naming partition_by.
	hour := t0.Truncate(time.Hour).Add(-60 * time.Hour)
	evs := demo.Events(170, hour, hour.Add(time.Hour), 7)
	for i := range evs {
		evs[i].Event = fmt.Sprintf("name-%d", i%17)
	}
	if err := e.host.Events().Insert(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	id = e.createExport("too-many-events", map[string]any{"bucket_name": "byevent17", "endpoint_url": "local",
		"prefix": "{event}", "partition_by": "event"})
	e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
		map[string]any{"start_at": hour.Format(time.RFC3339), "end_at": hour.Add(time.Hour).Format(time.RFC3339)}, http.StatusCreated)
	rs := e.waitRuns(id, "the failed run", allFinished(1))
	if rs[0].Status != "Failed" || rs[0].Attempt != 1 || !strings.Contains(rs[0].LatestError, "partition_by") {
		t.Fatalf("want Failed at attempt 1 naming partition_by, got %+v", rs[0])
	}
	var left []string
	_ = filepath.WalkDir(filepath.Join(e.dataDir, "exports", "byevent17"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, path)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("the failed run left files: %v", left)
	}
}
