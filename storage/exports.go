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

// exportColumns are written by CreateExport and UpdateExport.
var exportColumns = []string{
	"name", "plugin_id", "plugin_version", "plugin_sha256", "destination_type", "interval", "timezone", "interval_offset",
	"start_at", "end_at", "paused", "last_paused_at", "model", "filters", "config",
	"secret_config", "updated_at",
	"alert_webhook_secret", "alert_format", "alert_period_seconds",
}

// prepareExport validates e, fills defaults and seals SecretConfig into SealedSecret.
func (db *DB) prepareExport(e *BatchExport) error {
	if strings.TrimSpace(e.Name) == "" {
		return fmt.Errorf("%w: export name is required", ErrInvalid)
	}
	if e.PluginID == "" {
		return fmt.Errorf("%w: export plugin id is required", ErrInvalid)
	}
	if !ValidInterval(e.Interval) {
		return fmt.Errorf("%w: unknown interval %q", ErrInvalid, e.Interval)
	}
	if e.Timezone == "" {
		e.Timezone = "UTC"
	}
	if _, err := time.LoadLocation(e.Timezone); err != nil {
		return fmt.Errorf("%w: unknown timezone %q", ErrInvalid, e.Timezone)
	}
	if e.Model == "" {
		e.Model = "events"
	}
	e.StartAt, e.EndAt, e.LastPausedAt = normTimePtr(e.StartAt), normTimePtr(e.EndAt), normTimePtr(e.LastPausedAt)
	if e.StartAt != nil && e.EndAt != nil && !e.StartAt.Before(*e.EndAt) {
		return fmt.Errorf("%w: start_at must be before end_at", ErrInvalid)
	}
	var err error
	if e.Filters, err = jsonText("filters", e.Filters, "{}"); err != nil {
		return err
	}
	if e.Config, err = jsonText("config", e.Config, "{}"); err != nil {
		return err
	}
	secret := e.SecretConfig
	if secret == nil {
		secret = map[string]any{}
	}
	pt, err := json.Marshal(secret)
	if err != nil {
		return fmt.Errorf("%w: secret config: %v", ErrInvalid, err)
	}
	if e.SealedSecret, err = db.keys.Seal(pt); err != nil {
		return err
	}
	return db.prepareAlerts(e)
}

// openExport decrypts SealedSecret into SecretConfig.
func (db *DB) openExport(e *BatchExport) error {
	if err := db.openAlerts(e); err != nil {
		return err
	}
	e.SecretConfig = map[string]any{}
	if e.SealedSecret == "" {
		return nil
	}
	pt, err := db.keys.Open(e.SealedSecret)
	if err != nil {
		return fmt.Errorf("export %s secret config: %w", e.ID, err)
	}
	if err := json.Unmarshal(pt, &e.SecretConfig); err != nil {
		return fmt.Errorf("export %s secret config: %w", e.ID, err)
	}
	return nil
}

// pinPlugin checks that the export's plugin exists, holding a share lock on PostgreSQL
// until the transaction ends (see DeletePlugin), and copies its version and module hash
// into the export's pin.
func pinPlugin(tx *gorm.DB, e *BatchExport) error {
	var p Plugin
	err := tx.Clauses(clause.Locking{Strength: "SHARE"}).Select("id", "version", "sha256").Where("id = ?", e.PluginID).Take(&p).Error
	if err != nil {
		return mapErr(err, "plugin "+e.PluginID)
	}
	e.PluginVersion, e.PluginSHA256 = p.Version, p.SHA256
	return nil
}

// CreateExport stores e (ID, CreatedAt, UpdatedAt set by the repository),
// sealing e.SecretConfig. The plugin must exist (ErrNotFound otherwise).
func (db *DB) CreateExport(ctx context.Context, e BatchExport) (BatchExport, error) {
	if err := db.prepareExport(&e); err != nil {
		return BatchExport{}, err
	}
	if e.ID == "" {
		e.ID = uuid.NewString()
	}
	e.CreatedAt, e.UpdatedAt, e.DeletedAt = now(), now(), nil
	if e.Paused && e.LastPausedAt == nil {
		e.LastPausedAt = &e.CreatedAt
	}
	err := db.inTx(ctx, func(tx *gorm.DB) error {
		if err := pinPlugin(tx, &e); err != nil {
			return err
		}
		return mapErr(tx.Create(&e).Error, "create export "+e.Name)
	})
	if err != nil {
		return BatchExport{}, err
	}
	if e.SecretConfig == nil {
		e.SecretConfig = map[string]any{}
	}
	return e, nil
}

