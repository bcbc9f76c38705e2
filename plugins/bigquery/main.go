// Command bigquery is Sluice's BigQuery destination plugin. Like PostHog's BigQuery batch
// export, a run loads its events into a stage table stage_{table}_{run}_g{generation}_{attempt}
// with one load job (host-encoded Parquet or JSON Lines streamed through the
// `bigquery_load` sink; the guest never touches a record), then copies them into the final
// table with one `INSERT INTO final SELECT ...` that also derives set, set_once, ip and
// elements in SQL, and drops the stage. Without query permission it loads straight into
// the final table. The host holds the service-account key; the plugin sees neither it nor
// any other dataset. Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o bigquery.wasm ./plugins/bigquery
package main

import (
	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

// Version of the plugin.
const Version = "0.1.0"

func manifest() abi.Manifest {
	return abi.Manifest{
		Name:         "bigquery",
		Version:      Version,
		ABIVersion:   "1.0",
		Description:  "Google BigQuery: load jobs into a stage table, then INSERT INTO the day-partitioned events table",
		Capabilities: []string{abi.CapBigQuery},
		Formats:      []string{"parquet", "jsonl"},
		Config: []abi.Field{
			{Name: "project_id", Type: abi.TypeString, Required: true, Binding: "bigquery.project_id",
				Description: "Google Cloud project of the dataset."},
			{Name: "dataset_id", Type: abi.TypeString, Required: true, Binding: "bigquery.dataset_id",
				Description: "Dataset to write to (created if missing)."},
			{Name: "table_id", Type: abi.TypeString, Default: "events",
				Description: "Table to write to (created if missing, day-partitioned on timestamp)."},
			{Name: "location", Type: abi.TypeString, Binding: "bigquery.location",
				Description: "Location of the dataset (US, EU, a region); empty: BigQuery's default."},
			{Name: "private_key", Type: abi.TypeString, Secret: true, Binding: "bigquery.private_key",
				Description: "Service account private key (PEM)."},
			{Name: "private_key_id", Type: abi.TypeString, Secret: true, Binding: "bigquery.private_key_id",
				Description: "Service account private key id."},
			{Name: "client_email", Type: abi.TypeString, Secret: true, Binding: "bigquery.client_email",
				Description: "Service account e-mail."},
			{Name: "token_uri", Type: abi.TypeString, Secret: true, Binding: "bigquery.token_uri",
				Description: "Service account token URI (default https://oauth2.googleapis.com/token)."},
			{Name: "use_json_type", Type: abi.TypeBoolean, Default: false,
				Description: "Create properties, set and set_once as JSON columns instead of STRING."},
			{Name: "file_format", Type: abi.TypeString, Default: FormatParquet, Enum: []string{FormatParquet, FormatJSONLines},
				Description: "Format of the stage load (encoded by the host)."},
		},
	}
}

func init() {
	sdk.Register(manifest(), func() sdk.Destination { return &destination{} })
}

func main() {}
