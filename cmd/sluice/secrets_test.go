package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" database/sql driver for schema set-up

	"github.com/sluicehq/sluice/storage"
)

const (
	rotKeyA = "a:" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	rotKeyB = "b:" + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	rotKeyC = "c:" + "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

// clearSluiceEnv keeps the operator's own SLUICE_* settings out of the command under test.
func clearSluiceEnv(t *testing.T) {
	for _, v := range []string{"SLUICE_DATA_DIR", "SLUICE_DATABASE_URL", "SLUICE_SECRET_KEY"} {
		t.Setenv(v, "")
	}
}

// sealExports opens cfg with keys and stores exports whose secrets that keyring seals.
func sealExports(t *testing.T, cfg storage.Config, keys string, names ...string) []storage.BatchExport {
	t.Helper()
	ctx := context.Background()
	cfg.SecretKey = keys
	db, err := storage.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := db.GetLatestPluginByName(ctx, "s3")
	if errors.Is(err, storage.ErrNotFound) {
		p, err = db.CreatePlugin(ctx, storage.Plugin{Name: "s3", Version: "1", ABIVersion: "1.0", SHA256: strings.Repeat("ab", 32), ModulePath: "/p/s3.wasm"})
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []storage.BatchExport
	for _, n := range names {
		e, err := db.CreateExport(ctx, storage.BatchExport{Name: n, PluginID: p.ID, DestinationType: "s3",
			Interval: storage.IntervalHour, SecretConfig: map[string]any{"aws_secret_access_key": "s3cr3t-" + n}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// checkSecrets opens cfg with keys alone and reads every export's secret.
func checkSecrets(t *testing.T, cfg storage.Config, keys string, exports ...storage.BatchExport) {
	t.Helper()
	cfg.SecretKey = keys
	db, err := storage.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, e := range exports {
		got, err := db.GetExport(context.Background(), e.ID)
		if err != nil {
			t.Fatalf("export %s with %s: %v", e.Name, keys, err)
		}
		if got.SecretConfig["aws_secret_access_key"] != "s3cr3t-"+e.Name {
			t.Fatalf("export %s: %v", e.Name, got.SecretConfig)
		}
	}
}

func rotate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"secrets", "rotate"}, args...))
	if err != nil {
		return "", err
	}
	// run writes to os.Stdout; call the command again through its writer to read the
	// report (it is idempotent, so the second call re-seals nothing).
	err = secretsRotate(context.Background(), args, &out)
	return out.String(), err
}

// testRotateCommand seals with key A, rotates to "B,A" through the command, then opens with B alone.
func testRotateCommand(t *testing.T, cfg storage.Config, dbArgs []string) {
	exports := sealExports(t, cfg, rotKeyA, "e1", "e2")
	args := append(dbArgs, "--secret-key", rotKeyB+","+rotKeyA)
	var out bytes.Buffer
	if err := secretsRotate(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `re-sealed 2 of 2 stored secrets with key "b" (from "a": 2)`) ||
		!strings.Contains(out.String(), `no stored secret needs key(s) a any more`) {
		t.Fatalf("report:\n%s", out.String())
	}
	out.Reset()
	if err := secretsRotate(context.Background(), args, &out); err != nil || !strings.Contains(out.String(), `re-sealed 0 stored secrets: all 2 are sealed with key "b"`) {
		t.Fatalf("second rotation: %v\n%s", err, out.String())
	}
	checkSecrets(t, cfg, rotKeyB, exports...)

	// A secret sealed with a key the keyring lacks: refused, nothing changes.
	more := sealExports(t, cfg, rotKeyC, "e3")
	more = append(more, sealExports(t, cfg, rotKeyA, "e4")...)
	out.Reset()
	err := secretsRotate(context.Background(), args, &out)
	if !errors.Is(err, storage.ErrDecrypt) || !strings.Contains(err.Error(), more[0].ID) || !strings.Contains(err.Error(), `sealed with key "c"`) {
		t.Fatalf("rotation with an unopenable secret: %v", err)
	}
	checkSecrets(t, cfg, rotKeyA, more[1]) // e4 was not re-sealed
	if err := secretsRotate(context.Background(), append(dbArgs, "--secret-key", rotKeyB+","+rotKeyA+","+rotKeyC), &out); err != nil {
		t.Fatal(err)
	}
	checkSecrets(t, cfg, rotKeyB, append(exports, more...)...)
}

func TestSecretsRotateSQLite(t *testing.T) {
	clearSluiceEnv(t)
	dir := t.TempDir()
	testRotateCommand(t, storage.Config{DataDir: dir}, []string{"--data-dir", dir})
}

func TestSecretsRotatePostgres(t *testing.T) {
	clearSluiceEnv(t)
	base := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL not set")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() }) // after the schema is dropped
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "sluice_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("postgres at SLUICE_TEST_POSTGRES_URL: %v", err)
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
	dir := t.TempDir()
	testRotateCommand(t, storage.Config{DatabaseURL: u.String(), DataDir: dir},
		[]string{"--data-dir", dir, "--database-url", u.String()})
}

// With no SLUICE_SECRET_KEY the keyring is the key file in the data dir: the operator puts
// the new key first in that file, rotates (reading the dir from SLUICE_DATA_DIR, as serve
// does), then removes the old entry.
func TestSecretsRotateKeyFile(t *testing.T) {
	clearSluiceEnv(t)
	dir := t.TempDir()
	cfg := storage.Config{DataDir: dir}
	exports := sealExports(t, cfg, "", "e1") // creates DATA_DIR/secret.key
	keyFile := filepath.Join(dir, storage.SecretKeyFileName)
	old, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(rotKeyB+","+strings.TrimSpace(string(old))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_DATA_DIR", dir)
	out, err := rotate(t)
	if err != nil || !strings.Contains(out, `all 1 are sealed with key "b"`) {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	if err := os.WriteFile(keyFile, []byte(rotKeyB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkSecrets(t, cfg, "", exports...)
}

// A data dir without a database or a key file is an error, and nothing is created in it.
func TestSecretsRotateRefusesMissingState(t *testing.T) {
	clearSluiceEnv(t)
	dir := filepath.Join(t.TempDir(), "typo")
	if _, err := rotate(t, "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "no key file") {
		t.Fatalf("no key file: %v", err)
	}
	if _, err := rotate(t, "--data-dir", dir, "--secret-key", rotKeyB); err == nil || !strings.Contains(err.Error(), "no database") {
		t.Fatalf("no database: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the command created %s: %v", dir, err)
	}
	if err := run(context.Background(), []string{"secrets"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("sluice secrets: %v, want usage", err)
	}
}
