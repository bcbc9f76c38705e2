package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// CreatePlugin stores p. ID and CreatedAt are set when empty. A second plugin
// with the same (Name, Version) is ErrConflict.
func (db *DB) CreatePlugin(ctx context.Context, p Plugin) (Plugin, error) {
	if strings.TrimSpace(p.Name) == "" || strings.TrimSpace(p.Version) == "" {
		return Plugin{}, fmt.Errorf("%w: plugin name and version are required", ErrInvalid)
	}
	var err error
	if p.Manifest, err = jsonText("manifest", p.Manifest, "{}"); err != nil {
		return Plugin{}, err
	}
	if p.ID == "" {
		p.ID = uuid.NewString()
	}
	if p.Capabilities == nil {
		p.Capabilities = StringList{}
	}
	p.CreatedAt = normTime(p.CreatedAt)
	if p.CreatedAt.IsZero() {
		p.CreatedAt = now()
	}
	if err := db.gdb.WithContext(ctx).Create(&p).Error; err != nil {
		return Plugin{}, mapErr(err, "create plugin "+p.Name+"@"+p.Version)
	}
	return p, nil
}

// GetPlugin returns the plugin with the id.
func (db *DB) GetPlugin(ctx context.Context, id string) (Plugin, error) {
	var p Plugin
	err := db.gdb.WithContext(ctx).Where("id = ?", id).Take(&p).Error
	return p, mapErr(err, "plugin "+id)
}

// GetLatestPluginByName returns the most recently installed plugin of the name.
func (db *DB) GetLatestPluginByName(ctx context.Context, name string) (Plugin, error) {
	var p Plugin
	err := db.gdb.WithContext(ctx).Where("name = ?", name).
		Order("created_at DESC").Order("id DESC").Take(&p).Error
	return p, mapErr(err, "plugin "+name)
}

// FindPluginVersion returns the installed plugin of the name with this version and/or
// module sha256 (either may be empty, not both): ErrNotFound when none matches both.
func (db *DB) FindPluginVersion(ctx context.Context, name, version, sha256 string) (Plugin, error) {
	if version == "" && sha256 == "" {
		return Plugin{}, fmt.Errorf("%w: a plugin version or sha256 is required", ErrInvalid)
	}
	q := db.gdb.WithContext(ctx).Where("name = ?", name)
	if version != "" {
		q = q.Where("version = ?", version)
	}
	if sha256 != "" {
		q = q.Where("sha256 = ?", sha256)
	}
	var p Plugin
	err := q.Order("created_at DESC").Order("id DESC").Take(&p).Error
	return p, mapErr(err, "plugin "+name+" "+version+" "+sha256)
}

// ListPlugins returns every plugin, by name then newest first.
func (db *DB) ListPlugins(ctx context.Context) ([]Plugin, error) {
	var out []Plugin
	err := db.gdb.WithContext(ctx).Order("name").Order("created_at DESC").Order("id").Find(&out).Error
	return out, mapErr(err, "list plugins")
}

// PluginPage asks for one page of ListPluginsPage. The API lists one item per
// plugin name, so plugins page by name, which is the whole sort key of the page.
type PluginPage struct {
	AfterName string // "": the first page
	Limit     int    // at most this many names; 0 means DefaultPageLimit
}

// ListPluginsPage returns every version of the first p.Limit plugin names after
// p.AfterName, in ListPlugins' order (by name, then newest first). One statement,
// so a page never holds part of a name's versions.
func (db *DB) ListPluginsPage(ctx context.Context, p PluginPage) ([]Plugin, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultPageLimit
	}
	g := db.gdb.WithContext(ctx)
	names := g.Model(&Plugin{}).Distinct("name").Where("name > ?", p.AfterName).Order("name").Limit(limit)
	var out []Plugin
	err := g.Where("name IN (?)", names).Order("name").Order("created_at DESC").Order("id").Find(&out).Error
	return out, mapErr(err, "list plugins")
}

// DeletePlugin removes the plugin; ErrConflict while a live (not soft-deleted)
// export uses it.
func (db *DB) DeletePlugin(ctx context.Context, id string) error {
	return db.inTx(ctx, func(tx *gorm.DB) error {
		// Lock the plugin row so that no export can start using it meanwhile
		// (CreateExport takes a share lock; SQLite write transactions are serial).
		var p Plugin
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", id).Take(&p).Error; err != nil {
			return mapErr(err, "delete plugin "+id)
		}
		var n int64
		if err := tx.Model(&BatchExport{}).Where("plugin_id = ? AND deleted_at IS NULL", id).Count(&n).Error; err != nil {
			return mapErr(err, "delete plugin "+id)
		}
		if n > 0 {
			return fmt.Errorf("delete plugin %s: used by %d export(s): %w", id, n, ErrConflict)
		}
		res := tx.Where("id = ?", id).Delete(&Plugin{})
		if res.Error != nil {
			return mapErr(res.Error, "delete plugin "+id)
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("delete plugin %s: %w", id, ErrNotFound)
		}
		// The module goes with its last plugin row (another version or grant may share it).
		err := tx.Where("sha256 = ? AND NOT EXISTS (SELECT 1 FROM plugins WHERE sha256 = ?)", p.SHA256, p.SHA256).
			Delete(&PluginModule{}).Error
		return mapErr(err, "delete module of plugin "+id)
	})
}

// PluginModule is the bytes of an installed module, in a table of its own keyed by
// sha256: every host sharing the database fetches from it the modules it does not have
// on disk, and lists of plugins never read it.
type PluginModule struct {
	SHA256    string    `gorm:"column:sha256;primaryKey"`
	Module    []byte    `gorm:"column:module"`
	Size      int64     `gorm:"column:size"`
	CreatedAt time.Time `gorm:"column:created_at"`
}

// TableName implements gorm's tabler.
func (PluginModule) TableName() string { return "plugin_modules" }

// PutPluginModule stores a module under its sha256, which the caller computed from these
// bytes. Storing the same module again is a no-op.
func (db *DB) PutPluginModule(ctx context.Context, sha256 string, module []byte) error {
	if len(sha256) != 64 || len(module) == 0 {
		return fmt.Errorf("%w: a plugin module needs its hex sha256 and its bytes", ErrInvalid)
	}
	m := PluginModule{SHA256: sha256, Module: module, Size: int64(len(module)), CreatedAt: now()}
	err := db.gdb.WithContext(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "sha256"}}, DoNothing: true}).Create(&m).Error
	return mapErr(err, "store plugin module "+sha256)
}

// GetPluginModule returns the stored bytes of the module with this sha256 (ErrNotFound
// when none is stored). The caller checks the hash before it runs them.
func (db *DB) GetPluginModule(ctx context.Context, sha256 string) ([]byte, error) {
	var m PluginModule
	err := db.gdb.WithContext(ctx).Where("sha256 = ?", sha256).Take(&m).Error
	return m.Module, mapErr(err, "plugin module "+sha256)
}

// PluginsWithoutModule lists the plugins whose module is not stored in the database:
// those installed before modules were (storage migration 3), which the host that has
// their file stores at start.
func (db *DB) PluginsWithoutModule(ctx context.Context) ([]Plugin, error) {
	var out []Plugin
	err := db.gdb.WithContext(ctx).Where("NOT EXISTS (SELECT 1 FROM plugin_modules m WHERE m.sha256 = plugins.sha256)").
		Order("name").Order("created_at DESC").Find(&out).Error
	return out, mapErr(err, "plugins without a stored module")
}
