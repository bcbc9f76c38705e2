// Package storagetest is the conformance suite of package storage: every
// repository behaviour, run against each database the caller provides.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

// NewConfig returns the Config of a fresh, empty database (a new SQLite data
// dir, a new PostgreSQL schema, ...). Opening the same Config twice must reach
// the same database.
type NewConfig func(t *testing.T) storage.Config

// Run runs the whole suite; each test gets a fresh database from newConfig.
func Run(t *testing.T, newConfig NewConfig) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newConfig NewConfig)
	}{
		{"Migrations", testMigrations},
		{"Plugins", testPlugins},
		{"PluginDelete", testPluginDelete},
		{"PluginPins", testPluginPins},
		{"PluginPinMigration", testPluginPinMigration},
		{"Exports", testExports},
		{"ExportValidation", testExportValidation},
		{"ExportPause", testExportPause},
		{"SecretRotation", testSecretRotation},
		{"ExportAlerts", testExportAlerts},
		{"AlertWebhookRotation", testAlertWebhookRotation},
		{"AlertState", testAlertState},
		{"CreateRunIfAbsent", testCreateRunIfAbsent},
		{"CreateRunIfAbsentConcurrent", testCreateRunIfAbsentConcurrent},
		{"CreateRunIfAbsentTwoHandles", testCreateRunIfAbsentTwoHandles},
		{"RunsInBatches", testRunsInBatches},
		{"TransitionRun", testTransitionRun},
		{"TransitionRunConcurrent", testTransitionRunConcurrent},
		{"ListRuns", testListRuns},
		{"Backfills", testBackfills},
		{"BackfillRuns", testBackfillRuns},
		{"BackfillRecords", testBackfillRecords},
		{"RunGenerations", testRunGenerations},
		{"ForEachRunAndRecentFailures", testForEachRunAndRecentFailures},
		{"Logs", testLogs},
		{"APITokens", testAPITokens},
		{"ExportPages", testExportPages},
		{"BackfillPages", testBackfillPages},
		{"TokenPages", testTokenPages},
		{"PluginPages", testPluginPages},
		{"PluginModules", testPluginModules},
		{"ExportVersions", testExportVersions},
		{"RunsUpdatedBefore", testRunsUpdatedBefore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newConfig)
		})
	}
}

func open(t *testing.T, cfg storage.Config) *storage.DB {
	t.Helper()
	db, err := storage.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("storage.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func fresh(t *testing.T, newConfig NewConfig) *storage.DB {
	t.Helper()
	return open(t, newConfig(t))
}

// check(f())(t) fails the test if f returned an error.
func check[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		return must(t, v, err)
	}
}

func must[T any](t *testing.T, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	return v
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

var base = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)

func mkPlugin(t *testing.T, db *storage.DB, name, version string) storage.Plugin {
	t.Helper()
	return check(db.CreatePlugin(context.Background(), storage.Plugin{
		Name: name, Version: version, ABIVersion: "1.0", SHA256: strings.Repeat("ab", 32),
		Manifest: `{"name":"` + name + `"}`, Capabilities: storage.StringList{"objstore", "log"},
		ModulePath: "/plugins/" + name + "-" + version + ".wasm",
	}))(t)
}

func mkExport(t *testing.T, db *storage.DB, p storage.Plugin, name string) storage.BatchExport {
	t.Helper()
	return check(db.CreateExport(context.Background(), storage.BatchExport{
		Name: name, PluginID: p.ID, DestinationType: p.Name, Interval: storage.IntervalHour,
		Config:       `{"bucket":"b","prefix":"events/"}`,
		SecretConfig: map[string]any{"aws_secret_access_key": "s3cr3t-" + name},
	}))(t)
}

