// Command s3 is Sluice's S3 destination plugin (and S3-compatible stores through
// endpoint_url). It writes each run's events as JSON Lines or Parquet objects named like
// PostHog's S3 batch export:
//
//	{prefix}/{data_interval_start}-{data_interval_end}[-{n}].{jsonl|parquet}[.{gz|br|zst|lz4|sz}]
//
// All encoding and compression runs on the host (encoder_write with the batch handle): the
// plugin decides keys, format, columns, file splitting and error classification, and never
// touches a record. Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o s3.wasm ./plugins/s3
package main

import (
	"slices"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/plugins/internal/objectexport"
	"github.com/sluicehq/sluice/sdk"
)

// Version of the plugin.
const Version = "1.1.0"

func manifest() abi.Manifest {
	return abi.Manifest{
		Name:         "s3",
		Version:      Version,
		ABIVersion:   "1.0",
		Description:  "Amazon S3 and S3-compatible object stores: JSON Lines or Parquet files per interval",
		Capabilities: []string{abi.CapObject},
		Formats:      []string{"jsonl", "parquet"},
		Config: slices.Concat([]abi.Field{
			{Name: "bucket_name", Type: abi.TypeString, Required: true, Binding: "object.bucket",
				Description: "Bucket to write to."},
			{Name: "region", Type: abi.TypeString, Binding: "object.region",
				Description: "AWS region of the bucket."},
		},
			objectexport.FileFields("bucket", true), []abi.Field{
				{Name: "encryption", Type: abi.TypeString, Enum: []string{"AES256", "aws:kms"}, Binding: "object.encryption",
					Description: "Server-side encryption."},
				{Name: "kms_key_id", Type: abi.TypeString, Binding: "object.kms_key_id",
					Description: "KMS key id, with encryption aws:kms."},
				{Name: "endpoint_url", Type: abi.TypeString, Binding: "object.endpoint_url",
					Description: "Endpoint of an S3-compatible store (R2, GCS HMAC, ...)."},
				{Name: "use_virtual_style_addressing", Type: abi.TypeBoolean, Default: false,
					Binding: "object.use_virtual_style_addressing",
					Description: "Address the bucket as a host name (https://bucket.endpoint/key) instead of a path " +
						"(https://endpoint/bucket/key), for S3-compatible stores that need it."},
				{Name: "aws_access_key_id", Type: abi.TypeString, Secret: true, Binding: "object.access_key_id",
					Description: "Access key id."},
				{Name: "aws_secret_access_key", Type: abi.TypeString, Secret: true, Binding: "object.secret_access_key",
					Description: "Secret access key."},
				objectexport.ColumnsField(),
			}),
	}
}

func init() {
	sdk.Register(manifest(), func() sdk.Destination {
		return &destination{objectexport.Destination{P: plugin}}
	})
}

func main() {}
