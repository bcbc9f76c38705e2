// Package storage holds Sluice's persistent state: plugins, batch exports,
// runs, backfills, logs and API tokens, with secret configuration encrypted at
// rest. It runs on an embedded SQLite file (the default) or on PostgreSQL.
//
// On SQLite the process keeps exactly one SQLite engine (modernc.org/sqlite)
// and one *sql.DB for the file: gorm runs over that connection pool, and the
// job queue is meant to share it through (*DB).SQL.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors returned by the repositories, always wrapped with %w: test with errors.Is.
var (
	// ErrNotFound: the row does not exist (or is soft-deleted), or a row it
	// references does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrConflict: a unique constraint, a status precondition or a reference
	// from another row forbids the change.
	ErrConflict = errors.New("storage: conflict")
	// ErrInvalid: the input fails validation.
	ErrInvalid = errors.New("storage: invalid input")
)

// Dialect names returned by (*DB).Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// SQLiteFileName is the database file created under Config.DataDir.
const SQLiteFileName = "sluice.db"

// Config selects the database and the secret keys.
type Config struct {
	// DatabaseURL is empty for the embedded SQLite file DataDir/sluice.db, or a
	// postgres:// (postgresql://) URL.
	DatabaseURL string
	// DataDir holds sluice.db and, when SecretKey is empty, secret.key.
	DataDir string
	// SecretKey is a keyring (see ParseKeyring); empty means DataDir/secret.key,
	// created with mode 0600 if absent.
	SecretKey string
}

// DB is the storage handle; safe for concurrent use.
type DB struct {
	sqlDB   *sql.DB
	gdb     *gorm.DB
	dialect string
	keys    *Keyring
}

// Open opens (creating if needed) the database, applies pending migrations and
// loads the secret keyring.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	keys, err := loadKeyring(cfg)
	if err != nil {
		return nil, err
	}
	db := &DB{keys: keys}
	gcfg := &gorm.Config{
		Logger:                                   logger.Discard,
		NowFunc:                                  now,
		DisableForeignKeyConstraintWhenMigrating: true,
		SkipDefaultTransaction:                   true,
	}
	switch {
	case cfg.DatabaseURL == "":
		if cfg.DataDir == "" {
			return nil, fmt.Errorf("%w: DataDir is required for the embedded SQLite database", ErrInvalid)
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("storage: create data dir: %w", err)
		}
		sqlDB, err := openSQLite(ctx, filepath.Join(cfg.DataDir, SQLiteFileName))
		if err != nil {
			return nil, err
		}
		gdb, err := gorm.Open(&sqliteDialector{conn: sqlDB}, gcfg)
		if err != nil {
			sqlDB.Close()
			return nil, fmt.Errorf("storage: gorm over sqlite: %w", err)
		}
		db.sqlDB, db.gdb, db.dialect = sqlDB, gdb, DialectSQLite
	case strings.HasPrefix(cfg.DatabaseURL, "postgres://") || strings.HasPrefix(cfg.DatabaseURL, "postgresql://"):
		gdb, err := gorm.Open(postgres.New(postgres.Config{DSN: cfg.DatabaseURL}), gcfg)
		if err != nil {
			return nil, fmt.Errorf("storage: open postgres: %w", err)
		}
		sqlDB, err := gdb.DB()
		if err != nil {
			return nil, fmt.Errorf("storage: postgres pool: %w", err)
		}
		sqlDB.SetMaxOpenConns(20)
		sqlDB.SetMaxIdleConns(5)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		if err := sqlDB.PingContext(ctx); err != nil {
			sqlDB.Close()
			return nil, fmt.Errorf("storage: ping postgres: %w", err)
		}
		db.sqlDB, db.gdb, db.dialect = sqlDB, gdb, DialectPostgres
	default:
		return nil, fmt.Errorf("%w: unsupported DatabaseURL scheme (want empty or postgres://)", ErrInvalid)
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// openSQLite opens the single *sql.DB of the process for the file: WAL,
// busy_timeout, foreign keys, immediate write transactions, and times written
// in SQLite's own text format (always UTC here, so text order is time order).
func openSQLite(ctx context.Context, path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	q.Set("_time_format", "sqlite")
	dsn := "file:" + path + "?" + q.Encode()
	sqlDB, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("storage: open sqlite: %w", err)
	}
	sqlDB.SetMaxOpenConns(16)
	sqlDB.SetMaxIdleConns(4)
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("storage: open sqlite %s: %w", path, err)
	}
	var mode string
	if err := sqlDB.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("storage: sqlite journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		sqlDB.Close()
		return nil, fmt.Errorf("storage: sqlite journal mode is %q, want wal", mode)
	}
	return sqlDB, nil
}

// SQL returns the one *sql.DB of the database (share it, do not open another).
func (db *DB) SQL() *sql.DB { return db.sqlDB }

// Gorm returns the gorm handle over SQL().
func (db *DB) Gorm() *gorm.DB { return db.gdb }

// Dialect is "sqlite" or "postgres".
func (db *DB) Dialect() string { return db.dialect }

// Keyring returns the secret keyring used for SecretConfig.
func (db *DB) Keyring() *Keyring { return db.keys }

// Close closes the connection pool.
func (db *DB) Close() error {
	if db == nil || db.sqlDB == nil {
		return nil
	}
	return db.sqlDB.Close()
}

// now is the clock of the package: UTC, microsecond precision (PostgreSQL's).
func now() time.Time { return normTime(time.Now()) }

// normTime converts to UTC and truncates to microseconds so that both dialects
// store and compare the same instant the same way.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

func normTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := normTime(*t)
	return &v
}

// mapErr translates driver errors into ErrNotFound / ErrConflict.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) {
		return err
	}
	if errors.Is(err, gorm.ErrRecordNotFound) || errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%s: %w: %v", what, ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%s: referenced row: %w: %v", what, ErrNotFound, err)
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return fmt.Errorf("%s: %w: %v", what, ErrConflict, err)
		case "23503":
			return fmt.Errorf("%s: referenced row: %w: %v", what, ErrNotFound, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// inTx runs fn in a transaction (immediate on SQLite).
func (db *DB) inTx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return db.gdb.WithContext(ctx).Transaction(fn)
}