func testMigrations(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	cfg := newConfig(t)
	db := open(t, cfg)
	v := check(db.SchemaVersion(ctx))(t)
	if v < 1 {
		t.Fatalf("schema version %d, want >= 1", v)
	}
	// Migration numbers may have gaps (numbers are handed out per change): count the rows.
	var applied int
	if err := db.SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	p := mkPlugin(t, db, "s3", "1.0.0")
	db.Close()
	// Opening again applies nothing and keeps the data; so does a concurrent open.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db2, err := storage.Open(ctx, cfg)
			if err != nil {
				errs <- err
				return
			}
			defer db2.Close()
			if _, err := db2.GetPlugin(ctx, p.ID); err != nil {
				errs <- err
			}
			if v2, err := db2.SchemaVersion(ctx); err != nil || v2 != v {
				errs <- fmt.Errorf("schema version %d (%v), want %d", v2, err, v)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	db3 := open(t, cfg)
	var n int
	if err := db3.SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != applied {
		t.Fatalf("schema_migrations has %d rows, want %d", n, applied)
	}
	if d := db3.Dialect(); d != storage.DialectSQLite && d != storage.DialectPostgres {
		t.Fatalf("dialect %q", d)
	}
	if db3.Gorm() == nil || db3.Keyring() == nil {
		t.Fatal("nil gorm or keyring")
	}
}

func testPlugins(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	p1 := mkPlugin(t, db, "s3", "1.0.0")
	if p1.ID == "" || p1.CreatedAt.IsZero() {
		t.Fatalf("id/created_at not set: %+v", p1)
	}
	got := check(db.GetPlugin(ctx, p1.ID))(t)
	if got.Name != "s3" || got.Version != "1.0.0" || got.ABIVersion != "1.0" || got.Manifest != `{"name":"s3"}` ||
		strings.Join(got.Capabilities, ",") != "objstore,log" || got.ModulePath != p1.ModulePath || !got.CreatedAt.Equal(p1.CreatedAt) {
		t.Fatalf("round trip: got %+v want %+v", got, p1)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Fatalf("created_at not UTC: %v", got.CreatedAt.Location())
	}

	_, err := db.CreatePlugin(ctx, storage.Plugin{Name: "s3", Version: "1.0.0", ABIVersion: "1.0"})
	wantErr(t, err, storage.ErrConflict)
	_, err = db.CreatePlugin(ctx, storage.Plugin{Name: "s3", Version: "9", Manifest: "{not json"})
	wantErr(t, err, storage.ErrInvalid)
	_, err = db.CreatePlugin(ctx, storage.Plugin{Name: "", Version: "1"})
	wantErr(t, err, storage.ErrInvalid)

	later := check(db.CreatePlugin(ctx, storage.Plugin{Name: "s3", Version: "1.1.0", ABIVersion: "1.0", CreatedAt: p1.CreatedAt.Add(time.Second)}))(t)
	mkPlugin(t, db, "bigquery", "0.1.0")
	latest := check(db.GetLatestPluginByName(ctx, "s3"))(t)
	if latest.ID != later.ID {
		t.Fatalf("latest s3 = %s, want %s", latest.Version, later.Version)
	}
	if latest.Capabilities == nil || len(latest.Capabilities) != 0 {
		t.Fatalf("nil capabilities should read back as empty list, got %#v", latest.Capabilities)
	}
	_, err = db.GetLatestPluginByName(ctx, "nope")
	wantErr(t, err, storage.ErrNotFound)
	_, err = db.GetPlugin(ctx, "00000000-0000-0000-0000-000000000000")
	wantErr(t, err, storage.ErrNotFound)

	list := check(db.ListPlugins(ctx))(t)
	var names []string
	for _, p := range list {
		names = append(names, p.Name+"@"+p.Version)
	}
	if got, want := strings.Join(names, " "), "bigquery@0.1.0 s3@1.1.0 s3@1.0.0"; got != want {
		t.Fatalf("list = %s, want %s", got, want)
	}
}

func testPluginDelete(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	p := mkPlugin(t, db, "s3", "1.0.0")
	e := mkExport(t, db, p, "hourly")
	wantErr(t, db.DeletePlugin(ctx, p.ID), storage.ErrConflict)
	if err := db.SoftDeleteExport(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.DeletePlugin(ctx, p.ID); err != nil {
		t.Fatalf("delete after export deleted: %v", err)
	}
	wantErr(t, db.DeletePlugin(ctx, p.ID), storage.ErrNotFound)
	_, err := db.GetPlugin(ctx, p.ID)
	wantErr(t, err, storage.ErrNotFound)
	// The soft-deleted export survives its plugin.
	if _, err := db.GetExportIncludingDeleted(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
}

func testExports(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	p := mkPlugin(t, db, "s3", "1.0.0")
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		berlin = time.FixedZone("CET", 3600)
	}
	start := time.Date(2024, 1, 1, 1, 0, 0, 123456789, berlin)
	end := start.Add(30 * 24 * time.Hour)
	in := storage.BatchExport{
		Name: "daily", PluginID: p.ID, DestinationType: "s3", Interval: storage.IntervalDay,
		Timezone: "Europe/Berlin", IntervalOffset: 3 * 3600, StartAt: &start, EndAt: &end,
		Model: "events", Filters: `{"events":["$pageview"]}`, Config: `{"bucket":"b"}`,
		SecretConfig: map[string]any{"aws_secret_access_key": "very-secret-value", "n": 1.0},
	}
	e := check(db.CreateExport(ctx, in))(t)
	if e.ID == "" || e.CreatedAt.IsZero() || e.UpdatedAt.IsZero() || e.DeletedAt != nil {
		t.Fatalf("bad create result %+v", e)
	}
	got := check(db.GetExport(ctx, e.ID))(t)
	if got.Name != "daily" || got.PluginID != p.ID || got.DestinationType != "s3" || got.Interval != "day" ||
		got.Timezone != "Europe/Berlin" || got.IntervalOffset != 3*3600 || got.Model != "events" ||
		got.Filters != in.Filters || got.Config != in.Config || got.Paused {
		t.Fatalf("round trip: %+v", got)
	}
	if got.StartAt == nil || !got.StartAt.Equal(start.Truncate(time.Microsecond)) || !got.EndAt.Equal(end.Truncate(time.Microsecond)) {
		t.Fatalf("start/end = %v/%v, want %v/%v", got.StartAt, got.EndAt, start, end)
	}
	if got.SecretConfig["aws_secret_access_key"] != "very-secret-value" || got.SecretConfig["n"] != 1.0 {
		t.Fatalf("secret config = %v", got.SecretConfig)
	}
	// At rest the secret is sealed.
	var raw string
	q := "SELECT secret_config FROM batch_exports WHERE id = ?"
	if db.Dialect() == storage.DialectPostgres {
		q = "SELECT secret_config FROM batch_exports WHERE id = $1"
	}
	if err := db.SQL().QueryRowContext(ctx, q, e.ID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, "very-secret") || !strings.HasPrefix(raw, "sluice.v1.") {
		t.Fatalf("secret_config at rest = %q", raw)
	}

	// Update: nil SecretConfig keeps the stored secrets, a new map replaces them.
	got.Name, got.Config, got.SecretConfig = "daily-2", `{"bucket":"c"}`, nil
	up := check(db.UpdateExport(ctx, got))(t)
	if up.Name != "daily-2" || up.Config != `{"bucket":"c"}` || up.SecretConfig["aws_secret_access_key"] != "very-secret-value" {
		t.Fatalf("update keep secrets: %+v", up)
	}
	if !up.CreatedAt.Equal(e.CreatedAt) || up.UpdatedAt.Before(e.UpdatedAt) {
		t.Fatalf("timestamps after update: %+v", up)
	}
	up.SecretConfig = map[string]any{"password": "p2"}
	up = check(db.UpdateExport(ctx, up))(t)
	if len(up.SecretConfig) != 1 || up.SecretConfig["password"] != "p2" {
		t.Fatalf("update replace secrets: %v", up.SecretConfig)
	}
	_, err = db.UpdateExport(ctx, storage.BatchExport{ID: "missing", Name: "x", PluginID: p.ID, Interval: "hour"})
	wantErr(t, err, storage.ErrNotFound)

	other := mkExport(t, db, p, "hourly")
	list := check(db.ListExports(ctx, storage.ExportFilter{}))(t)
	if len(list) != 2 || list[0].ID != e.ID || list[1].ID != other.ID || list[1].SecretConfig["aws_secret_access_key"] != "s3cr3t-hourly" {
		t.Fatalf("list = %+v", list)
	}
	if err := db.SoftDeleteExport(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, db.SoftDeleteExport(ctx, e.ID), storage.ErrNotFound)
	_, err = db.GetExport(ctx, e.ID)
	wantErr(t, err, storage.ErrNotFound)
	_, err = db.UpdateExport(ctx, up)
	wantErr(t, err, storage.ErrNotFound)
	del := check(db.GetExportIncludingDeleted(ctx, e.ID))(t)
	if del.DeletedAt == nil {
		t.Fatal("deleted_at not set")
	}
	list = check(db.ListExports(ctx, storage.ExportFilter{}))(t)
	if len(list) != 1 || list[0].ID != other.ID {
		t.Fatalf("list after delete = %d exports", len(list))
	}
	list = check(db.ListExports(ctx, storage.ExportFilter{IncludeDeleted: true, PluginID: p.ID}))(t)
	if len(list) != 2 {
		t.Fatalf("list with deleted = %d exports", len(list))
	}
}

func testExportValidation(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	p := mkPlugin(t, db, "s3", "1.0.0")
	t1, t0 := base.Add(time.Hour), base
	tests := []struct {
		name string
		mod  func(*storage.BatchExport)
		want error
	}{
		{"bad interval", func(e *storage.BatchExport) { e.Interval = "fortnight" }, storage.ErrInvalid},
		{"no name", func(e *storage.BatchExport) { e.Name = " " }, storage.ErrInvalid},
		{"bad timezone", func(e *storage.BatchExport) { e.Timezone = "Mars/Olympus" }, storage.ErrInvalid},
		{"bad config json", func(e *storage.BatchExport) { e.Config = "{" }, storage.ErrInvalid},
		{"bad filters json", func(e *storage.BatchExport) { e.Filters = "[" }, storage.ErrInvalid},
		{"start after end", func(e *storage.BatchExport) { e.StartAt, e.EndAt = &t1, &t0 }, storage.ErrInvalid},
		{"unknown plugin", func(e *storage.BatchExport) { e.PluginID = "no-such-plugin" }, storage.ErrNotFound},
		{"every 5 minutes ok", func(e *storage.BatchExport) { e.Interval = storage.IntervalEvery5Min }, nil},
		{"every 15 minutes ok", func(e *storage.BatchExport) { e.Interval = storage.IntervalEvery15Min }, nil},
		{"week ok", func(e *storage.BatchExport) { e.Interval = storage.IntervalWeek }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := storage.BatchExport{Name: "x", PluginID: p.ID, DestinationType: "s3", Interval: "hour"}
			tc.mod(&e)
			got, err := db.CreateExport(ctx, e)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got.Timezone != "UTC" || got.Model != "events" || got.Filters != "{}" || got.Config != "{}" || got.SecretConfig == nil {
					t.Fatalf("defaults not applied: %+v", got)
				}
				return
			}
			wantErr(t, err, tc.want)
		})
	}
}

