package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// store is where an export writes: the bucket or container of one run, the export's
// destination, and what was written.
type store interface {
	name() string // "s3", "azure"
	create(ctx context.Context, bucket string) error
	destination(c config, bucket string, i int) (plugin string, cfg map[string]any)
	// written sums the objects' sizes; remove deletes them and the bucket.
	written(ctx context.Context, bucket string) (objects int, bytes int64, err error)
	remove(ctx context.Context, bucket string)
}

// exportFormat is the files' layout in every store: JSON Lines + gzip, PostHog's prefix.
func exportFormat(cfg map[string]any, i int) map[string]any {
	cfg["prefix"] = fmt.Sprintf("posthog-%d/{year}/{month}/{day}", i)
	cfg["file_format"], cfg["compression"] = "JSONLines", "gzip"
	return cfg
}

// s3Store is versitygw through the s3 plugin.
type s3Store struct{ c *s3.Client }

func (s3Store) name() string { return "s3" }

func (s s3Store) create(ctx context.Context, bucket string) error {
	_, err := s.c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket})
	return err
}

func (s3Store) destination(c config, bucket string, i int) (string, map[string]any) {
	return "s3", exportFormat(map[string]any{"bucket_name": bucket, "region": "us-east-1", "endpoint_url": c.s3Endpoint,
		"aws_access_key_id": c.access, "aws_secret_access_key": c.secret}, i)
}

func (s s3Store) written(ctx context.Context, bucket string) (int, int64, error) {
	list, err := s.c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for _, o := range list.Contents {
		n += aws.ToInt64(o.Size)
	}
	return len(list.Contents), n, nil
}

func (s s3Store) remove(ctx context.Context, bucket string) { emptyBucket(ctx, s.c, bucket) }

// azureStore is Azurite through the azure-blob plugin (connection string auth).
type azureStore struct{ conn string }

func (azureStore) name() string { return "azure" }

func (a azureStore) client(bucket string) (*container.Client, error) {
	return container.NewClientFromConnectionString(a.conn, bucket, nil)
}

func (a azureStore) create(ctx context.Context, bucket string) error {
	cc, err := a.client(bucket)
	if err != nil {
		return err
	}
	_, err = cc.Create(ctx, nil)
	return err
}

func (a azureStore) destination(_ config, bucket string, i int) (string, map[string]any) {
	return "azure-blob", exportFormat(map[string]any{"container_name": bucket, "connection_string": a.conn}, i)
}

func (a azureStore) written(ctx context.Context, bucket string) (int, int64, error) {
	cc, err := a.client(bucket)
	if err != nil {
		return 0, 0, err
	}
	objects, bytes := 0, int64(0)
	pager := cc.NewListBlobsFlatPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return 0, 0, err
		}
		for _, b := range page.Segment.BlobItems {
			objects++
			if b.Properties != nil && b.Properties.ContentLength != nil {
				bytes += *b.Properties.ContentLength
			}
		}
	}
	return objects, bytes, nil
}

func (a azureStore) remove(ctx context.Context, bucket string) {
	if cc, err := a.client(bucket); err == nil {
		_, _ = cc.Delete(ctx, nil) // deletes the blobs with the container
	}
}

// azureEndpoint is the BlobEndpoint of a connection string (for the loopback check).
func azureEndpoint(conn string) string {
	for _, kv := range strings.Split(conn, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(kv), "BlobEndpoint="); ok {
			return v
		}
	}
	return ""
}
