package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Connection is a named credential set that exports share (docs/api.md, "Connections"):
// the fields of one plugin's config that a connection may hold, typed by the plugin's name.
//
// SecretConfig is plaintext in memory only: like BatchExport.SecretConfig, the repository
// seals it on write and opens it on read.
type Connection struct {
	ID           string         `gorm:"column:id;primaryKey" json:"id"`
	Name         string         `gorm:"column:name" json:"name"`
	PluginName   string         `gorm:"column:plugin_name" json:"plugin_name"`
	Config       string         `gorm:"column:config" json:"config"` // JSON text, non-secret fields
	SecretConfig map[string]any `gorm:"-" json:"-"`                  // plaintext, never stored as is
	SealedSecret string         `gorm:"column:secret_config" json:"-"`
	CreatedAt    time.Time      `gorm:"column:created_at" json:"created_at"`
	UpdatedAt    time.Time      `gorm:"column:updated_at" json:"updated_at"`
}

// TableName implements gorm's tabler.
func (Connection) TableName() string { return connectionsTable }

const connectionsTable = "connections"

// AfterFind normalises times to UTC.
func (c *Connection) AfterFind(*gorm.DB) error {
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return nil
}

// ExportRef names an export (the exports using a connection).
type ExportRef struct {
	ID   string `gorm:"column:id" json:"id"`
	Name string `gorm:"column:name" json:"name"`
}

// ConnectionInUseError is DeleteConnection's refusal: live exports use the connection.
// It wraps ErrConflict.
type ConnectionInUseError struct {
	ConnectionID string
	Exports      []ExportRef // oldest first
}

func (e *ConnectionInUseError) Error() string {
	names := make([]string, len(e.Exports))
	for i, x := range e.Exports {
		names[i] = fmt.Sprintf("%s (%q)", x.ID, x.Name)
	}
	return fmt.Sprintf("delete connection %s: used by %d export(s): %s: %v", e.ConnectionID, len(e.Exports), strings.Join(names, ", "), ErrConflict)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ConnectionInUseError) Unwrap() error { return ErrConflict }

// maxConnectionNameLen bounds a connection's name.
const maxConnectionNameLen = 200

// prepareConnection validates c and seals SecretConfig into SealedSecret.
func (db *DB) prepareConnection(c *Connection) error {
	c.Name = strings.TrimSpace(c.Name)
	if c.Name == "" || len(c.Name) > maxConnectionNameLen {
		return fmt.Errorf("%w: connection name must be 1 to %d characters", ErrInvalid, maxConnectionNameLen)
	}
	if c.PluginName == "" {
		return fmt.Errorf("%w: connection plugin name is required", ErrInvalid)
	}
	var err error
	if c.Config, err = jsonText("config", c.Config, "{}"); err != nil {
		return err
	}
	c.SealedSecret, err = db.sealJSON(c.SecretConfig)
	return err
}

// sealJSON seals the JSON of a secret map (nil is sealed as {}).
func (db *DB) sealJSON(secret map[string]any) (string, error) {
	if secret == nil {
		secret = map[string]any{}
	}
	pt, err := json.Marshal(secret)
	if err != nil {
		return "", fmt.Errorf("%w: secret config: %v", ErrInvalid, err)
	}
	return db.keys.Seal(pt)
}