func testExportPause(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	if e.LastPausedAt != nil {
		t.Fatal("new export has last_paused_at")
	}
	paused := check(db.SetExportPaused(ctx, e.ID, true))(t)
	if !paused.Paused || paused.LastPausedAt == nil {
		t.Fatalf("pause: %+v", paused)
	}
	again := check(db.SetExportPaused(ctx, e.ID, true))(t)
	if !again.LastPausedAt.Equal(*paused.LastPausedAt) {
		t.Fatal("pausing a paused export moved last_paused_at")
	}
	un := check(db.SetExportPaused(ctx, e.ID, false))(t)
	if un.Paused || un.LastPausedAt == nil || !un.LastPausedAt.Equal(*paused.LastPausedAt) {
		t.Fatalf("unpause: %+v", un)
	}
	if un.SecretConfig["aws_secret_access_key"] != "s3cr3t-e" {
		t.Fatal("secrets lost by pause")
	}
	_, err := db.SetExportPaused(ctx, "missing", true)
	wantErr(t, err, storage.ErrNotFound)
}

func testSecretRotation(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	cfg := newConfig(t)
	cfg.SecretKey = "old:first passphrase"
	db := open(t, cfg)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	db.Close()

	cfg.SecretKey = "new:" + strings.Repeat("0f", 32) + ",old:first passphrase"
	db = open(t, cfg)
	if got := check(db.GetExport(ctx, e.ID))(t); got.SecretConfig["aws_secret_access_key"] != "s3cr3t-e" {
		t.Fatalf("old key did not open: %v", got.SecretConfig)
	}
	if r := check(db.ResealSecrets(ctx))(t); r.Resealed != 1 || r.KeyID != "new" {
		t.Fatalf("rotation: %+v, want 1 re-sealed with key new", r)
	}
	if r := check(db.ResealSecrets(ctx))(t); r.Resealed != 0 {
		t.Fatalf("second rotation re-sealed %d, want 0", r.Resealed)
	}
	db.Close()

	cfg.SecretKey = "new:" + strings.Repeat("0f", 32)
	db = open(t, cfg)
	if got := check(db.GetExport(ctx, e.ID))(t); got.SecretConfig["aws_secret_access_key"] != "s3cr3t-e" {
		t.Fatalf("after rotation: %v", got.SecretConfig)
	}
	db.Close()

	cfg.SecretKey = "other:another key"
	db = open(t, cfg)
	_, err := db.GetExport(ctx, e.ID)
	wantErr(t, err, storage.ErrDecrypt)
}

