package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluicehq/sluice/host/control"
)

// TestConnectionsS3 and TestConnectionsS3Postgres: two exports share one connection to a
// real S3 server (versitygw, checking SigV4); rotating the connection's secret to a bad
// one makes both exports' next runs fail with the server's auth error, rotating it back
// makes them complete; the connection cannot be deleted while they use it; its secret
// never leaves the API.
func TestConnectionsS3(t *testing.T) { connectionsS3(t, "") }

func TestConnectionsS3Postgres(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	connectionsS3(t, freshDatabaseNamed(t, url, "connections_e2e"))
}

func connectionsS3(t *testing.T, databaseURL string) {
	endpoint := os.Getenv("SLUICE_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Skip("SLUICE_TEST_S3_ENDPOINT is not set (eval \"$(bash .ci/services/versitygw.sh)\")")
	}
	access, secret := os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"), os.Getenv("SLUICE_TEST_S3_SECRET_KEY")
	hostLog := &lockedBuffer{}
	e := newEnv(t, databaseURL, func(c *control.Config) {
		c.Logger = slog.New(slog.NewTextHandler(hostLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(access, secret, "")})
	const badSecret = "connections-rotated-to-a-wrong-secret"
	// Every answer of the API in this test: none may hold a secret.
	do := func(method, path string, body any, want int) map[string]any {
		t.Helper()
		out := e.do(method, path, body, want)
		b, _ := json.Marshal(out)
		if strings.Contains(string(b), secret) || strings.Contains(string(b), badSecret) {
			t.Fatalf("%s %s returned a secret: %s", method, path, b)
		}
		return out
	}
	var buckets []string
	for _, name := range []string{"a", "b"} {
		bucket := fmt.Sprintf("connections-%s-%d", name, time.Now().UnixNano())
		if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
			t.Fatal(err)
		}
		buckets = append(buckets, bucket)
	}

	conn := do("POST", "/api/v1/connections", map[string]any{"name": "versitygw", "type": "s3", "config": map[string]any{
		"endpoint_url": endpoint, "region": "us-east-1", "aws_access_key_id": access, "aws_secret_access_key": secret,
	}}, http.StatusCreated)
	cid := conn["id"].(string)
	do("POST", "/api/v1/connections", map[string]any{"name": "unused", "type": "s3", "config": map[string]any{"region": "eu-west-1"}}, http.StatusCreated)
	// Paged one at a time: two pages.
	page := do("GET", "/api/v1/connections?limit=1", nil, http.StatusOK)
	next, _ := page["next_cursor"].(string)
	if page["results"].([]any)[0].(map[string]any)["id"] != cid || next == "" {
		t.Fatalf("first page %v", page)
	}
	if page = do("GET", "/api/v1/connections?limit=1&cursor="+next, nil, http.StatusOK); page["next_cursor"] != nil || page["results"].([]any)[0].(map[string]any)["name"] != "unused" {
		t.Fatalf("second page %v", page)
	}

	testConn := func() map[string]any {
		return do("POST", "/api/v1/connections/"+cid+"/test", map[string]any{"config": map[string]any{"bucket_name": buckets[0]}}, http.StatusOK)
	}
	if rep := testConn(); rep["ok"] != true {
		t.Fatalf("connection test with good keys: %v", rep)
	}

	var exports []string
	for i, bucket := range buckets {
		out := do("POST", "/api/v1/batch_exports", map[string]any{"name": fmt.Sprintf("shared-%d", i), "interval": "hour",
			"destination": map[string]any{"connection_id": cid, "config": map[string]any{
				"bucket_name": bucket, "prefix": "events", "file_format": "JSONLines", "compression": "gzip"}}}, http.StatusCreated)
		if d := out["destination"].(map[string]any); d["type"] != "s3" || d["connection_id"] != cid {
			t.Fatalf("export destination %v", d)
		}
		exports = append(exports, out["id"].(string))
	}

	end := t0.Truncate(time.Hour)
	// backfill runs every export over the hour ending at end, and returns their runs.
	backfill := func(end time.Time) []run {
		t.Helper()
		var out []run
		for _, id := range exports {
			do("POST", "/api/v1/batch_exports/"+id+"/backfills", map[string]any{
				"start_at": end.Add(-time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
		}
		for _, id := range exports {
			rs := e.waitRuns(id, "the run ending at "+end.String(), func(rs []run) bool {
				for _, r := range rs {
					if r.IntervalEnd.Equal(end) {
						return r.Status == "Completed" || r.Status == "Failed"
					}
				}
				return false
			})
			for _, r := range rs {
				if r.IntervalEnd.Equal(end) {
					out = append(out, r)
				}
			}
		}
		return out
	}
	objects := func(bucket string) int {
		list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
		if err != nil {
			t.Fatal(err)
		}
		return len(list.Contents)
	}

	for _, r := range backfill(end.Add(-3 * time.Hour)) {
		if r.Status != "Completed" || r.RecordsCompleted == 0 {
			t.Fatalf("with the connection's keys: run %+v", r)
		}
	}
	for _, b := range buckets {
		if n := objects(b); n != 1 {
			t.Fatalf("bucket %s holds %d objects, want 1", b, n)
		}
	}

	// Rotate to a bad secret: the next run of each export fails with the server's error.
	do("PATCH", "/api/v1/connections/"+cid, map[string]any{"config": map[string]any{"aws_secret_access_key": badSecret}}, http.StatusOK)
	failed := backfill(end.Add(-2 * time.Hour))
	for _, r := range failed {
		if r.Status != "Failed" || !strings.Contains(r.LatestError, "SignatureDoesNotMatch") {
			t.Fatalf("with the rotated bad secret: run %+v, want Failed with SignatureDoesNotMatch", r)
		}
	}
	if rep := testConn(); rep["ok"] != false {
		t.Fatalf("connection test with the bad secret: %v", rep)
	}
	if rep := do("POST", "/api/v1/batch_exports/"+exports[1]+"/test", nil, http.StatusOK); rep["ok"] != false {
		t.Fatalf("export test with the bad secret: %v", rep)
	}

	// Rotate back: the next runs (a retry of the failed one, a new interval) complete.
	do("PATCH", "/api/v1/connections/"+cid, map[string]any{"config": map[string]any{"aws_secret_access_key": secret}}, http.StatusOK)
	for _, r := range backfill(end.Add(-time.Hour)) {
		if r.Status != "Completed" {
			t.Fatalf("after rotating back: run %+v", r)
		}
	}
	do("POST", "/api/v1/batch_exports/"+exports[0]+"/runs/"+failed[0].ID+"/retry", nil, http.StatusAccepted)
	e.waitRuns(exports[0], "the retried run", func(rs []run) bool {
		for _, r := range rs {
			if r.ID == failed[0].ID {
				return r.Status == "Completed"
			}
		}
		return false
	})
	if n := objects(buckets[0]); n != 3 {
		t.Fatalf("bucket a holds %d objects, want 3", n)
	}

	// The host logged the failed runs, never a secret; the run logs hold none either.
	if log := hostLog.String(); !strings.Contains(log, "SignatureDoesNotMatch") || strings.Contains(log, secret) || strings.Contains(log, badSecret) {
		t.Fatalf("host log: has the failure %v, holds a secret %v", strings.Contains(log, "SignatureDoesNotMatch"), strings.Contains(log, secret) || strings.Contains(log, badSecret))
	}
	for _, id := range exports {
		do("GET", "/api/v1/batch_exports/"+id+"/logs?limit=1000", nil, http.StatusOK)
	}

	// In use: 409 naming both exports; deleted once they are gone.
	inUse := e.do("DELETE", "/api/v1/connections/"+cid, nil, http.StatusConflict)["error"].(map[string]any)
	users := inUse["exports"].([]any)
	if len(users) != 2 || users[0].(map[string]any)["id"] != exports[0] || users[1].(map[string]any)["id"] != exports[1] {
		t.Fatalf("409 exports %v", users)
	}
	for _, id := range exports {
		do("DELETE", "/api/v1/batch_exports/"+id, nil, http.StatusNoContent)
	}
	do("DELETE", "/api/v1/connections/"+cid, nil, http.StatusNoContent)
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers (a logger's).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