// openJSON opens a string sealed by sealJSON ("" is an empty map).
func (db *DB) openJSON(sealed, what string) (map[string]any, error) {
	out := map[string]any{}
	if sealed == "" {
		return out, nil
	}
	pt, err := db.keys.Open(sealed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Unmarshal(pt, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func (db *DB) openConnection(c *Connection) error {
	var err error
	c.SecretConfig, err = db.openJSON(c.SealedSecret, "connection "+c.ID+" secret config")
	return err
}

// CreateConnection stores c (ID, CreatedAt, UpdatedAt set by the repository), sealing
// c.SecretConfig.
func (db *DB) CreateConnection(ctx context.Context, c Connection) (Connection, error) {
	if err := db.prepareConnection(&c); err != nil {
		return Connection{}, err
	}
	if c.ID == "" {
		c.ID = uuid.NewString()
	}
	c.CreatedAt, c.UpdatedAt = now(), now()
	if err := db.gdb.WithContext(ctx).Create(&c).Error; err != nil {
		return Connection{}, mapErr(err, "create connection "+c.Name)
	}
	if c.SecretConfig == nil {
		c.SecretConfig = map[string]any{}
	}
	return c, nil
}

// GetConnection returns a connection with its SecretConfig decrypted.
func (db *DB) GetConnection(ctx context.Context, id string) (Connection, error) {
	return db.getConnection(db.gdb.WithContext(ctx), id)
}

func (db *DB) getConnection(q *gorm.DB, id string) (Connection, error) {
	var c Connection
	if err := q.Where("id = ?", id).Take(&c).Error; err != nil {
		return Connection{}, mapErr(err, "connection "+id)
	}
	return c, db.openConnection(&c)
}

// ConnectionFilter narrows ListConnectionsPage.
type ConnectionFilter struct {
	PluginName string // only connections of this plugin
}

// ListConnectionsPage returns one page of connections, oldest first by (created_at, id),
// with SecretConfig decrypted.
func (db *DB) ListConnectionsPage(ctx context.Context, f ConnectionFilter, p Page) ([]Connection, error) {
	q := db.gdb.WithContext(ctx)
	if f.PluginName != "" {
		q = q.Where("plugin_name = ?", f.PluginName)
	}
	var out []Connection
	if err := p.apply(q, false).Find(&out).Error; err != nil {
		return nil, mapErr(err, "list connections")
	}
	for i := range out {
		if err := db.openConnection(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// UpdateConnection writes c's name, config and secrets (a nil SecretConfig keeps the
// stored secrets; a non-nil one, even empty, replaces them). The plugin name cannot
// change. Exports using the connection read it when their next run starts.
func (db *DB) UpdateConnection(ctx context.Context, c Connection) (Connection, error) {
	var out Connection
	err := db.inTx(ctx, func(tx *gorm.DB) error {
		cur, err := db.getConnection(tx.Clauses(clause.Locking{Strength: "UPDATE"}), c.ID)
		if err != nil {
			return err
		}
		if c.PluginName != cur.PluginName {
			return fmt.Errorf("%w: a connection's plugin cannot change (%s to %s)", ErrInvalid, cur.PluginName, c.PluginName)
		}
		if c.SecretConfig == nil {
			c.SecretConfig = cur.SecretConfig
		}
		if err := db.prepareConnection(&c); err != nil {
			return err
		}
		c.CreatedAt, c.UpdatedAt = cur.CreatedAt, now()
		res := tx.Model(&Connection{}).Where("id = ?", c.ID).
			Select("name", "config", "secret_config", "updated_at").Updates(&c)
		if res.Error != nil {
			return mapErr(res.Error, "update connection "+c.ID)
		}
		out, err = db.getConnection(tx, c.ID)
		return err
	})
	return out, err
}

// ExportsUsingConnection lists the live exports whose connection is id, oldest first.
func (db *DB) ExportsUsingConnection(ctx context.Context, id string) ([]ExportRef, error) {
	return exportsUsing(db.gdb.WithContext(ctx), id)
}

func exportsUsing(q *gorm.DB, id string) ([]ExportRef, error) {
	var out []ExportRef
	err := q.Model(&BatchExport{}).Select("id", "name").Where("connection_id = ? AND deleted_at IS NULL", id).
		Order("created_at").Order("id").Scan(&out).Error
	return out, mapErr(err, "exports using connection "+id)
}

// DeleteConnection deletes a connection no live export uses: *ConnectionInUseError
// (ErrConflict) lists those that do; ErrNotFound when there is no such connection.
func (db *DB) DeleteConnection(ctx context.Context, id string) error {
	return db.inTx(ctx, func(tx *gorm.DB) error {
		// Lock the row so that no export starts using it meanwhile (CreateExport and
		// UpdateExport take a share lock; SQLite write transactions are serial).
		var c Connection
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Select("id").Where("id = ?", id).Take(&c).Error; err != nil {
			return mapErr(err, "delete connection "+id)
		}
		users, err := exportsUsing(tx, id)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return &ConnectionInUseError{ConnectionID: id, Exports: users}
		}
		return mapErr(tx.Where("id = ?", id).Delete(&Connection{}).Error, "delete connection "+id)
	})
}

// lockConnection checks that the connection exists, holding a share lock on PostgreSQL
// until the transaction ends (see DeleteConnection).
func lockConnection(tx *gorm.DB, id string) error {
	var c Connection
	err := tx.Clauses(clause.Locking{Strength: "SHARE"}).Select("id").Where("id = ?", id).Take(&c).Error
	return mapErr(err, "connection "+id)
}