func runAt(exportID string, end time.Time) storage.Run {
	return storage.Run{ExportID: exportID, IntervalStart: end.Add(-time.Hour), IntervalEnd: end}
}

func testCreateRunIfAbsent(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	r1, created := func() (storage.Run, bool) {
		r, c, err := db.CreateRunIfAbsent(ctx, runAt(e.ID, base))
		return must(t, r, err), c
	}()
	if !created || r1.Status != storage.StatusStarting || r1.ID == "" || r1.Checkpoint != "{}" {
		t.Fatalf("first create: created=%v %+v", created, r1)
	}
	// Same interval end, written in another zone: same run.
	other := runAt(e.ID, base.In(time.FixedZone("X", -5*3600)))
	other.Attempt = 7
	r2, created, err := db.CreateRunIfAbsent(ctx, other)
	if err != nil || created || r2.ID != r1.ID || r2.Attempt != 0 {
		t.Fatalf("second create: created=%v err=%v %+v", created, err, r2)
	}
	if !r2.IntervalEnd.Equal(base) || !r2.IntervalStart.Equal(base.Add(-time.Hour)) || r2.IntervalEnd.Location() != time.UTC {
		t.Fatalf("interval = [%v, %v)", r2.IntervalStart, r2.IntervalEnd)
	}
	bID := "bf"
	_, _, err = db.CreateRunIfAbsent(ctx, storage.Run{ExportID: e.ID, IntervalStart: base, IntervalEnd: base.Add(time.Hour), BackfillID: &bID})
	wantErr(t, err, storage.ErrNotFound) // no such backfill
	_, _, err = db.CreateRunIfAbsent(ctx, runAt("no-such-export", base))
	wantErr(t, err, storage.ErrNotFound)
	_, _, err = db.CreateRunIfAbsent(ctx, storage.Run{ExportID: e.ID, IntervalStart: base, IntervalEnd: base})
	wantErr(t, err, storage.ErrInvalid)
	got := check(db.GetRun(ctx, r1.ID))(t)
	if got.ID != r1.ID || !got.CreatedAt.Equal(r1.CreatedAt) {
		t.Fatalf("get run: %+v", got)
	}
	byInterval := check(db.GetRunByInterval(ctx, e.ID, base))(t)
	if byInterval.ID != r1.ID {
		t.Fatal("GetRunByInterval returned another run")
	}
	_, err = db.GetRun(ctx, "missing")
	wantErr(t, err, storage.ErrNotFound)
}

