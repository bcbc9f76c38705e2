package control_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"
)

// TestEndToEndS3 goes API -> scheduled/backfilled runs -> embedded source -> s3 plugin ->
// a real S3 server (versitygw, SigV4-checking) -> read back every object and compare the
// decoded rows with the source rows, for JSON Lines + gzip and Parquet + zstd.
func TestEndToEndS3(t *testing.T) {
	endpoint := os.Getenv("SLUICE_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Skip("SLUICE_TEST_S3_ENDPOINT is not set (eval \"$(bash .ci/services/versitygw.sh)\")")
	}
	access, secret := os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"), os.Getenv("SLUICE_TEST_S3_SECRET_KEY")
	e := newEnv(t, "")
	ctx := context.Background()
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(access, secret, "")})
	end := t0.Truncate(time.Hour)
	start := end.Add(-3 * time.Hour)

	for _, tc := range []struct{ format, compression, suffix string }{
		{"JSONLines", "gzip", ".jsonl.gz"},
		{"Parquet", "zstd", ".parquet.zst"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			e.t = t
			bucket := fmt.Sprintf("sluice-e2e-%d", time.Now().UnixNano())
			if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
				t.Fatal(err)
			}
			id := e.createExport("s3-"+strings.ToLower(tc.format), map[string]any{
				"bucket_name": bucket, "region": "us-east-1", "endpoint_url": endpoint,
				"aws_access_key_id": access, "aws_secret_access_key": secret,
				"prefix": "posthog/{year}/{month}/{day}", "file_format": tc.format, "compression": tc.compression,
				"encryption": "AES256",
			})
			// The secret never comes back from the API.
			if b, _ := json.Marshal(e.do("GET", "/api/v1/batch_exports/"+id, nil, http.StatusOK)); strings.Contains(string(b), secret) {
				t.Fatalf("the API returned the secret: %s", b)
			}
			e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
				map[string]any{"start_at": start.Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
			rs := e.waitRuns(id, "3 runs", allFinished(3))
			for _, r := range rs {
				if r.Status != "Completed" {
					t.Fatalf("run %+v", r)
				}
			}
			list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			got := map[string]bool{}
			for _, o := range list.Contents {
				keys = append(keys, *o.Key)
				obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: o.Key})
				if err != nil {
					t.Fatal(err)
				}
				data, _ := io.ReadAll(obj.Body)
				obj.Body.Close()
				for _, u := range decodeUUIDs(t, tc.format, data) {
					if got[u] {
						t.Fatalf("event %s exported twice", u)
					}
					got[u] = true
				}
			}
			sort.Strings(keys)
			for i, k := range keys {
				s := start.Add(time.Duration(i) * time.Hour)
				want := fmt.Sprintf("posthog/%s/%s-%s%s", s.Add(time.Hour).Format("2006/01/02"),
					s.Format("2006-01-02T15:04:05+00:00"), s.Add(time.Hour).Format("2006-01-02T15:04:05+00:00"), tc.suffix)
				if k != want {
					t.Errorf("key %d = %s, want %s", i, k, want)
				}
			}
			want := 0
			for _, ev := range e.events {
				if !ev.InsertedAt.Before(start) && ev.InsertedAt.Before(end) {
					want++
					if !got[uuid.UUID(ev.UUID).String()] {
						t.Fatalf("event %s inserted at %s is missing", uuid.UUID(ev.UUID), ev.InsertedAt)
					}
				}
			}
			if len(got) != want {
				t.Fatalf("objects hold %d events, the source %d", len(got), want)
			}
		})
	}
}

func decodeUUIDs(t *testing.T, format string, data []byte) []string {
	t.Helper()
	var out []string
	if format == "JSONLines" {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(zr)
		for {
			var row struct {
				UUID       string          `json:"uuid"`
				Properties json.RawMessage `json:"properties"`
			}
			if err := dec.Decode(&row); err == io.EOF {
				return out
			} else if err != nil {
				t.Fatal(err)
			}
			if len(row.Properties) == 0 || row.Properties[0] != '{' {
				t.Fatalf("properties should be a nested JSON object, got %.60s", row.Properties)
			}
			out = append(out, row.UUID)
		}
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	col, ok := f.Schema().Lookup("uuid")
	if !ok {
		t.Fatalf("no uuid column in %v", f.Schema())
	}
	rd := parquet.NewReader(f)
	defer rd.Close()
	rows := make([]parquet.Row, 64)
	for {
		n, err := rd.ReadRows(rows)
		for _, r := range rows[:n] {
			out = append(out, uuid.UUID(r[col.ColumnIndex].ByteArray()).String())
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
