package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// ExportAlerts is an export's failure-alert settings (docs/alerts.md), embedded in
// BatchExport.
//
// AlertWebhookURL is plaintext in memory only: like SecretConfig, the repository seals it
// into SealedAlertWebhook on write and opens it on read (a Slack incoming-webhook URL is
// its own credential). UpdateExport writes it as given: "" clears it.
type ExportAlerts struct {
	AlertWebhookURL    string `gorm:"-" json:"-"`                              // "": the host's webhook
	SealedAlertWebhook string `gorm:"column:alert_webhook_secret" json:"-"`    // what is stored
	AlertFormat        string `gorm:"column:alert_format" json:"alert_format"` // "": the host's format
	// AlertPeriodSeconds is the least time between two alerts of the export; nil: the
	// host's period; 0: every alert is sent.
	AlertPeriodSeconds *int64 `gorm:"column:alert_period_seconds" json:"alert_period_seconds,omitempty"`
}

// maxAlertWebhookLen bounds a stored webhook URL.
const maxAlertWebhookLen = 2048

func (db *DB) prepareAlerts(e *BatchExport) error {
	a := &e.ExportAlerts
	if len(a.AlertWebhookURL) > maxAlertWebhookLen {
		return fmt.Errorf("%w: alert webhook URL longer than %d bytes", ErrInvalid, maxAlertWebhookLen)
	}
	if a.AlertPeriodSeconds != nil && *a.AlertPeriodSeconds < 0 {
		return fmt.Errorf("%w: alert period must not be negative", ErrInvalid)
	}
	a.SealedAlertWebhook = ""
	if a.AlertWebhookURL != "" {
		sealed, err := db.keys.Seal([]byte(a.AlertWebhookURL))
		if err != nil {
			return err
		}
		a.SealedAlertWebhook = sealed
	}
	return nil
}

func (db *DB) openAlerts(e *BatchExport) error {
	e.AlertWebhookURL = ""
	if e.SealedAlertWebhook == "" {
		return nil
	}
	pt, err := db.keys.Open(e.SealedAlertWebhook)
	if err != nil {
		return fmt.Errorf("export %s alert webhook: %w", e.ID, err)
	}
	e.AlertWebhookURL = string(pt)
	return nil
}

// AlertState is the rate limit of one export's alerts, shared by every host (table
// alert_state). host/alert decides what the fields mean; storage reads and writes them
// under a lock.
type AlertState struct {
	ExportID string `gorm:"column:export_id;primaryKey"`
	// LastAlertAt is when the alert holding the current period claimed it (nil: none).
	LastAlertAt *time.Time `gorm:"column:last_alert_at"`
	// SlotKey names that alert; Delivered says whether it reached its receiver.
	SlotKey   string `gorm:"column:slot_key"`
	Delivered bool   `gorm:"column:delivered"`
	// Suppressed counts the alerts not sent since the last delivered one.
	Suppressed int       `gorm:"column:suppressed"`
	UpdatedAt  time.Time `gorm:"column:updated_at"`
}

// TableName implements gorm's tabler.
func (AlertState) TableName() string { return "alert_state" }

// AfterFind normalises times to UTC.
func (s *AlertState) AfterFind(*gorm.DB) error {
	s.LastAlertAt, s.UpdatedAt = utcPtr(s.LastAlertAt), s.UpdatedAt.UTC()
	return nil
}

// UpdateAlertState reads the export's alert state (a zero state the first time) and
// passes it to fn, holding a lock on it until the transaction ends: a row lock on
// PostgreSQL, SQLite's immediate write transaction. When fn returns true the changed
// state is stored. Concurrent calls for one export, from any host, run one after the
// other. It returns the state as stored after fn. The export must exist (ErrNotFound).
func (db *DB) UpdateAlertState(ctx context.Context, exportID string, fn func(s *AlertState) (bool, error)) (AlertState, error) {
	var out AlertState
	err := db.inTx(ctx, func(tx *gorm.DB) error {
		// The row exists before it is locked, so two first alerts cannot both miss it.
		seed := AlertState{ExportID: exportID, UpdatedAt: now()}
		if err := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "export_id"}}, DoNothing: true}).Create(&seed).Error; err != nil {
			return mapErr(err, "alert state of export "+exportID)
		}
		var s AlertState
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("export_id = ?", exportID).Take(&s).Error
		if err != nil {
			return mapErr(err, "alert state of export "+exportID)
		}
		changed, err := fn(&s)
		if err != nil {
			return err
		}
		s.ExportID = exportID
		if changed {
			s.LastAlertAt, s.UpdatedAt = normTimePtr(s.LastAlertAt), now()
			res := tx.Model(&AlertState{}).Where("export_id = ?", exportID).
				Select("last_alert_at", "slot_key", "delivered", "suppressed", "updated_at").Updates(&s)
			if res.Error != nil {
				return mapErr(res.Error, "alert state of export "+exportID)
			}
		}
		out = s
		return nil
	})
	return out, err
}

// GetAlertState returns the export's alert state (a zero one when it never had an alert).
func (db *DB) GetAlertState(ctx context.Context, exportID string) (AlertState, error) {
	var s AlertState
	err := db.gdb.WithContext(ctx).Where("export_id = ?", exportID).Take(&s).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return AlertState{ExportID: exportID}, nil
	}
	if err != nil {
		return AlertState{}, mapErr(err, "alert state of export "+exportID)
	}
	return s, nil
}
