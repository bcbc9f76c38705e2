package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/storage"
)

const secretsUsage = `usage:
  sluice secrets rotate [--data-dir D] [--database-url URL] [--secret-key KEYRING]
      re-seal every stored destination secret with the keyring's first (newest) key`

// secrets dispatches `sluice secrets ...`.
func secrets(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "rotate" {
		return secretsRotate(ctx, args[1:], os.Stdout)
	}
	fmt.Fprintln(os.Stderr, secretsUsage)
	return flag.ErrHelp
}

// secretsRotate re-seals every stored secret (exports', connections') sealed with an older key, in one transaction,
// with the same data dir, database and keyring settings as `sluice serve`.
func secretsRotate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("secrets rotate", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), secretsUsage)
		fs.PrintDefaults()
	}
	dataDir := fs.String("data-dir", env("SLUICE_DATA_DIR", "data"), "data directory (SLUICE_DATA_DIR)")
	dbURL := fs.String("database-url", env("SLUICE_DATABASE_URL", ""), "empty: SQLite in the data dir; postgres://... (SLUICE_DATABASE_URL)")
	secretKey := fs.String("secret-key", env("SLUICE_SECRET_KEY", ""), "keyring, new key first then the old ones (SLUICE_SECRET_KEY); empty: DATA_DIR/"+storage.SecretKeyFileName)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("secrets rotate: unexpected argument %q", fs.Arg(0))
	}
	// storage.Open creates what is missing (an empty SQLite database, a fresh key file):
	// right for serve, wrong here, where a mistyped data dir would "rotate" nothing.
	if strings.TrimSpace(*secretKey) == "" {
		if err := mustExist(filepath.Join(*dataDir, storage.SecretKeyFileName), "key file (set --secret-key or SLUICE_SECRET_KEY, or --data-dir)"); err != nil {
			return err
		}
	}
	if *dbURL == "" {
		if err := mustExist(filepath.Join(*dataDir, storage.SQLiteFileName), "database (set --data-dir or --database-url)"); err != nil {
			return err
		}
	}
	db, err := storage.Open(ctx, storage.Config{DatabaseURL: *dbURL, DataDir: *dataDir, SecretKey: *secretKey})
	if err != nil {
		return err
	}
	defer db.Close()
	res, err := db.ResealSecrets(ctx)
	if err != nil {
		return fmt.Errorf("secrets rotate: %w", err)
	}
	if res.Resealed == 0 {
		fmt.Fprintf(stdout, "re-sealed 0 stored secrets: all %d are sealed with key %q\n", res.Stored, res.KeyID)
	} else {
		var from []string
		for id, n := range res.FromKeys {
			from = append(from, fmt.Sprintf("%q: %d", id, n))
		}
		sort.Strings(from)
		fmt.Fprintf(stdout, "re-sealed %d of %d stored secrets with key %q (from %s)\n", res.Resealed, res.Stored, res.KeyID, strings.Join(from, ", "))
	}
	if ids := db.Keyring().KeyIDs(); len(ids) > 1 {
		fmt.Fprintf(stdout, "no stored secret needs key(s) %s any more: drop them from the keyring once every host runs with %q first\n",
			strings.Join(ids[1:], ", "), res.KeyID)
	}
	return nil
}

func mustExist(path, what string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("secrets rotate: no %s at %s", what, path)
	} else if err != nil {
		return err
	}
	return nil
}
