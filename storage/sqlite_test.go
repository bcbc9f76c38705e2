package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSQLiteSetup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nested", "data")
	db, err := Open(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := os.Stat(filepath.Join(dir, SQLiteFileName)); err != nil {
		t.Fatal(err)
	}
	if db.Dialect() != DialectSQLite {
		t.Fatalf("dialect %q", db.Dialect())
	}
	// One engine, one pool: gorm runs on the very *sql.DB that SQL() hands out.
	gsql, err := db.Gorm().DB()
	if err != nil || gsql != db.SQL() {
		t.Fatalf("gorm pool %p, SQL() %p (%v)", gsql, db.SQL(), err)
	}
	pragmas := []struct{ name, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
	}
	for _, p := range pragmas {
		var got string
		if err := db.SQL().QueryRowContext(ctx, "PRAGMA "+p.name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != p.want {
			t.Errorf("PRAGMA %s = %q, want %q", p.name, got, p.want)
		}
	}
	var version string
	if err := db.SQL().QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if compareVersion(version, "3.45.0") < 0 {
		t.Errorf("SQLite %s is older than River's minimum 3.45", version)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := Open(ctx, Config{SecretKey: "k:x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("sqlite without DataDir: %v", err)
	}
	if _, err := Open(ctx, Config{DatabaseURL: "mysql://x", SecretKey: "k:x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("mysql URL: %v", err)
	}
}

// compareVersion compares dotted decimal versions.
func compareVersion(a, b string) int {
	var x, y [3]int
	for i, p := range [2]*[3]int{&x, &y} {
		s := []string{a, b}[i]
		n := 0
		for _, c := range s {
			if c == '.' {
				n++
				if n == 3 {
					break
				}
				continue
			}
			p[n] = p[n]*10 + int(c-'0')
		}
	}
	for i := range 3 {
		if x[i] != y[i] {
			if x[i] < y[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}
