package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/host/warehouse/bigquery/bqfake"
	"github.com/sluicehq/sluice/host/warehouse/snowflake/sffake"
	"github.com/sluicehq/sluice/internal/lockfile"
	"github.com/sluicehq/sluice/plugins/databricks/dbxfake"
)

// Every first-party plugin pinned in plugins.lock matches its pin and passes the
// conformance suite (`sluice plugins test`), the Rust one included: proof that the spec
// is enough to write a plugin without the Go SDK.
func TestLockedPluginsPassConformance(t *testing.T) {
	root, _ := filepath.Abs("../..")
	dir := filepath.Join(root, "bin", "plugins")
	lock, err := lockfile.Read(filepath.Join(root, "plugins.lock"))
	if err != nil {
		t.Fatal(err)
	}
	if err := lockfile.Verify(lock, dir); err != nil {
		t.Fatalf("built plugins differ from plugins.lock (run `make plugins`): %v", err)
	}
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:1")
	bq := bqfake.New()
	t.Cleanup(bq.Close)
	t.Setenv("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
	sf := sffake.New(sffake.Options{Password: "conformance", Schemas: []string{"ANALYTICS.PUBLIC"}})
	t.Cleanup(sf.Close)
	dbx := dbxfake.New(dbxfake.Options{Token: "conformance", Polls: 1})
	t.Cleanup(dbx.Close)
	t.Setenv("SLUICE_HTTP_ALLOW_PRIVATE", "true") // the databricks fake is on loopback
	// Flags per plugin: warehouse plugins get their capability bound to a loopback fake.
	args := map[string][]string{
		"bigquery": {"--bigquery-endpoint", bq.Endpoint(), "--config", `{"project_id": "sluice-test", "dataset_id": "conformance"}`},
		"snowflake": {"--snowflake-endpoint", sf.URL, "--config",
			`{"account": "testaccount", "user": "sluice", "password": "conformance", "database": "analytics", "schema": "public", "warehouse": "WH"}`},
		"azure-blob": {"--config", `{"container_name": "conformance"}`},
		"databricks": {"--config", `{"server_hostname": "` + dbx.URL + `", "http_path": "/sql/1.0/warehouses/conformance",
			"catalog": "main", "schema": "conformance", "table_name": "events", "access_token": "conformance"}`},
	}
	for _, p := range lock.Plugins {
		t.Run(p.Name, func(t *testing.T) {
			a, ok := args[p.Name]
			if !ok {
				a = []string{"--config", `{"bucket_name": "conformance"}`}
			}
			err := pluginsTest(context.Background(), append(a, filepath.Join(dir, p.Name+".wasm")))
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