func checkOneRun(t *testing.T, db *storage.DB, exportID string, results []storage.Run, created []bool) {
	t.Helper()
	n := 0
	for i, c := range created {
		if c {
			n++
		}
		if results[i].ID != results[0].ID {
			t.Fatalf("goroutine %d got run %s, goroutine 0 got %s", i, results[i].ID, results[0].ID)
		}
	}
	if n != 1 {
		t.Fatalf("%d goroutines created the run, want exactly 1", n)
	}
	runs := check(db.ListRuns(context.Background(), exportID, storage.RunFilter{}))(t)
	if len(runs) != 1 {
		t.Fatalf("%d rows, want 1", len(runs))
	}
}

func testCreateRunIfAbsentConcurrent(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	const workers = 8
	for round := range 3 {
		end := base.Add(time.Duration(round) * time.Hour)
		results, created, errs := make([]storage.Run, workers), make([]bool, workers), make([]error, workers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i], created[i], errs[i] = db.CreateRunIfAbsent(ctx, runAt(e.ID, end))
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("goroutine %d: %v", i, err)
			}
		}
		runs := check(db.ListRuns(ctx, e.ID, storage.RunFilter{After: end.Add(-time.Minute), Before: end}))(t)
		if len(runs) != 1 {
			t.Fatalf("round %d: %d rows", round, len(runs))
		}
		n := 0
		for i, c := range created {
			if c {
				n++
			}
			if results[i].ID != runs[0].ID {
				t.Fatalf("goroutine %d got run %s, stored %s", i, results[i].ID, runs[0].ID)
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d goroutines created the run, want 1", round, n)
		}
	}
}

// Two handles on one database stand for two processes.
func testCreateRunIfAbsentTwoHandles(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	cfg := newConfig(t)
	cfg.SecretKey = "k:shared key"
	dbs := []*storage.DB{open(t, cfg), open(t, cfg)}
	e := mkExport(t, dbs[0], mkPlugin(t, dbs[0], "s3", "1"), "e")
	const workers = 8
	results, created, errs := make([]storage.Run, workers), make([]bool, workers), make([]error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], created[i], errs[i] = dbs[i%2].CreateRunIfAbsent(ctx, runAt(e.ID, base))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("goroutine %d: %v", i, err)
		}
	}
	checkOneRun(t, dbs[1], e.ID, results, created)
}

func testTransitionRun(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	r, _, err := db.CreateRunIfAbsent(ctx, runAt(e.ID, base))
	r = must(t, r, err)

	running := check(db.TransitionRun(ctx, r.ID, []storage.RunStatus{storage.StatusStarting}, storage.StatusRunning, func(r *storage.Run) {
		r.Attempt++
		r.ExportID = "ignored" // not a mutable column
	}))(t)
	if running.Status != storage.StatusRunning || running.Attempt != 1 || running.StartedAt == nil || running.FinishedAt != nil || running.ExportID != e.ID {
		t.Fatalf("to running: %+v", running)
	}
	_, err = db.TransitionRun(ctx, r.ID, []storage.RunStatus{storage.StatusStarting}, storage.StatusRunning, nil)
	wantErr(t, err, storage.ErrConflict)

	// Heartbeat-style update in place.
	cp := check(db.TransitionRun(ctx, r.ID, []storage.RunStatus{storage.StatusRunning}, storage.StatusRunning, func(r *storage.Run) {
		r.Checkpoint = `{"done_until":"2024-03-01T00:30:00Z"}`
		r.RecordsCompleted = 500
	}))(t)
	if cp.Checkpoint != `{"done_until":"2024-03-01T00:30:00Z"}` || !cp.StartedAt.Equal(*running.StartedAt) {
		t.Fatalf("checkpoint: %+v", cp)
	}
	_, err = db.TransitionRun(ctx, r.ID, nil, storage.StatusRunning, func(r *storage.Run) { r.Checkpoint = "{bad" })
	wantErr(t, err, storage.ErrInvalid)

	failed := check(db.TransitionRun(ctx, r.ID, []storage.RunStatus{storage.StatusRunning}, storage.StatusFailedRetryable, func(r *storage.Run) {
		r.LatestError = "throttled"
	}))(t)
	if failed.FinishedAt != nil || failed.LatestError != "throttled" {
		t.Fatalf("retryable failure must not finish: %+v", failed)
	}
	done := check(db.TransitionRun(ctx, r.ID, []storage.RunStatus{storage.StatusFailedRetryable, storage.StatusRunning}, storage.StatusCompleted, func(r *storage.Run) {
		r.RecordsCompleted, r.BytesExported, r.LatestError = 1<<40, 1<<41, ""
	}))(t)
	if done.Status != storage.StatusCompleted || done.FinishedAt == nil || done.RecordsCompleted != 1<<40 || done.BytesExported != 1<<41 || done.LatestError != "" {
		t.Fatalf("completed: %+v", done)
	}
	_, err = db.TransitionRun(ctx, "missing", nil, storage.StatusRunning, nil)
	wantErr(t, err, storage.ErrNotFound)
	_, err = db.TransitionRun(ctx, r.ID, nil, "Bogus", nil)
	wantErr(t, err, storage.ErrInvalid)
}

