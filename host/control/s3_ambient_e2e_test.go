package control_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluicehq/sluice/host/control"
)

// TestS3ExportWithoutKeysIgnoresHostCredentials (issue 17): an S3 export without keys used
// to be bound with the host's own AWS credentials (the SDK's default chain) for whatever
// bucket and endpoint the export named. The host's environment here holds working keys for
// the loopback versitygw: with ambient credentials off (the default) the run fails at
// binding, saying why, and writes nothing; once the operator allows them, it completes.
func TestS3ExportWithoutKeysIgnoresHostCredentials(t *testing.T) {
	endpoint := os.Getenv("SLUICE_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Skip("SLUICE_TEST_S3_ENDPOINT is not set (eval \"$(bash .ci/services/versitygw.sh)\")")
	}
	access, secret := os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"), os.Getenv("SLUICE_TEST_S3_SECRET_KEY")
	awsDir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(awsDir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(awsDir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	e := newEnv(t, "")
	ctx := context.Background()
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(access, secret, "")})
	bucket := fmt.Sprintf("sluice-ambient-%d", time.Now().UnixNano())
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	objects := func() int {
		out, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Contents)
	}
	id := e.createExport("no-keys", map[string]any{
		"bucket_name": bucket, "region": "us-east-1", "endpoint_url": endpoint, "prefix": "p",
	})
	end := t0.Truncate(time.Hour)
	e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
		map[string]any{"start_at": end.Add(-time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
	rs := e.waitRuns(id, "1 run", allFinished(1))
	if rs[0].Status != "Failed" || !strings.Contains(rs[0].LatestError, "no access key") ||
		!strings.Contains(rs[0].LatestError, "SLUICE_S3_AMBIENT_CREDENTIALS") {
		t.Fatalf("without ambient credentials the run should fail at binding, naming the reason: %+v", rs[0])
	}
	if n := objects(); n != 0 {
		t.Fatalf("the run wrote %d objects with the host's credentials", n)
	}

	// A host whose operator allows ambient credentials: the same export works.
	e = newEnv(t, "", func(c *control.Config) { c.S3AmbientCredentials = true })
	id = e.createExport("no-keys", map[string]any{
		"bucket_name": bucket, "region": "us-east-1", "endpoint_url": endpoint, "prefix": "p",
	})
	e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
		map[string]any{"start_at": end.Add(-time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)
	rs = e.waitRuns(id, "the run with ambient credentials", func(rs []run) bool { return len(rs) == 1 && rs[0].Status == "Completed" })
	if rs[0].RecordsCompleted == 0 || objects() == 0 {
		t.Fatalf("with ambient credentials: %+v, %d objects", rs[0], objects())
	}
}
