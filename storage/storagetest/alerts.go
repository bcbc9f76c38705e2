package storagetest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

const hookURL = "http://127.0.0.1:9/services/T000/B000/XXXXsecretXXXX"

// An export's alert settings round-trip; the webhook URL is stored sealed, never as text.
func testExportAlerts(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	p := mkPlugin(t, db, "s3", "1")
	period := int64(3600)
	e := check(db.CreateExport(ctx, storage.BatchExport{
		Name: "alerted", PluginID: p.ID, DestinationType: p.Name, Interval: storage.IntervalHour,
		ExportAlerts: storage.ExportAlerts{AlertWebhookURL: hookURL, AlertFormat: "slack", AlertPeriodSeconds: &period},
	}))(t)
	got := check(db.GetExport(ctx, e.ID))(t)
	if got.AlertWebhookURL != hookURL || got.AlertFormat != "slack" || got.AlertPeriodSeconds == nil || *got.AlertPeriodSeconds != 3600 {
		t.Fatalf("read back %+v", got.ExportAlerts)
	}
	var raw string
	if err := db.SQL().QueryRowContext(ctx, "SELECT alert_webhook_secret FROM batch_exports WHERE id = '"+e.ID+"'").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(raw, "sluice.v1.") || strings.Contains(raw, "secret") {
		t.Fatalf("stored webhook is not sealed: %q", raw)
	}
	// UpdateExport writes what it is given: other fields keep the URL, "" clears it.
	got.Name = "renamed"
	up := check(db.UpdateExport(ctx, got))(t)
	if up.AlertWebhookURL != hookURL {
		t.Fatalf("update lost the webhook: %+v", up.ExportAlerts)
	}
	up.AlertWebhookURL, up.AlertFormat, up.AlertPeriodSeconds = "", "", nil
	up = check(db.UpdateExport(ctx, up))(t)
	again := check(db.GetExport(ctx, e.ID))(t)
	if again.AlertWebhookURL != "" || again.AlertFormat != "" || again.AlertPeriodSeconds != nil || up.AlertWebhookURL != "" {
		t.Fatalf("cleared settings read back %+v", again.ExportAlerts)
	}
	neg := int64(-1)
	_, err := db.CreateExport(ctx, storage.BatchExport{Name: "bad", PluginID: p.ID, Interval: storage.IntervalHour,
		ExportAlerts: storage.ExportAlerts{AlertPeriodSeconds: &neg}})
	wantErr(t, err, storage.ErrInvalid)
}

// ResealSecrets re-seals alert webhook URLs too.
func testAlertWebhookRotation(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	cfg := newConfig(t)
	cfg.SecretKey = "old:first passphrase"
	db := open(t, cfg)
	p := mkPlugin(t, db, "s3", "1")
	e := check(db.CreateExport(ctx, storage.BatchExport{Name: "hooked", PluginID: p.ID, DestinationType: p.Name,
		Interval: storage.IntervalHour, ExportAlerts: storage.ExportAlerts{AlertWebhookURL: hookURL}}))(t)
	db.Close()

	cfg.SecretKey = "new:" + strings.Repeat("0f", 32) + ",old:first passphrase"
	db = open(t, cfg)
	// The export has a sealed empty destination secret and the webhook: two secrets.
	if r := check(db.ResealSecrets(ctx))(t); r.Resealed != 2 || r.Stored != 2 {
		t.Fatalf("rotation: %+v, want 2 of 2 re-sealed", r)
	}
	db.Close()

	cfg.SecretKey = "new:" + strings.Repeat("0f", 32)
	db = open(t, cfg)
	if got := check(db.GetExport(ctx, e.ID))(t); got.AlertWebhookURL != hookURL {
		t.Fatalf("after rotation the webhook reads %q", got.AlertWebhookURL)
	}
}

// UpdateAlertState serialises concurrent read-modify-writes of one export's state, from
// two handles (two hosts), and stores only what fn changed.
func testAlertState(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	cfg := newConfig(t)
	db1, db2 := open(t, cfg), open(t, cfg)
	e := mkExport(t, db1, mkPlugin(t, db1, "s3", "1"), "e")

	if s := check(db1.GetAlertState(ctx, e.ID))(t); s.LastAlertAt != nil || s.Suppressed != 0 || s.SlotKey != "" {
		t.Fatalf("fresh state %+v", s)
	}
	at := time.Date(2026, 11, 20, 10, 0, 0, 123456000, time.FixedZone("x", 3600)) // microseconds: both databases keep them
	var wg sync.WaitGroup
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		db := db1
		if i%2 == 1 {
			db = db2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := db.UpdateAlertState(ctx, e.ID, func(s *storage.AlertState) (bool, error) {
				if s.LastAlertAt == nil {
					s.LastAlertAt, s.SlotKey = &at, "first"
					return true, nil
				}
				s.Suppressed++
				return true, nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := check(db2.GetAlertState(ctx, e.ID))(t)
	if s.Suppressed != n-1 || s.SlotKey != "first" || s.LastAlertAt == nil || !s.LastAlertAt.Equal(at) || s.LastAlertAt.Location() != time.UTC {
		t.Fatalf("after %d concurrent updates: %+v", n, s)
	}
	// fn returning false stores nothing.
	check(db1.UpdateAlertState(ctx, e.ID, func(s *storage.AlertState) (bool, error) { s.Suppressed = 1000; return false, nil }))(t)
	if s := check(db1.GetAlertState(ctx, e.ID))(t); s.Suppressed != n-1 {
		t.Fatalf("an unchanged update stored %+v", s)
	}
	_, err := db1.UpdateAlertState(ctx, "no-such-export", func(*storage.AlertState) (bool, error) { return true, nil })
	wantErr(t, err, storage.ErrNotFound)
}