func testTransitionRunConcurrent(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	r, _, err := db.CreateRunIfAbsent(ctx, runAt(e.ID, base))
	r = must(t, r, err)
	const workers = 8
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = db.TransitionRun(ctx, r.ID, []storage.RunStatus{storage.StatusStarting}, storage.StatusRunning, func(r *storage.Run) { r.Attempt++ })
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, storage.ErrConflict):
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d transitions won, want 1", ok)
	}
	if got := check(db.GetRun(ctx, r.ID))(t); got.Attempt != 1 || got.Status != storage.StatusRunning {
		t.Fatalf("after race: %+v", got)
	}
}

func testListRuns(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	p := mkPlugin(t, db, "s3", "1")
	e, other := mkExport(t, db, p, "e"), mkExport(t, db, p, "other")
	statuses := []storage.RunStatus{storage.StatusCompleted, storage.StatusFailed, storage.StatusCompleted, storage.StatusRunning, storage.StatusStarting}
	for i, s := range statuses {
		run := runAt(e.ID, base.Add(time.Duration(i+1)*time.Hour))
		run.Status = s
		if _, _, err := db.CreateRunIfAbsent(ctx, run); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := db.CreateRunIfAbsent(ctx, runAt(other.ID, base.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	hours := func(runs []storage.Run) string {
		var s []string
		for _, r := range runs {
			s = append(s, fmt.Sprint(int(r.IntervalEnd.Sub(base).Hours())))
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name string
		f    storage.RunFilter
		want string
	}{
		{"all newest first", storage.RunFilter{}, "5,4,3,2,1"},
		{"limit", storage.RunFilter{Limit: 2}, "5,4"},
		{"offset", storage.RunFilter{Limit: 2, Offset: 2}, "3,2"},
		{"statuses", storage.RunFilter{Statuses: []storage.RunStatus{storage.StatusCompleted, storage.StatusFailed}}, "3,2,1"},
		{"after", storage.RunFilter{After: base.Add(3 * time.Hour)}, "5,4"},
		{"before", storage.RunFilter{Before: base.Add(2 * time.Hour)}, "2,1"},
		{"window in other zone", storage.RunFilter{After: base.Add(time.Hour).In(time.FixedZone("Y", 9*3600)), Before: base.Add(4 * time.Hour)}, "4,3,2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hours(check(db.ListRuns(ctx, e.ID, tc.f))(t)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	counts := check(db.CountRunsByStatus(ctx, e.ID))(t)
	want := map[storage.RunStatus]int64{storage.StatusCompleted: 2, storage.StatusFailed: 1, storage.StatusRunning: 1, storage.StatusStarting: 1, storage.StatusCancelled: 0, storage.StatusFailedRetryable: 0}
	for s, n := range want {
		if counts[s] != n {
			t.Fatalf("count[%s] = %d, want %d (%v)", s, counts[s], n, counts)
		}
	}
}

func testBackfills(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	e := mkExport(t, db, mkPlugin(t, db, "s3", "1"), "e")
	b := check(db.CreateBackfill(ctx, storage.Backfill{ExportID: e.ID, StartAt: base, EndAt: base.Add(4 * time.Hour), TotalRuns: 4}))(t)
	if b.ID == "" || b.Status != storage.StatusStarting {
		t.Fatalf("create: %+v", b)
	}
	_, err := db.CreateBackfill(ctx, storage.Backfill{ExportID: e.ID, StartAt: base, EndAt: base})
	wantErr(t, err, storage.ErrInvalid)
	_, err = db.CreateBackfill(ctx, storage.Backfill{ExportID: "missing", StartAt: base, EndAt: base.Add(time.Hour)})
	wantErr(t, err, storage.ErrNotFound)
	got := check(db.GetBackfill(ctx, b.ID))(t)
	if !got.StartAt.Equal(base) || !got.EndAt.Equal(base.Add(4*time.Hour)) || got.TotalRuns != 4 {
		t.Fatalf("get: %+v", got)
	}
	b2 := check(db.CreateBackfill(ctx, storage.Backfill{ExportID: e.ID, StartAt: base.Add(-48 * time.Hour), EndAt: base.Add(-24 * time.Hour)}))(t)
	if err := db.SetBackfillTotalRuns(ctx, b2.ID, 24); err != nil {
		t.Fatal(err)
	}
	list := check(db.ListBackfills(ctx, e.ID))(t)
	if len(list) != 2 || list[1].ID != b.ID && list[0].ID != b.ID {
		t.Fatalf("list: %+v", list)
	}

	for i, s := range []storage.RunStatus{storage.StatusCompleted, storage.StatusCompleted, storage.StatusFailed, storage.StatusRunning} {
		run := runAt(e.ID, base.Add(time.Duration(i+1)*time.Hour))
		run.BackfillID, run.Status = &b.ID, s
		if s == storage.StatusCompleted {
			run.RecordsCompleted, run.BytesExported = 100, 1000
		}
		if _, _, err := db.CreateRunIfAbsent(ctx, run); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := db.CreateRunIfAbsent(ctx, runAt(e.ID, base.Add(10*time.Hour))); err != nil { // not in the backfill
		t.Fatal(err)
	}
	p := check(db.GetBackfillProgress(ctx, b.ID))(t)
	want := storage.BackfillProgress{TotalRuns: 4, CreatedRuns: 4, FinishedRuns: 3, CompletedRuns: 2, FailedRuns: 1, RecordsCompleted: 200, BytesExported: 2000, Fraction: 0.75}
	if p != want {
		t.Fatalf("progress = %+v, want %+v", p, want)
	}
	runs := check(db.ListRuns(ctx, e.ID, storage.RunFilter{BackfillID: b.ID}))(t)
	if len(runs) != 4 {
		t.Fatalf("runs of backfill: %d", len(runs))
	}

	running := check(db.UpdateBackfillStatus(ctx, b.ID, []storage.RunStatus{storage.StatusStarting}, storage.StatusRunning))(t)
	if running.Status != storage.StatusRunning || running.FinishedAt != nil {
		t.Fatalf("running: %+v", running)
	}
	_, err = db.UpdateBackfillStatus(ctx, b.ID, []storage.RunStatus{storage.StatusStarting}, storage.StatusCancelled)
	wantErr(t, err, storage.ErrConflict)
	done := check(db.UpdateBackfillStatus(ctx, b.ID, nil, storage.StatusCancelled))(t)
	if done.FinishedAt == nil {
		t.Fatal("finished_at not set")
	}
	_, err = db.GetBackfill(ctx, "missing")
	wantErr(t, err, storage.ErrNotFound)
	_, err = db.GetBackfillProgress(ctx, "missing")
	wantErr(t, err, storage.ErrNotFound)
}

func testLogs(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	run1, run2 := "run-1", "run-2"
	levels := []storage.LogLevel{storage.LevelDebug, storage.LevelInfo, storage.LevelWarn, storage.LevelError}
	var entries []storage.LogEntry
	for i := range 250 {
		e := storage.LogEntry{
			ExportID: "exp", Level: levels[i%4], Source: "host",
			Message: fmt.Sprintf("line %03d", i), Time: base.Add(time.Duration(i) * time.Second),
		}
		if i%2 == 0 {
			e.RunID = &run1
		} else {
			e.RunID = &run2
		}
		entries = append(entries, e)
	}
	entries[7].Message = "Upload 100% OF part_7 done"
	entries[7].Attrs = `{"part":7}`
	entries[7].Source = "plugin:s3"
	if err := db.AppendLogs(ctx, entries); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, e := range entries {
		if e.ID == 0 || seen[e.ID] {
			t.Fatalf("id not set or repeated: %d", e.ID)
		}
		seen[e.ID] = true
	}
	one := check(db.AppendLog(ctx, storage.LogEntry{ExportID: "other", Message: "hello"}))(t)
	if one.ID == 0 || one.Level != storage.LevelInfo || one.Time.IsZero() || one.Attrs != "{}" {
		t.Fatalf("single append: %+v", one)
	}
	wantErr(t, db.AppendLogs(ctx, []storage.LogEntry{{ExportID: "exp", Level: "LOUD", Message: "x"}}), storage.ErrInvalid)
	wantErr(t, db.AppendLogs(ctx, []storage.LogEntry{{Message: "x"}}), storage.ErrInvalid)

	tests := []struct {
		name  string
		f     storage.LogFilter
		count int
		first string
	}{
		{"export newest first", storage.LogFilter{ExportID: "exp", Limit: 1000}, 250, "line 249"},
		{"default limit", storage.LogFilter{ExportID: "exp"}, 100, "line 249"},
		{"run", storage.LogFilter{ExportID: "exp", RunID: run1, Limit: 1000}, 125, "line 248"},
		{"min level warn", storage.LogFilter{ExportID: "exp", MinLevel: storage.LevelWarn, Limit: 1000}, 124, "line 247"},
		{"min level error lower case", storage.LogFilter{ExportID: "exp", MinLevel: "error", Limit: 1000}, 62, "line 247"},
		{"search case-insensitive with wildcard chars", storage.LogFilter{ExportID: "exp", Search: "100% of PART_7"}, 1, "Upload 100% OF part_7 done"},
		{"search percent is literal", storage.LogFilter{ExportID: "exp", Search: "line%1"}, 0, ""},
		{"after/before", storage.LogFilter{ExportID: "exp", After: base.Add(10 * time.Second), Before: base.Add(20 * time.Second)}, 9, "line 019"},
		{"cursor", storage.LogFilter{ExportID: "exp", Cursor: &storage.LogCursor{Time: entries[5].Time, ID: entries[5].ID}}, 5, "line 004"},
		{"all exports", storage.LogFilter{Limit: 1000}, 251, "hello"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := check(db.QueryLogs(ctx, tc.f))(t)
			if len(got) != tc.count {
				t.Fatalf("%d lines, want %d", len(got), tc.count)
			}
			if tc.count > 0 && got[0].Message != tc.first {
				t.Fatalf("first = %q, want %q", got[0].Message, tc.first)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Time.After(got[i-1].Time) {
					t.Fatal("not newest first")
				}
			}
		})
	}
	got := check(db.QueryLogs(ctx, storage.LogFilter{ExportID: "exp", Search: "part_7"}))(t)
	if len(got) != 1 || got[0].Attrs != `{"part":7}` || got[0].Source != "plugin:s3" || *got[0].RunID != run2 || got[0].Level != storage.LevelError ||
		!got[0].Time.Equal(base.Add(7*time.Second)) {
		t.Fatalf("round trip: %+v", got)
	}
	_, err := db.QueryLogs(ctx, storage.LogFilter{MinLevel: "LOUD"})
	wantErr(t, err, storage.ErrInvalid)

	// Pages follow (time, id), not id: lines written with ids out of time order (as
	// concurrent runs write them) each come back exactly once, newest first.
	t1 := base.Add(time.Hour)
	skew := []storage.LogEntry{
		{ExportID: "skew", Time: t1, Message: "a"},
		{ExportID: "skew", Time: t1.Add(time.Second), Message: "b"},
		{ExportID: "skew", Time: t1, Message: "c"},
		{ExportID: "skew", Time: t1.Add(-time.Second), Message: "d"},
		{ExportID: "skew", Time: t1, Message: "e"},
	}
	if err := db.AppendLogs(ctx, skew); err != nil {
		t.Fatal(err)
	}
	var paged []string
	f := storage.LogFilter{ExportID: "skew", Limit: 2}
	for range len(skew) {
		page := check(db.QueryLogs(ctx, f))(t)
		if len(page) == 0 {
			break
		}
		for _, l := range page {
			paged = append(paged, l.Message)
		}
		last := page[len(page)-1]
		f.Cursor = &storage.LogCursor{Time: last.Time, ID: last.ID}
	}
	if got := strings.Join(paged, ""); got != "becad" {
		t.Fatalf("paged %q, want %q (time desc, then id desc)", got, "becad")
	}
}

func testAPITokens(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	row, token, err := db.CreateAPIToken(ctx, "ci", []string{"read", "write", "read"})
	row = must(t, row, err)
	if !strings.HasPrefix(token, storage.TokenPrefix) || len(token) < 40 || row.Scopes != "read,write" {
		t.Fatalf("token %q row %+v", token, row)
	}
	if row.TokenHash != storage.HashToken(token) || strings.Contains(row.TokenHash, token) {
		t.Fatal("stored hash is not sha256 of the token")
	}
	var n int
	q := "SELECT COUNT(*) FROM api_tokens WHERE token_hash = ? OR name = ?"
	if db.Dialect() == storage.DialectPostgres {
		q = "SELECT COUNT(*) FROM api_tokens WHERE token_hash = $1 OR name = $2"
	}
	if err := db.SQL().QueryRowContext(ctx, q, token, token).Scan(&n); err != nil || n != 0 {
		t.Fatalf("plaintext token stored (%d, %v)", n, err)
	}
	auth := check(db.AuthenticateAPIToken(ctx, token))(t)
	if auth.ID != row.ID || auth.LastUsedAt == nil || !auth.HasScope("read") || !auth.HasScope("write") || auth.HasScope("admin") {
		t.Fatalf("auth: %+v", auth)
	}
	for _, bad := range []string{"", token + "x", "sluice_nope"} {
		_, err := db.AuthenticateAPIToken(ctx, bad)
		wantErr(t, err, storage.ErrNotFound)
	}
	_, _, err = db.CreateAPIToken(ctx, "x", []string{"root"})
	wantErr(t, err, storage.ErrInvalid)
	_, _, err = db.CreateAPIToken(ctx, "x", nil)
	wantErr(t, err, storage.ErrInvalid)
	admin, _, err := db.CreateAPIToken(ctx, "admin", []string{"admin"})
	admin = must(t, admin, err)
	if !admin.HasScope("write") || !admin.HasScope("read") {
		t.Fatal("admin should imply every scope")
	}
	list := check(db.ListAPITokens(ctx))(t)
	if len(list) != 2 || list[0].LastUsedAt == nil {
		t.Fatalf("list: %+v", list)
	}
	if err := db.DeleteAPIToken(ctx, row.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, db.DeleteAPIToken(ctx, row.ID), storage.ErrNotFound)
	_, err = db.AuthenticateAPIToken(ctx, token)
	wantErr(t, err, storage.ErrNotFound)
}
