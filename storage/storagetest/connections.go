package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/storage"
)

func mkConnection(t *testing.T, db *storage.DB, name string) storage.Connection {
	t.Helper()
	return check(db.CreateConnection(context.Background(), storage.Connection{
		Name: name, PluginName: "s3", Config: `{"region":"eu-west-1"}`,
		SecretConfig: map[string]any{"aws_access_key_id": "AK-" + name, "aws_secret_access_key": "conn-s3cr3t-" + name},
	}))(t)
}

// testConnections: create, read, update (secrets kept or replaced), sealed at rest, in use
// by exports (delete refused naming them; a soft-deleted export does not count), paging.
func testConnections(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	c := mkConnection(t, db, "prod")
	if c.ID == "" || c.CreatedAt.IsZero() || c.SecretConfig["aws_secret_access_key"] != "conn-s3cr3t-prod" {
		t.Fatalf("created %+v", c)
	}
	// Sealed at rest: the row holds no plaintext.
	var raw string
	if err := db.SQL().QueryRowContext(ctx, "SELECT secret_config FROM connections WHERE id = "+placeholder(db), c.ID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, "conn-s3cr3t") || !strings.HasPrefix(raw, "sluice.v1.") {
		t.Fatalf("stored secret_config %q", raw)
	}
	got := check(db.GetConnection(ctx, c.ID))(t)
	if got.Name != "prod" || got.PluginName != "s3" || got.Config != `{"region":"eu-west-1"}` || got.SecretConfig["aws_access_key_id"] != "AK-prod" {
		t.Fatalf("get %+v", got)
	}
	_, err := db.GetConnection(ctx, "no-such")
	wantErr(t, err, storage.ErrNotFound)
	_, err = db.CreateConnection(ctx, storage.Connection{Name: " ", PluginName: "s3"})
	wantErr(t, err, storage.ErrInvalid)
	_, err = db.CreateConnection(ctx, storage.Connection{Name: "x", PluginName: "s3", Config: "{"})
	wantErr(t, err, storage.ErrInvalid)

	// Update: nil secrets keep, a map replaces; the plugin cannot change.
	got.Name, got.Config, got.SecretConfig = "prod-2", `{"region":"us-east-2"}`, nil
	up := check(db.UpdateConnection(ctx, got))(t)
	if up.Name != "prod-2" || up.Config != `{"region":"us-east-2"}` || up.SecretConfig["aws_secret_access_key"] != "conn-s3cr3t-prod" || !up.UpdatedAt.After(c.UpdatedAt) {
		t.Fatalf("update keep: %+v", up)
	}
	up.SecretConfig = map[string]any{"aws_access_key_id": "AK2", "aws_secret_access_key": "rotated"}
	up = check(db.UpdateConnection(ctx, up))(t)
	if up.SecretConfig["aws_secret_access_key"] != "rotated" || !up.CreatedAt.Equal(c.CreatedAt) {
		t.Fatalf("update replace: %+v", up)
	}
	up.PluginName = "gcs"
	_, err = db.UpdateConnection(ctx, up)
	wantErr(t, err, storage.ErrInvalid)
	_, err = db.UpdateConnection(ctx, storage.Connection{ID: "no-such", Name: "x", PluginName: "s3"})
	wantErr(t, err, storage.ErrNotFound)

	// Exports referring to it: created and updated only with an existing connection.
	p := mkPlugin(t, db, "s3", "1")
	missing := "no-such-connection"
	_, err = db.CreateExport(ctx, storage.BatchExport{Name: "x", PluginID: p.ID, DestinationType: "s3", Interval: storage.IntervalHour, ConnectionID: &missing})
	wantErr(t, err, storage.ErrNotFound)
	var users []storage.BatchExport
	for _, name := range []string{"a", "b", "c"} {
		e := mkExport(t, db, p, name)
		e.ConnectionID, e.SecretConfig = &c.ID, map[string]any{}
		e = check(db.UpdateExport(ctx, e))(t)
		if e.ConnectionID == nil || *e.ConnectionID != c.ID {
			t.Fatalf("export %s connection %v", name, e.ConnectionID)
		}
		users = append(users, e)
	}
	e := users[0]
	e.ConnectionID = &missing
	_, err = db.UpdateExport(ctx, e)
	wantErr(t, err, storage.ErrNotFound)
	check(0, db.SoftDeleteExport(ctx, users[2].ID))(t)
	refs := check(db.ExportsUsingConnection(ctx, c.ID))(t)
	if len(refs) != 2 || refs[0].ID != users[0].ID || refs[1].Name != "b" {
		t.Fatalf("users %+v", refs)
	}
	err = db.DeleteConnection(ctx, c.ID)
	wantErr(t, err, storage.ErrConflict)
	var inUse *storage.ConnectionInUseError
	if !errors.As(err, &inUse) || len(inUse.Exports) != 2 || !strings.Contains(err.Error(), users[1].ID) {
		t.Fatalf("delete in use: %v", err)
	}
	// Detached (connection_id NULL again) and deleted: the connection goes.
	e = check(db.GetExport(ctx, users[0].ID))(t)
	e.ConnectionID = nil
	if e = check(db.UpdateExport(ctx, e))(t); e.ConnectionID != nil {
		t.Fatalf("detached export keeps %v", *e.ConnectionID)
	}
	check(0, db.SoftDeleteExport(ctx, users[1].ID))(t)
	check(0, db.DeleteConnection(ctx, c.ID))(t)
	wantErr(t, db.DeleteConnection(ctx, c.ID), storage.ErrNotFound)
	_, err = db.GetConnection(ctx, c.ID)
	wantErr(t, err, storage.ErrNotFound)

	// Paging: ties on created_at ordered by id, the plugin filter.
	for i := range 12 {
		plugin := "s3"
		if i%4 == 0 {
			plugin = "gcs"
		}
		x := check(db.CreateConnection(ctx, storage.Connection{Name: fmt.Sprintf("c%d", i), PluginName: plugin}))(t)
		setCreatedAt(t, db, "connections", x.ID, tieTime(i))
	}
	all := pageAll(t, 2, func(p storage.Page) ([]storage.Connection, error) {
		return db.ListConnectionsPage(ctx, storage.ConnectionFilter{}, p)
	}, func(c storage.Connection) storage.Cursor { return storage.Cursor{CreatedAt: c.CreatedAt, ID: c.ID} })
	if len(all) != 12 {
		t.Fatalf("listed %d connections, want 12", len(all))
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if b.CreatedAt.Before(a.CreatedAt) || (b.CreatedAt.Equal(a.CreatedAt) && b.ID < a.ID) {
			t.Fatalf("out of order at %d: %v %s, %v %s", i, a.CreatedAt, a.ID, b.CreatedAt, b.ID)
		}
	}
	gcs := check(db.ListConnectionsPage(ctx, storage.ConnectionFilter{PluginName: "gcs"}, storage.Page{}))(t)
	if len(gcs) != 3 {
		t.Fatalf("gcs connections %d, want 3", len(gcs))
	}
}

