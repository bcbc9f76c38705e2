package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

// testPluginModules: a module is stored once per sha256, fetched by it, listed as missing
// until stored, and removed with the last plugin row that uses it.
func testPluginModules(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	wasm := append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{7}, 70_000)...)
	sum := sha256.Sum256(wasm)
	sha := hex.EncodeToString(sum[:])
	p1 := check(db.CreatePlugin(ctx, storage.Plugin{Name: "m", Version: "1", ABIVersion: "1.0", SHA256: sha}))(t)
	p2 := check(db.CreatePlugin(ctx, storage.Plugin{Name: "m", Version: "2", ABIVersion: "1.0", SHA256: sha}))(t)
	if missing := check(db.PluginsWithoutModule(ctx))(t); len(missing) != 2 {
		t.Fatalf("plugins without a module: %d, want 2", len(missing))
	}
	_, err := db.GetPluginModule(ctx, sha)
	wantErr(t, err, storage.ErrNotFound)
	for range 2 { // the second put is a no-op
		if err := db.PutPluginModule(ctx, sha, wasm); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, db.PutPluginModule(ctx, "short", wasm), storage.ErrInvalid)
	if got := check(db.GetPluginModule(ctx, sha))(t); !bytes.Equal(got, wasm) {
		t.Fatalf("module read back has %d bytes, want the %d stored", len(got), len(wasm))
	}
	if missing := check(db.PluginsWithoutModule(ctx))(t); len(missing) != 0 {
		t.Fatalf("plugins without a module after the put: %+v", missing)
	}
	// Deleting one of two plugin rows of the module keeps it; deleting the last drops it.
	if err := db.DeletePlugin(ctx, p1.ID); err != nil {
		t.Fatal(err)
	}
	check(db.GetPluginModule(ctx, sha))(t)
	if err := db.DeletePlugin(ctx, p2.ID); err != nil {
		t.Fatal(err)
	}
	_, err = db.GetPluginModule(ctx, sha)
	wantErr(t, err, storage.ErrNotFound)
}

// testExportVersions: every write of an export changes its version; a deleted export has
// none.
func testExportVersions(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	p := mkPlugin(t, db, "s3", "1")
	a, b := mkExport(t, db, p, "a"), mkExport(t, db, p, "b")
	v0 := check(db.ExportVersions(ctx))(t)
	if len(v0) != 2 || !v0[a.ID].Equal(a.UpdatedAt) || !v0[b.ID].Equal(b.UpdatedAt) {
		t.Fatalf("versions %v, want a=%s b=%s", v0, a.UpdatedAt, b.UpdatedAt)
	}
	time.Sleep(2 * time.Millisecond)
	a.IntervalOffset = 60
	a.SecretConfig = nil
	check(db.UpdateExport(ctx, a))(t)
	time.Sleep(2 * time.Millisecond)
	check(db.SetExportPaused(ctx, b.ID, true))(t)
	v1 := check(db.ExportVersions(ctx))(t)
	if !v1[a.ID].After(v0[a.ID]) || !v1[b.ID].After(v0[b.ID]) {
		t.Fatalf("versions after an update and a pause: %v, before %v", v1, v0)
	}
	if err := db.SoftDeleteExport(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if v2 := check(db.ExportVersions(ctx))(t); len(v2) != 1 || v2[b.ID].IsZero() {
		t.Fatalf("versions after deleting a: %v", v2)
	}
}

// testRunsUpdatedBefore: ForEachRun's UpdatedBefore keeps the runs not written since.
func testRunsUpdatedBefore(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	old, _ := check2(t, db, runAt(e.ID, base.Add(time.Hour)))
	time.Sleep(5 * time.Millisecond)
	cut := time.Now()
	time.Sleep(5 * time.Millisecond)
	check2(t, db, runAt(e.ID, base.Add(2*time.Hour)))
	var got []string
	err := db.ForEachRun(ctx, storage.RunSet{Statuses: []storage.RunStatus{storage.StatusStarting}, UpdatedBefore: cut}, func(r storage.Run) error {
		got = append(got, r.ID)
		return nil
	})
	if err != nil || len(got) != 1 || got[0] != old.ID {
		t.Fatalf("runs updated before the cut: %v (%v), want [%s]", got, err, old.ID)
	}
}

func check2(t *testing.T, db *storage.DB, r storage.Run) (storage.Run, bool) {
	t.Helper()
	run, created, err := db.CreateRunIfAbsent(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return run, created
}