// GetExport returns a live export with its SecretConfig decrypted; a missing or
// soft-deleted export is ErrNotFound.
func (db *DB) GetExport(ctx context.Context, id string) (BatchExport, error) {
	return db.getExport(ctx, db.gdb.WithContext(ctx), id, false)
}

// GetExportIncludingDeleted is GetExport that also returns soft-deleted exports
// (for runs still in flight when their export was deleted).
func (db *DB) GetExportIncludingDeleted(ctx context.Context, id string) (BatchExport, error) {
	return db.getExport(ctx, db.gdb.WithContext(ctx), id, true)
}

func (db *DB) getExport(_ context.Context, q *gorm.DB, id string, deleted bool) (BatchExport, error) {
	var e BatchExport
	q = q.Where("id = ?", id)
	if !deleted {
		q = q.Where("deleted_at IS NULL")
	}
	if err := q.Take(&e).Error; err != nil {
		return BatchExport{}, mapErr(err, "export "+id)
	}
	return e, db.openExport(&e)
}

// ExportFilter narrows ListExports and ListExportsPage.
type ExportFilter struct {
	PluginID        string // only exports of this plugin
	PluginVersion   string // only exports pinned to this plugin version
	PluginSHA256    string // only exports pinned to this module
	DestinationType string // only exports to this plugin name
	Paused          *bool  // only paused (true) or unpaused (false) exports
	IncludeDeleted  bool
}

func (f ExportFilter) apply(q *gorm.DB) *gorm.DB {
	if !f.IncludeDeleted {
		q = q.Where("deleted_at IS NULL")
	}
	if f.PluginID != "" {
		q = q.Where("plugin_id = ?", f.PluginID)
	}
	if f.DestinationType != "" {
		q = q.Where("destination_type = ?", f.DestinationType)
	}
	if f.PluginVersion != "" {
		q = q.Where("plugin_version = ?", f.PluginVersion)
	}
	if f.PluginSHA256 != "" {
		q = q.Where("plugin_sha256 = ?", f.PluginSHA256)
	}
	if f.Paused != nil {
		q = q.Where("paused = ?", *f.Paused)
	}
	return q
}

// ListExports returns every export (live ones unless IncludeDeleted), oldest
// first, with SecretConfig decrypted. It is not paged: the host's control paths
// (scheduling every export) use it; the API pages with ListExportsPage.
func (db *DB) ListExports(ctx context.Context, f ExportFilter) ([]BatchExport, error) {
	q := f.apply(db.gdb.WithContext(ctx)).Order("created_at").Order("id")
	return db.findExports(q)
}

// ListExportsPage returns one page of ListExports: oldest first by (created_at,
// id), the rows after p.After, at most p.Limit of them.
func (db *DB) ListExportsPage(ctx context.Context, f ExportFilter, p Page) ([]BatchExport, error) {
	return db.findExports(p.apply(f.apply(db.gdb.WithContext(ctx)), false))
}

// CountExports counts the exports ListExports would return.
func (db *DB) CountExports(ctx context.Context, f ExportFilter) (int64, error) {
	var n int64
	err := f.apply(db.gdb.WithContext(ctx).Model(&BatchExport{})).Count(&n).Error
	return n, mapErr(err, "count exports")
}

// CountExportsByPlugin counts the live exports pinned to each of the plugin rows, in one
// query: plugin id -> count (ids no live export pins are absent).
func (db *DB) CountExportsByPlugin(ctx context.Context, pluginIDs []string) (map[string]int64, error) {
	var rows []struct {
		PluginID string `gorm:"column:plugin_id"`
		N        int64  `gorm:"column:n"`
	}
	out := map[string]int64{}
	if len(pluginIDs) == 0 {
		return out, nil
	}
	err := db.gdb.WithContext(ctx).Model(&BatchExport{}).Select("plugin_id, COUNT(*) AS n").
		Where("deleted_at IS NULL AND plugin_id IN ?", pluginIDs).Group("plugin_id").Scan(&rows).Error
	if err != nil {
		return nil, mapErr(err, "count exports by plugin")
	}
	for _, r := range rows {
		out[r.PluginID] = r.N
	}
	return out, nil
}

