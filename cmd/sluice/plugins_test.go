package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"

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
	// The postgres plugin's sql capability is bound to the shared PostgreSQL.
	pgConfig := conformancePostgres(t)
	if pgConfig != "" {
		args["postgres"] = []string{"--config", pgConfig}
		// redshift (INSERT mode) on the same server, in its own table.
		args["redshift"] = []string{"--config", strings.Replace(pgConfig, "conformance_events", "conformance_redshift", 1)}
	}
	// The clickhouse plugin's on the shared ClickHouse, database sqldest_conformance.
	chConfig := conformanceClickHouse(t)
	if chConfig != "" {
		args["clickhouse"] = []string{"--config", chConfig}
	}
	for _, p := range lock.Plugins {
		t.Run(p.Name, func(t *testing.T) {
			if (p.Name == "postgres" || p.Name == "redshift") && pgConfig == "" {
				t.Skip("SLUICE_TEST_POSTGRES_URL is not set (.ci/services.sh starts the server)")
			}
			if p.Name == "clickhouse" && chConfig == "" {
				t.Skip("SLUICE_TEST_CLICKHOUSE_DSN is not set (.ci/services.sh starts the server)")
			}
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

// conformancePostgres creates the database sqlcap_conformance on the shared test server and
// returns the postgres plugin's config for it ("" without a server). Loopback databases
// need SLUICE_SQL_ALLOW_LOOPBACK, as on a host.
func conformancePostgres(t *testing.T) string {
	raw := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE sqlcap_conformance"); err != nil && !strings.Contains(err.Error(), "42P04") {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_SQL_ALLOW_LOOPBACK", "true")
	return fmt.Sprintf(`{"host": %q, "port": %s, "database": "sqlcap_conformance", "user": %q, "table_name": "conformance_events"}`,
		u.Hostname(), u.Port(), u.User.Username())
}

// conformanceClickHouse creates the database sqldest_conformance on the shared ClickHouse
// and returns the clickhouse plugin's config for it ("" without a server).
func conformanceClickHouse(t *testing.T) string {
	dsn := os.Getenv("SLUICE_TEST_CLICKHOUSE_DSN")
	if dsn == "" {
		return ""
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ch.Open(&ch.Options{Addr: []string{u.Host}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(context.Background(), "CREATE DATABASE IF NOT EXISTS sqldest_conformance"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_SQL_ALLOW_LOOPBACK", "true")
	return fmt.Sprintf(`{"host": %q, "port": %s, "database": "sqldest_conformance", "table_name": "conformance_events"}`,
		u.Hostname(), u.Port())
}
