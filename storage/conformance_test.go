package storage_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" database/sql driver for schema set-up

	"github.com/sluicehq/sluice/storage"
	"github.com/sluicehq/sluice/storage/storagetest"
)

// TestConformanceSQLite runs the suite on the embedded SQLite file, each test
// in a new data dir with a key file created on first open.
func TestConformanceSQLite(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) storage.Config {
		return storage.Config{DataDir: t.TempDir()}
	})
}

// TestConformancePostgres runs the suite on PostgreSQL when
// SLUICE_TEST_POSTGRES_URL is set (see .ci/services/postgres.sh), each test in
// a new schema dropped afterwards.
func TestConformancePostgres(t *testing.T) {
	t.Parallel()
	base := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL not set")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if err := admin.PingContext(context.Background()); err != nil {
		t.Fatalf("postgres at SLUICE_TEST_POSTGRES_URL: %v", err)
	}
	storagetest.Run(t, func(t *testing.T) storage.Config {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			t.Fatal(err)
		}
		schema := "sluice_test_" + hex.EncodeToString(b[:])
		ctx := context.Background()
		if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
				t.Errorf("drop schema %s: %v", schema, err)
			}
		})
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return storage.Config{DatabaseURL: u.String(), DataDir: t.TempDir()}
	})
}
