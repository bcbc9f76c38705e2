package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" database/sql driver for schema set-up
)

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	k, err := ParseKeyring("k1:correct horse")
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range [][]byte{nil, []byte(""), []byte(`{"password":"p"}`), bytes.Repeat([]byte{0, 1, 2}, 10000)} {
		sealed, err := k.Seal(pt)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(sealed, "sluice.v1.k1.") {
			t.Fatalf("sealed = %q", sealed)
		}
		got, err := k.Open(sealed)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("open = %q, %v", got, err)
		}
	}
	a, _ := k.Seal([]byte("same"))
	b, _ := k.Seal([]byte("same"))
	if a == b {
		t.Fatal("two seals of one plaintext are equal: nonce reused")
	}
}

func TestOpenDetectsTampering(t *testing.T) {
	t.Parallel()
	k, err := ParseKeyring("k1:one,k2:two")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	payload := strings.TrimPrefix(sealed, "sluice.v1.k1.")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	flip := func(i int) string {
		c := bytes.Clone(raw)
		c[i] ^= 0x01
		return "sluice.v1.k1." + base64.RawURLEncoding.EncodeToString(c)
	}
	tests := []struct{ name, in string }{
		{"flipped nonce", flip(0)},
		{"flipped ciphertext", flip(13)},
		{"flipped tag", flip(len(raw) - 1)},
		{"truncated", sealed[:len(sealed)-4]},
		{"moved to another key id", "sluice.v1.k2." + payload},
		{"unknown key id", "sluice.v1.k9." + payload},
		{"no prefix", payload},
		{"wrong version", "sluice.v2.k1." + payload},
		{"empty payload", "sluice.v1.k1."},
		{"not base64", "sluice.v1.k1.!!!!"},
		{"too short", "sluice.v1.k1.AAAA"},
		{"empty", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := k.Open(tc.in); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Open(%q) err = %v, want ErrDecrypt", tc.in, err)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	old, _ := ParseKeyring("2023:old passphrase")
	sealedOld, _ := old.Seal([]byte("v"))
	ring, err := ParseKeyring("2024:new passphrase, 2023:old passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if ring.CurrentKeyID() != "2024" || strings.Join(ring.KeyIDs(), ",") != "2024,2023" {
		t.Fatalf("ids %v current %s", ring.KeyIDs(), ring.CurrentKeyID())
	}
	if got, err := ring.Open(sealedOld); err != nil || string(got) != "v" {
		t.Fatalf("old ciphertext with new ring: %q %v", got, err)
	}
	if !ring.NeedsReseal(sealedOld) {
		t.Fatal("old ciphertext should need resealing")
	}
	sealedNew, _ := ring.Seal([]byte("v"))
	if id, _ := SealedKeyID(sealedNew); id != "2024" || ring.NeedsReseal(sealedNew) {
		t.Fatalf("new ciphertext sealed with %q", id)
	}
	if _, err := old.Open(sealedNew); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("old ring opened a new ciphertext: %v", err)
	}
}

func TestParseKeyring(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0xab}, 32)
	hexKey := strings.Repeat("ab", 32)
	sealWith := func(t *testing.T, spec string) string {
		k, err := ParseKeyring(spec)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := k.Seal([]byte("x"))
		return s
	}
	// Equivalent spellings of one key open each other's ciphertexts.
	equiv := []string{
		"a:" + hexKey,
		"a:" + base64.StdEncoding.EncodeToString(raw),
		"a:" + base64.RawURLEncoding.EncodeToString(raw),
	}
	for _, spec := range equiv {
		k, err := ParseKeyring(equiv[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Open(sealWith(t, spec)); err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
	}
	k, err := ParseKeyring("just a passphrase")
	if err != nil || k.CurrentKeyID() != DefaultKeyID {
		t.Fatalf("passphrase without id: %v %v", k, err)
	}
	k, err = ParseKeyring("id:pass:with:colons")
	if err != nil || k.CurrentKeyID() != "id" {
		t.Fatalf("colons: %v", err)
	}
	for _, bad := range []string{"", " , ", "a:x,a:y", "a:"} {
		if _, err := ParseKeyring(bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("ParseKeyring(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rings := make([]*Keyring, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rings[i], errs[i] = loadKeyring(Config{DataDir: dir})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		if rings[i].CurrentKeyID() != rings[0].CurrentKeyID() {
			t.Fatal("concurrent starts created different keys")
		}
	}
	st, err := os.Stat(filepath.Join(dir, SecretKeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	sealed, _ := rings[0].Seal([]byte("x"))
	again, err := loadKeyring(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Open(sealed); err != nil {
		t.Fatalf("key file not reused: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".secret.key.*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
	// An explicit SecretKey wins and writes no file.
	dir2 := t.TempDir()
	if _, err := loadKeyring(Config{DataDir: dir2, SecretKey: "k:p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir2, SecretKeyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key file written despite SecretKey: %v", err)
	}
	if _, err := loadKeyring(Config{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no key and no dir: %v", err)
	}
}

// resealBackends returns a fresh-database Config maker per backend: SQLite always,
// PostgreSQL when SLUICE_TEST_POSTGRES_URL is set (each call a new schema).
func resealBackends(t *testing.T) map[string]func(t *testing.T) Config {
	out := map[string]func(t *testing.T) Config{
		DialectSQLite: func(t *testing.T) Config { return Config{DataDir: t.TempDir()} },
	}
	base := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if base == "" {
		return out
	}
	out[DialectPostgres] = func(t *testing.T) Config {
		admin, err := sql.Open("pgx", base)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Close() })
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
		return Config{DatabaseURL: u.String(), DataDir: t.TempDir()}
	}
	return out
}

const (
	resealKeyA = "a:" + "1111111111111111111111111111111111111111111111111111111111111111"
	resealKeyB = "b:" + "2222222222222222222222222222222222222222222222222222222222222222"
	resealKeyC = "c:" + "3333333333333333333333333333333333333333333333333333333333333333"
)

func openWith(t *testing.T, cfg Config, keys string) *DB {
	t.Helper()
	cfg.SecretKey = keys
	db, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// addExport creates an export (and its plugin, on first use) whose secret is sealed with
// db's current key.
func addExport(t *testing.T, db *DB, name string) BatchExport {
	t.Helper()
	ctx := context.Background()
	p, err := db.GetLatestPluginByName(ctx, "s3")
	if errors.Is(err, ErrNotFound) {
		p, err = db.CreatePlugin(ctx, Plugin{Name: "s3", Version: "1", ABIVersion: "1.0", SHA256: strings.Repeat("ab", 32), ModulePath: "/p/s3.wasm"})
	}
	if err != nil {
		t.Fatal(err)
	}
	e, err := db.CreateExport(ctx, BatchExport{Name: name, PluginID: p.ID, DestinationType: "s3", Interval: IntervalHour,
		SecretConfig: map[string]any{"aws_secret_access_key": "s3cr3t-" + name}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// sealedKeyIDs returns the key id of every stored secret, by export id.
func sealedKeyIDs(t *testing.T, db *DB) map[string]string {
	t.Helper()
	var rows []struct {
		ID           string `gorm:"column:id"`
		SealedSecret string `gorm:"column:secret_config"`
	}
	if err := db.Gorm().Table("batch_exports").Select("id", "secret_config").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rows {
		out[r.ID], _ = SealedKeyID(r.SealedSecret)
	}
	return out
}

func wantSecret(t *testing.T, db *DB, e BatchExport) {
	t.Helper()
	got, err := db.GetExportIncludingDeleted(context.Background(), e.ID)
	if err != nil {
		t.Fatalf("export %s: %v", e.Name, err)
	}
	if got.SecretConfig["aws_secret_access_key"] != "s3cr3t-"+e.Name {
		t.Fatalf("export %s: secret %v", e.Name, got.SecretConfig)
	}
}

// Seal with key A, rotate to "B,A", then B alone opens everything, deleted exports included.
func TestResealSecrets(t *testing.T) {
	t.Parallel()
	for name, newConfig := range resealBackends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			cfg := newConfig(t)
			db := openWith(t, cfg, resealKeyA)
			e1, e2, e3 := addExport(t, db, "e1"), addExport(t, db, "e2"), addExport(t, db, "e3")
			if err := db.SoftDeleteExport(ctx, e2.ID); err != nil {
				t.Fatal(err)
			}
			db.Close()

			db = openWith(t, cfg, resealKeyB+","+resealKeyA)
			res, err := db.ResealSecrets(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.KeyID != "b" || res.Stored != 3 || res.Resealed != 3 || res.FromKeys["a"] != 3 || len(res.FromKeys) != 1 {
				t.Fatalf("first rotation: %+v", res)
			}
			for id, k := range sealedKeyIDs(t, db) {
				if k != "b" {
					t.Fatalf("export %s still sealed with %q", id, k)
				}
			}
			res, err = db.ResealSecrets(ctx)
			if err != nil || res.Resealed != 0 || res.Stored != 3 || len(res.FromKeys) != 0 {
				t.Fatalf("second rotation (idempotent): %+v %v", res, err)
			}
			db.Close()

			db = openWith(t, cfg, resealKeyB)
			for _, e := range []BatchExport{e1, e2, e3} {
				wantSecret(t, db, e)
			}
			db.Close()
			db = openWith(t, cfg, resealKeyA)
			defer db.Close()
			if _, err := db.GetExport(ctx, e1.ID); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("key A alone still opens a rotated secret: %v", err)
			}
		})
	}
}

// A secret no configured key opens stops the rotation before anything is written, whether
// its key id is missing from the keyring or present with other key material.
func TestResealSecretsRefusesUnopenable(t *testing.T) {
	t.Parallel()
	for name, newConfig := range resealBackends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			cfg := newConfig(t)
			db := openWith(t, cfg, resealKeyA)
			e1 := addExport(t, db, "e1")
			db.Close()
			db = openWith(t, cfg, resealKeyC)
			e2 := addExport(t, db, "e2")
			db.Close()
			db = openWith(t, cfg, "b:other material for id b")
			e3 := addExport(t, db, "e3")
			db.Close()

			db = openWith(t, cfg, resealKeyB+","+resealKeyA)
			before := sealedKeyIDs(t, db)
			res, err := db.ResealSecrets(ctx)
			var ue *UnopenedSecretsError
			if !errors.As(err, &ue) || !errors.Is(err, ErrDecrypt) {
				t.Fatalf("err %v (%T), want *UnopenedSecretsError wrapping ErrDecrypt", err, err)
			}
			if res.Resealed != 0 || len(ue.Secrets) != 2 {
				t.Fatalf("res %+v, %d unopened, want 0 and 2: %v", res, len(ue.Secrets), err)
			}
			got := map[string]string{}
			for _, s := range ue.Secrets {
				got[s.ExportID] = s.KeyID
			}
			if got[e2.ID] != "c" || got[e3.ID] != "b" {
				t.Fatalf("unopened %v, want %s (c) and %s (b)", got, e2.ID, e3.ID)
			}
			for _, want := range []string{e2.ID, e3.ID, `"c"`, "nothing was re-sealed", "keyring: b, a"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not mention %s:\n%v", want, err)
				}
			}
			if after := sealedKeyIDs(t, db); fmt.Sprint(after) != fmt.Sprint(before) || after[e1.ID] != "a" {
				t.Fatalf("a refused rotation changed secrets: %v -> %v", before, after)
			}
			db.Close()

			// With every key that sealed them (but not the wrong "b"), e3 still refuses.
			db = openWith(t, cfg, resealKeyC+","+resealKeyA+",b:other material for id b")
			defer db.Close()
			res, err = db.ResealSecrets(ctx)
			if err != nil || res.Resealed != 2 || res.FromKeys["a"] != 1 || res.FromKeys["b"] != 1 {
				t.Fatalf("rotation to c: %+v %v", res, err)
			}
			wantSecret(t, db, e1)
			wantSecret(t, db, e2)
			wantSecret(t, db, e3)
		})
	}
}

// A write failing half-way (a trigger refusing the last export's update) rolls back the
// secrets already re-sealed in the same call.
func TestResealSecretsAllOrNothing(t *testing.T) {
	t.Parallel()
	for name, newConfig := range resealBackends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			cfg := newConfig(t)
			db := openWith(t, cfg, resealKeyA)
			var last string
			for _, n := range []string{"e1", "e2", "e3", "e4"} {
				if id := addExport(t, db, n).ID; id > last {
					last = id
				}
			}
			var ddl []string
			if db.Dialect() == DialectSQLite {
				ddl = []string{`CREATE TRIGGER fail_reseal BEFORE UPDATE OF secret_config ON batch_exports
					WHEN NEW.id = '` + last + `' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`}
			} else {
				ddl = []string{
					`CREATE FUNCTION fail_reseal() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql`,
					`CREATE TRIGGER fail_reseal BEFORE UPDATE ON batch_exports FOR EACH ROW
					WHEN (NEW.id = '` + last + `') EXECUTE FUNCTION fail_reseal()`,
				}
			}
			for _, q := range ddl {
				if err := db.Gorm().Exec(q).Error; err != nil {
					t.Fatal(err)
				}
			}
			db.Close()

			db = openWith(t, cfg, resealKeyB+","+resealKeyA)
			defer db.Close()
			res, err := db.ResealSecrets(ctx)
			if err == nil || !strings.Contains(err.Error(), "injected failure") || res.Resealed != 0 {
				t.Fatalf("res %+v err %v, want the injected failure", res, err)
			}
			for id, k := range sealedKeyIDs(t, db) {
				if k != "a" {
					t.Fatalf("export %s re-sealed with %q by a failed rotation", id, k)
				}
			}
			if err := db.Gorm().Exec(`DROP TRIGGER fail_reseal` + map[bool]string{true: "", false: " ON batch_exports"}[db.Dialect() == DialectSQLite]).Error; err != nil {
				t.Fatal(err)
			}
			if res, err := db.ResealSecrets(ctx); err != nil || res.Resealed != 4 {
				t.Fatalf("after dropping the trigger: %+v %v", res, err)
			}
		})
	}
}
