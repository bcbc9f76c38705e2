// Command gcs is Sluice's Google Cloud Storage destination plugin. It writes each run's
// events as JSON Lines or Parquet objects named like the s3 plugin's keys:
//
//	{prefix}/{data_interval_start}-{data_interval_end}[-{n}].{jsonl|parquet}[.{gz|br|zst|lz4|sz}]
//
// The shared object export (plugins/internal/objectexport) decides keys, format, columns,
// file splitting and partitions; the host's object capability, bound to GCS by the
// object.gcs.* fields, streams each object as a resumable upload. The plugin never sees the
// service-account key. Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o gcs.wasm ./plugins/gcs
package main

import (
	"slices"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/plugins/internal/objectexport"
	"github.com/sluicehq/sluice/sdk"
)

// Version of the plugin.
const Version = "1.0.0"

func manifest() abi.Manifest {
	return abi.Manifest{
		Name:         "gcs",
		Version:      Version,
		ABIVersion:   "1.0",
		Description:  "Google Cloud Storage: JSON Lines or Parquet objects per interval",
		Capabilities: []string{abi.CapObject},
		Formats:      []string{"jsonl", "parquet"},
		Config: slices.Concat([]abi.Field{
			{Name: "bucket_name", Type: abi.TypeString, Required: true, Binding: "object.gcs.bucket",
				Description: "Bucket to write to."}},
			objectexport.FileFields("bucket", false), []abi.Field{
				{Name: "service_account_key", Type: abi.TypeString, Secret: true, Required: true,
					Binding:     "object.gcs.service_account_key",
					Description: "The service account's JSON key (the whole file); the account needs storage.objects.create on the bucket."},
				objectexport.ColumnsField(),
			}),
	}
}

// gcsCodes are the reasons of GCS's JSON API errors: refused credentials, a missing bucket
// and invalid requests fail the run; rate limits and backend errors are retried.
var gcsCodes = sdk.ErrorCodes{Destination: "Google Cloud Storage",
	Fatal: map[string]bool{"notFound": true, "forbidden": true, "unauthorized": true, "authError": true,
		"invalid": true, "required": true, "accountDisabled": true, "userProjectAccountProblem": true,
		"invalid_grant": true, "invalid_client": true},
	Retryable: map[string]bool{"rateLimitExceeded": true, "userRateLimitExceeded": true, "backendError": true,
		"internalError": true}}

var plugin = &objectexport.Plugin{
	Name:  "gcs",
	Store: "bucket",
	Secrets: func(c *sdk.Config) error {
		if !c.SecretSet("service_account_key") {
			return sdk.FieldError("service_account_key", "set service_account_key (the service account's JSON key)")
		}
		return nil
	},
	Codes: gcsCodes,
}

func init() {
	objectexport.Register(manifest(), plugin)
}

func main() {}
