package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"
)

// Client calls the REST API of whichever host answers, trying each running host in a
// random order: a kill in the middle of a call moves it to another host.
type Client struct {
	Cluster *Cluster
	Token   string
	HTTP    *http.Client
}

// APIRun is the API's view of a run.
type APIRun struct {
	ID               string    `json:"id"`
	Status           string    `json:"status"`
	IntervalStart    time.Time `json:"interval_start"`
	IntervalEnd      time.Time `json:"interval_end"`
	Attempt          int       `json:"attempt"`
	Generation       int       `json:"generation"`
	RecordsCompleted int64     `json:"records_completed"`
	LatestError      string    `json:"latest_error"`
}

// Do sends one request and decodes a 2xx answer into out; other answers are errors. A
// POST that fails without an answer is not repeated on another host unless idempotent.
func (c *Client) Do(ctx context.Context, method, path string, body, out any, idempotent bool) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return err
		}
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	var lastErr error
	for attempt := 0; attempt < 60 && ctx.Err() == nil; attempt++ {
		hosts := c.Cluster.Hosts
		h := hosts[rand.IntN(len(hosts))]
		if !h.Running() {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		req, err := http.NewRequestWithContext(ctx, method, h.URL()+path, bytes.NewReader(raw))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			lastErr = err
			if !idempotent && method != http.MethodGet {
				return fmt.Errorf("%s %s on host %d: %w (not repeated)", method, path, h.N, err)
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusServiceUnavailable {
			lastErr = fmt.Errorf("%s %s on host %d: HTTP %d %s", method, path, h.N, resp.StatusCode, b)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.StatusCode, b)
		}
		if out != nil {
			return json.Unmarshal(b, out)
		}
		return nil
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return fmt.Errorf("%s %s: no host answered: %w", method, path, lastErr)
}

// Runs lists every run of an export (all pages).
func (c *Client) Runs(ctx context.Context, exportID string) ([]APIRun, error) {
	var all []APIRun
	cursor := ""
	for {
		q := url.Values{"limit": {"500"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Results    []APIRun `json:"results"`
			NextCursor string   `json:"next_cursor"`
		}
		if err := c.Do(ctx, http.MethodGet, "/api/v1/batch_exports/"+exportID+"/runs?"+q.Encode(), nil, &page, true); err != nil {
			return nil, err
		}
		all = append(all, page.Results...)
		if page.NextCursor == "" {
			return all, nil
		}
		cursor = page.NextCursor
	}
}

// S3Destination is an s3 export's destination writing gzip JSON Lines under prefix.
func S3Destination(endpoint, bucket, prefix, access, secret string) map[string]any {
	return map[string]any{"type": "s3", "config": map[string]any{
		"bucket_name": bucket, "region": "us-east-1", "endpoint_url": endpoint, "prefix": prefix,
		"aws_access_key_id": access, "aws_secret_access_key": secret,
		"file_format": "JSONLines", "compression": "gzip"}}
}

// CreateExport creates an export and returns its id.
func (c *Client) CreateExport(ctx context.Context, spec map[string]any) (string, error) {
	var out struct{ ID string }
	if err := c.Do(ctx, http.MethodPost, "/api/v1/batch_exports", spec, &out, false); err != nil {
		return "", err
	}
	return out.ID, nil
}

// Backfill requests a backfill of [start, end].
func (c *Client) Backfill(ctx context.Context, exportID string, start, end time.Time) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/batch_exports/"+exportID+"/backfills",
		map[string]any{"start_at": start.UTC().Format(time.RFC3339), "end_at": end.UTC().Format(time.RFC3339)}, nil, false)
}
