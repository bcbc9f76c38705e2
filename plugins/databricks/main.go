// Command databricks is Sluice's Databricks destination (plugin ABI 1.1, capability http),
// written only against the ABI and the SDK, as a third party would: PostHog's fields
// (server_hostname, http_path, catalog, schema, table_name, use_variant_type,
// use_automatic_schema_evolution), authentication by an OAuth machine-to-machine client
// (client_id, client_secret) or a personal access token. The host encodes each run's events
// into Parquet files (http_body uploads); the plugin PUTs them into a Unity Catalog volume
// (Files API), runs COPY INTO a stage table and MERGE into the target on uuid through the
// SQL Statement Execution API, then deletes the files and drops the stage. The secrets never
// reach the plugin: the host puts {secret:client_secret} into the token request's body and
// {secret:access_token} into the Authorization header. See docs/databricks.md.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -tags sluice_abi_1_1 -o databricks.wasm ./plugins/databricks
package main

import (
	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

func init() {
	sdk.Register(abi.Manifest{
		Name:         "databricks",
		Version:      "0.1.0",
		Description:  "Databricks: Parquet files into a Unity Catalog volume, COPY INTO a stage and MERGE into a Delta table on uuid (Files API and SQL Statement Execution API)",
		Capabilities: []string{abi.CapHTTP},
		Formats:      []string{"parquet"},
		Config: []abi.Field{
			{Name: "server_hostname", Type: abi.TypeString, Required: true, Binding: "http.base_url",
				Description: "the workspace's Server hostname (SQL warehouse > Connection details), e.g. dbc-a1b2c3d4-e5f6.cloud.databricks.com; reached over HTTPS"},
			{Name: "http_path", Type: abi.TypeString, Required: true,
				Description: "the SQL warehouse's HTTP path, /sql/1.0/warehouses/<id>"},
			{Name: "catalog", Type: abi.TypeString, Required: true, Description: "Unity Catalog catalog"},
			{Name: "schema", Type: abi.TypeString, Required: true, Description: "schema in the catalog"},
			{Name: "table_name", Type: abi.TypeString, Required: true, Description: "target Delta table, created if missing"},
			{Name: "use_variant_type", Type: abi.TypeBoolean, Default: true,
				Description: "properties and person_properties as VARIANT (PARSE_JSON); false: STRING"},
			{Name: "use_automatic_schema_evolution", Type: abi.TypeBoolean, Default: true,
				Description: "MERGE WITH SCHEMA EVOLUTION: columns the target lacks are added; false: the target must have every column"},
			{Name: "client_id", Type: abi.TypeString,
				Description: "OAuth machine-to-machine: the service principal's client (application) id"},
			{Name: "client_secret", Type: abi.TypeString, Secret: true, Binding: "http.secret_client_secret",
				Description: "OAuth machine-to-machine: the service principal's secret"},
			{Name: "access_token", Type: abi.TypeString, Secret: true, Binding: "http.secret_access_token",
				Description: "a personal access token, instead of an OAuth client"},
			{Name: "volume", Type: abi.TypeString, Default: "sluice_staging",
				Description: "Unity Catalog volume in the schema where files are staged (created if missing)"},
			{Name: "rows_per_file", Type: abi.TypeInteger, Default: float64(50_000),
				Description: "events per staged Parquet file (1 to 1000000); a file is also cut at 16 MiB"},
			{Name: "statement_timeout_seconds", Type: abi.TypeInteger, Default: float64(10),
				Description: "how long the SQL Statement Execution API waits for a statement before the plugin polls (5 to 20)"},
		},
	}, func() sdk.Destination { return &destination{} })
}

func main() {}