// testConnectionSecretRotation: a key rotation re-seals connections' secrets too.
func testConnectionSecretRotation(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	cfg := newConfig(t)
	cfg.SecretKey = "old:first passphrase"
	db := open(t, cfg)
	c := mkConnection(t, db, "c")
	db.Close()

	cfg.SecretKey = "other:another key"
	db = open(t, cfg)
	_, err := db.ResealSecrets(ctx)
	var ue *storage.UnopenedSecretsError
	if !errors.As(err, &ue) || len(ue.Secrets) != 1 || ue.Secrets[0].ConnectionID != c.ID || !strings.Contains(err.Error(), "connection "+c.ID) {
		t.Fatalf("reseal without the old key: %v", err)
	}
	db.Close()

	cfg.SecretKey = "new:" + strings.Repeat("0f", 32) + ",old:first passphrase"
	db = open(t, cfg)
	if r := check(db.ResealSecrets(ctx))(t); r.Resealed != 1 || r.Stored != 1 || r.FromKeys["old"] != 1 {
		t.Fatalf("rotation: %+v, want the connection re-sealed", r)
	}
	db.Close()
	cfg.SecretKey = "new:" + strings.Repeat("0f", 32)
	db = open(t, cfg)
	if got := check(db.GetConnection(ctx, c.ID))(t); got.SecretConfig["aws_secret_access_key"] != "conn-s3cr3t-c" {
		t.Fatalf("after rotation: %v", got.SecretConfig)
	}
}

// placeholder is the dialect's first bind parameter.
func placeholder(db *storage.DB) string {
	if db.Dialect() == storage.DialectPostgres {
		return "$1"
	}
	return "?"
}
