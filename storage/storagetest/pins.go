package storagetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

// mkVersion stores a plugin version whose module hash is sha (one hex digit repeated).
func mkVersion(t *testing.T, db *storage.DB, name, version string, sha byte) storage.Plugin {
	t.Helper()
	return check(db.CreatePlugin(context.Background(), storage.Plugin{
		Name: name, Version: version, ABIVersion: "1.0", SHA256: strings.Repeat(string(sha), 64), Manifest: `{}`,
	}))(t)
}

// testPluginPins: an export pins the version and module of its plugin row, written with
// plugin_id; an update that keeps the plugin keeps the pin; a run's attempt records the
// module; exports are found and counted by pin.
func testPluginPins(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	v1 := mkVersion(t, db, "dest", "1.0.0", 'a')
	v2 := mkVersion(t, db, "dest", "2.0.0", 'b')
	mkVersion(t, db, "other", "1.0.0", 'a')

	e := mkExport(t, db, v1, "pinned")
	if e.PluginVersion != "1.0.0" || e.PluginSHA256 != v1.SHA256 {
		t.Fatalf("created export pins %q %q, want 1.0.0 %s", e.PluginVersion, e.PluginSHA256, v1.SHA256)
	}
	// A caller cannot write a pin that disagrees with plugin_id: the row decides.
	e.Name, e.PluginVersion, e.PluginSHA256 = "renamed", "9.9.9", "forged"
	e = check(db.UpdateExport(ctx, e))(t)
	if e.PluginVersion != "1.0.0" || e.PluginSHA256 != v1.SHA256 {
		t.Fatalf("update without a plugin change: pin %q %q, want v1's", e.PluginVersion, e.PluginSHA256)
	}
	other := mkExport(t, db, v1, "other")
	e.PluginID = v2.ID
	e = check(db.UpdateExport(ctx, e))(t)
	got := check(db.GetExport(ctx, e.ID))(t)
	if got.PluginID != v2.ID || got.PluginVersion != "2.0.0" || got.PluginSHA256 != v2.SHA256 {
		t.Fatalf("repinned export reads %s %q %q, want v2", got.PluginID, got.PluginVersion, got.PluginSHA256)
	}

	for _, tc := range []struct {
		f    storage.ExportFilter
		want int64
	}{
		{storage.ExportFilter{DestinationType: "dest", PluginVersion: "1.0.0"}, 1},
		{storage.ExportFilter{PluginSHA256: v2.SHA256}, 1},
		{storage.ExportFilter{PluginID: v1.ID}, 1},
		{storage.ExportFilter{DestinationType: "dest"}, 2},
	} {
		if n := check(db.CountExports(ctx, tc.f))(t); n != tc.want {
			t.Errorf("CountExports(%+v) = %d, want %d", tc.f, n, tc.want)
		}
		if l := check(db.ListExports(ctx, tc.f))(t); int64(len(l)) != tc.want {
			t.Errorf("ListExports(%+v) = %d exports, want %d", tc.f, len(l), tc.want)
		}
	}
	byPlugin := check(db.CountExportsByPlugin(ctx, []string{v1.ID, v2.ID, "none"}))(t)
	if len(byPlugin) != 2 || byPlugin[v1.ID] != 1 || byPlugin[v2.ID] != 1 {
		t.Errorf("CountExportsByPlugin = %v, want one export each", byPlugin)
	}
	if err := db.SoftDeleteExport(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if n := check(db.CountExports(ctx, storage.ExportFilter{PluginID: v1.ID}))(t); n != 0 {
		t.Errorf("a deleted export still counts: %d", n)
	}
	if m := check(db.CountExportsByPlugin(ctx, []string{v1.ID}))(t); len(m) != 0 {
		t.Errorf("a deleted export still counts by plugin: %v", m)
	}

	// Versions are found by version, by module, or by both.
	if p := check(db.FindPluginVersion(ctx, "dest", "2.0.0", ""))(t); p.ID != v2.ID {
		t.Errorf("by version: %s", p.Version)
	}
	if p := check(db.FindPluginVersion(ctx, "dest", "", v1.SHA256))(t); p.ID != v1.ID {
		t.Errorf("by sha256: %s", p.Version)
	}
	_, err := db.FindPluginVersion(ctx, "dest", "2.0.0", v1.SHA256)
	wantErr(t, err, storage.ErrNotFound)
	_, err = db.FindPluginVersion(ctx, "nope", "1.0.0", "")
	wantErr(t, err, storage.ErrNotFound)
	_, err = db.FindPluginVersion(ctx, "dest", "", "")
	wantErr(t, err, storage.ErrInvalid)

	// An attempt records the module it runs with.
	run, _, err := db.CreateRunIfAbsent(ctx, runAt(e.ID, base.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	run = check(db.TransitionRun(ctx, run.ID, nil, storage.StatusRunning, func(r *storage.Run) {
		r.PluginVersion, r.PluginSHA256 = got.PluginVersion, got.PluginSHA256
	}))(t)
	run = check(db.GetRun(ctx, run.ID))(t)
	if run.PluginVersion != "2.0.0" || run.PluginSHA256 != v2.SHA256 {
		t.Fatalf("run records %q %q, want v2", run.PluginVersion, run.PluginSHA256)
	}
}

// testPluginPinMigration: migration 7 fills the pin of the exports that existed before it
// from the plugin row they reference. The database is taken back to before migration 7
// (its columns dropped, its row removed), then opened again.
func testPluginPinMigration(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	cfg := newConfig(t)
	db := open(t, cfg)
	v1 := mkVersion(t, db, "dest", "1.0.0", 'c')
	live := mkExport(t, db, v1, "live")
	gone := mkVersion(t, db, "gone", "0.1.0", 'd')
	orphan := mkExport(t, db, gone, "orphan")
	if err := db.SoftDeleteExport(ctx, orphan.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.DeletePlugin(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		"ALTER TABLE batch_exports DROP COLUMN plugin_version",
		"ALTER TABLE batch_exports DROP COLUMN plugin_sha256",
		"ALTER TABLE runs DROP COLUMN plugin_version",
		"ALTER TABLE runs DROP COLUMN plugin_sha256",
		"DELETE FROM schema_migrations WHERE version = 7",
	} {
		if _, err := db.SQL().ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()
	db = open(t, cfg)
	got := check(db.GetExport(ctx, live.ID))(t)
	if got.PluginVersion != "1.0.0" || got.PluginSHA256 != v1.SHA256 {
		t.Fatalf("migrated export pins %q %q, want 1.0.0 %s", got.PluginVersion, got.PluginSHA256, v1.SHA256)
	}
	o := check(db.GetExportIncludingDeleted(ctx, orphan.ID))(t)
	if o.PluginVersion != "" || o.PluginSHA256 != "" {
		t.Fatalf("an export whose plugin is gone pins %q %q, want nothing", o.PluginVersion, o.PluginSHA256)
	}
}