func (db *DB) findExports(q *gorm.DB) ([]BatchExport, error) {
	var out []BatchExport
	if err := q.Find(&out).Error; err != nil {
		return nil, mapErr(err, "list exports")
	}
	for i := range out {
		if err := db.openExport(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ExportVersions returns the updated_at of every live export, by id: one narrow read
// that tells a host which exports changed through another host since it last looked
// (every write of an export sets updated_at; a deleted export is absent).
func (db *DB) ExportVersions(ctx context.Context) (map[string]time.Time, error) {
	var rows []struct {
		ID        string    `gorm:"column:id"`
		UpdatedAt time.Time `gorm:"column:updated_at"`
	}
	if err := db.gdb.WithContext(ctx).Model(&BatchExport{}).Where("deleted_at IS NULL").Select("id", "updated_at").Scan(&rows).Error; err != nil {
		return nil, mapErr(err, "export versions")
	}
	out := make(map[string]time.Time, len(rows))
	for _, r := range rows {
		out[r.ID] = r.UpdatedAt.UTC()
	}
	return out, nil
}

// UpdateExport writes every mutable field of e (all but ID, CreatedAt,
// DeletedAt) and returns the stored export. A nil e.SecretConfig keeps the
// stored secrets; a non-nil one (even empty) replaces them. Pausing through
// Update sets LastPausedAt like SetExportPaused.
func (db *DB) UpdateExport(ctx context.Context, e BatchExport) (BatchExport, error) {
	var out BatchExport
	err := db.inTx(ctx, func(tx *gorm.DB) error {
		cur, err := db.getExport(ctx, tx.Clauses(clause.Locking{Strength: "UPDATE"}), e.ID, false)
		if err != nil {
			return err
		}
		if e.SecretConfig == nil {
			e.SecretConfig = cur.SecretConfig
		}
		if err := db.prepareExport(&e); err != nil {
			return err
		}
		if e.PluginID != cur.PluginID || cur.PluginSHA256 == "" {
			if err := pinPlugin(tx, &e); err != nil {
				return err
			}
		} else {
			e.PluginVersion, e.PluginSHA256 = cur.PluginVersion, cur.PluginSHA256
		}
		if e.Paused && !cur.Paused && e.LastPausedAt == nil {
			t := now()
			e.LastPausedAt = &t
		}
		e.CreatedAt, e.DeletedAt, e.UpdatedAt = cur.CreatedAt, nil, now()
		res := tx.Model(&BatchExport{}).Where("id = ? AND deleted_at IS NULL", e.ID).Select(exportColumns).Updates(&e)
		if res.Error != nil {
			return mapErr(res.Error, "update export "+e.ID)
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("update export %s: %w", e.ID, ErrNotFound)
		}
		out, err = db.getExport(ctx, tx, e.ID, false)
		return err
	})
	return out, err
}

// SoftDeleteExport marks the export deleted; ErrNotFound if missing or already deleted.
func (db *DB) SoftDeleteExport(ctx context.Context, id string) error {
	t := now()
	res := db.gdb.WithContext(ctx).Model(&BatchExport{}).Where("id = ? AND deleted_at IS NULL", id).
		Updates(map[string]any{"deleted_at": t, "updated_at": t})
	if res.Error != nil {
		return mapErr(res.Error, "delete export "+id)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("delete export %s: %w", id, ErrNotFound)
	}
	return nil
}

// SetExportPaused pauses or unpauses a live export. Pausing an unpaused export
// records LastPausedAt; setting the current state again changes nothing.
func (db *DB) SetExportPaused(ctx context.Context, id string, paused bool) (BatchExport, error) {
	var out BatchExport
	err := db.inTx(ctx, func(tx *gorm.DB) error {
		cur, err := db.getExport(ctx, tx.Clauses(clause.Locking{Strength: "UPDATE"}), id, false)
		if err != nil {
			return err
		}
		if cur.Paused == paused {
			out = cur
			return nil
		}
		t := now()
		set := map[string]any{"paused": paused, "updated_at": t}
		if paused {
			set["last_paused_at"] = t
		}
		if err := tx.Model(&BatchExport{}).Where("id = ?", id).Updates(set).Error; err != nil {
			return mapErr(err, "pause export "+id)
		}
		out, err = db.getExport(ctx, tx, id, false)
		return err
	})
	return out, err
}
