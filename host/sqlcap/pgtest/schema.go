package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Schema gives a test a fresh schema (named prefix_<n>) in database db of the shared test
// server (SLUICE_TEST_POSTGRES_URL; the test is skipped without it), creating db if needed.
// It returns a superuser connection to db, db's URL and the schema, dropped at the end.
func Schema(t testing.TB, db, prefix string) (*pgx.Conn, *url.URL, string) {
	t.Helper()
	raw := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if raw == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (.ci/services.sh starts PostgreSQL)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil && !strings.Contains(err.Error(), "42P04") {
		t.Fatal(err)
	}
	admin.Close(ctx)
	u.Path = "/" + db
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	schema := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	return conn, u, schema
}
