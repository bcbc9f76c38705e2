package storagetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

// setCreatedAt rewrites a row's created_at, to make ties on the sort key of the
// paged lists (the repository stamps rows with its own clock).
func setCreatedAt(t *testing.T, db *storage.DB, table, id string, at time.Time) {
	t.Helper()
	res := db.Gorm().Exec("UPDATE "+table+" SET created_at = ? WHERE id = ?", at.UTC(), id)
	if res.Error != nil || res.RowsAffected != 1 {
		t.Fatalf("set %s %s created_at: %v (%d rows)", table, id, res.Error, res.RowsAffected)
	}
}

// tieTime gives row i one of three instants, several rows each: ties on
// created_at that only the id orders.
func tieTime(i int) time.Time {
	return base.Add(time.Duration(i/4)*time.Second + 123456*time.Microsecond)
}

// pageAll follows pages of at most limit rows until a short page, failing on a
// page larger than limit or a row seen twice; it returns the rows in page order.
func pageAll[T any](t *testing.T, limit int, fetch func(storage.Page) ([]T, error), key func(T) storage.Cursor) []T {
	t.Helper()
	var out []T
	seen := map[string]bool{}
	p := storage.Page{Limit: limit}
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		rows, err := fetch(p)
		rows = must(t, rows, err)
		if len(rows) > limit {
			t.Fatalf("page %d has %d rows, limit %d", pages, len(rows), limit)
		}
		for _, r := range rows {
			k := key(r).ID
			if seen[k] {
				t.Fatalf("page %d repeats %s", pages, k)
			}
			seen[k] = true
		}
		out = append(out, rows...)
		if len(rows) < limit {
			return out
		}
		c := key(rows[len(rows)-1])
		p.After = &c
	}
}

func ids[T any](rows []T, id func(T) string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = id(r)
	}
	return out
}

// sortedIDs orders cursors by (created_at, id), ascending or descending.
func sortedIDs(cs []storage.Cursor, desc bool) []string {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b storage.Cursor) int {
		c := a.CreatedAt.Compare(b.CreatedAt)
		if c == 0 {
			c = compareStrings(a.ID, b.ID)
		}
		if desc {
			c = -c
		}
		return c
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func exportKey(e storage.BatchExport) storage.Cursor {
	return storage.Cursor{CreatedAt: e.CreatedAt, ID: e.ID}
}

// testExportPages: ListExportsPage pages through more exports than a page, with
// ties on created_at, oldest first, exactly like ListExports; filters apply
// before the page.
func testExportPages(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	s3, hook := mkPlugin(t, db, "s3", "1"), mkPlugin(t, db, "webhook", "1")
	const n = 11
	var want []storage.Cursor
	created := map[string]time.Time{}
	for i := range n {
		p := s3
		if i%3 == 2 {
			p = hook
		}
		e := mkExport(t, db, p, fmt.Sprintf("e%02d", i))
		setCreatedAt(t, db, "batch_exports", e.ID, tieTime(i))
		if i%2 == 1 {
			check(db.SetExportPaused(ctx, e.ID, true))(t)
		}
		want = append(want, storage.Cursor{CreatedAt: tieTime(i), ID: e.ID})
		created[e.ID] = tieTime(i)
	}
	gone := mkExport(t, db, s3, "deleted")
	if err := db.SoftDeleteExport(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}

	all := check(db.ListExports(ctx, storage.ExportFilter{}))(t)
	wantIDs := sortedIDs(want, false)
	if got := ids(all, func(e storage.BatchExport) string { return e.ID }); !slices.Equal(got, wantIDs) {
		t.Fatalf("ListExports order %v, want %v", got, wantIDs)
	}
	for _, limit := range []int{1, 3, 4, n, n + 1} {
		got := pageAll(t, limit, func(p storage.Page) ([]storage.BatchExport, error) {
			return db.ListExportsPage(ctx, storage.ExportFilter{}, p)
		}, exportKey)
		if g := ids(got, func(e storage.BatchExport) string { return e.ID }); !slices.Equal(g, wantIDs) {
			t.Fatalf("limit %d: pages %v, want %v", limit, g, wantIDs)
		}
		for _, e := range got {
			if e.SecretConfig["aws_secret_access_key"] != "s3cr3t-"+e.Name {
				t.Fatalf("page export %s: secret config not decrypted: %v", e.Name, e.SecretConfig)
			}
			if !e.CreatedAt.Equal(created[e.ID]) {
				t.Fatalf("export %s created_at %v", e.Name, e.CreatedAt)
			}
		}
	}
	// The default page holds them all.
	if got := check(db.ListExportsPage(ctx, storage.ExportFilter{}, storage.Page{}))(t); len(got) != n {
		t.Fatalf("default page: %d exports, want %d", len(got), n)
	}

	// Filters: destination type, paused, plugin; deleted ones on request.
	yes, no := true, false
	for _, f := range []storage.ExportFilter{
		{DestinationType: "s3"}, {DestinationType: "webhook"}, {Paused: &yes}, {Paused: &no},
		{DestinationType: "s3", Paused: &yes}, {PluginID: hook.ID}, {IncludeDeleted: true}, {DestinationType: "none"},
	} {
		whole := check(db.ListExports(ctx, f))(t)
		for _, e := range whole {
			if f.DestinationType != "" && e.DestinationType != f.DestinationType || f.Paused != nil && e.Paused != *f.Paused ||
				f.PluginID != "" && e.PluginID != f.PluginID || !f.IncludeDeleted && e.DeletedAt != nil {
				t.Fatalf("filter %+v: ListExports returned %s (%s paused=%v)", f, e.Name, e.DestinationType, e.Paused)
			}
		}
		paged := pageAll(t, 2, func(p storage.Page) ([]storage.BatchExport, error) { return db.ListExportsPage(ctx, f, p) }, exportKey)
		byID := func(e storage.BatchExport) string { return e.ID }
		if !slices.Equal(ids(paged, byID), ids(whole, byID)) {
			t.Fatalf("filter %+v: pages %v, ListExports %v", f, ids(paged, byID), ids(whole, byID))
		}
	}
	if got := check(db.ListExports(ctx, storage.ExportFilter{DestinationType: "webhook"}))(t); len(got) != 3 {
		t.Fatalf("webhook exports: %d, want 3", len(got))
	}
	if got := check(db.ListExports(ctx, storage.ExportFilter{Paused: &yes}))(t); len(got) != n/2 {
		t.Fatalf("paused exports: %d, want %d", len(got), n/2)
	}
	if got := check(db.ListExports(ctx, storage.ExportFilter{IncludeDeleted: true}))(t); len(got) != n+1 {
		t.Fatalf("exports with deleted: %d, want %d", len(got), n+1)
	}
}

// testBackfillPages: ListBackfillsPage pages an export's backfills newest first,
// with ties on created_at, exactly like ListBackfills, and never another export's.
func testBackfillPages(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	p := mkPlugin(t, db, "s3", "1")
	e, other := mkExport(t, db, p, "e"), mkExport(t, db, p, "other")
	const n = 10
	var want []storage.Cursor
	for i := range n {
		b := check(db.CreateBackfill(ctx, storage.Backfill{ExportID: e.ID, StartAt: base, EndAt: base.Add(time.Duration(i+1) * time.Hour)}))(t)
		setCreatedAt(t, db, "backfills", b.ID, tieTime(i))
		want = append(want, storage.Cursor{CreatedAt: tieTime(i), ID: b.ID})
		check(db.CreateBackfill(ctx, storage.Backfill{ExportID: other.ID, StartAt: base, EndAt: base.Add(time.Hour)}))(t)
	}
	wantIDs := sortedIDs(want, true)
	byID := func(b storage.Backfill) string { return b.ID }
	if got := ids(check(db.ListBackfills(ctx, e.ID))(t), byID); !slices.Equal(got, wantIDs) {
		t.Fatalf("ListBackfills order %v, want %v", got, wantIDs)
	}
	for _, limit := range []int{1, 3, 4, n, n + 1} {
		got := pageAll(t, limit, func(pg storage.Page) ([]storage.Backfill, error) { return db.ListBackfillsPage(ctx, e.ID, pg) },
			func(b storage.Backfill) storage.Cursor { return storage.Cursor{CreatedAt: b.CreatedAt, ID: b.ID} })
		if g := ids(got, byID); !slices.Equal(g, wantIDs) {
			t.Fatalf("limit %d: pages %v, want %v", limit, g, wantIDs)
		}
	}
	if got := check(db.ListBackfillsPage(ctx, "missing", storage.Page{}))(t); len(got) != 0 {
		t.Fatalf("backfills of a missing export: %d", len(got))
	}
}

// testTokenPages: ListAPITokensPage pages oldest first with ties on created_at,
// exactly like ListAPITokens, also when the row a cursor names is deleted meanwhile.
func testTokenPages(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	const n = 9
	var want []storage.Cursor
	for i := range n {
		row, _, err := db.CreateAPIToken(ctx, fmt.Sprintf("t%d", i), []string{storage.ScopeRead})
		row = must(t, row, err)
		setCreatedAt(t, db, "api_tokens", row.ID, tieTime(i))
		want = append(want, storage.Cursor{CreatedAt: tieTime(i), ID: row.ID})
	}
	wantIDs := sortedIDs(want, false)
	byID := func(tk storage.APIToken) string { return tk.ID }
	if got := ids(check(db.ListAPITokens(ctx))(t), byID); !slices.Equal(got, wantIDs) {
		t.Fatalf("ListAPITokens order %v, want %v", got, wantIDs)
	}
	key := func(tk storage.APIToken) storage.Cursor { return storage.Cursor{CreatedAt: tk.CreatedAt, ID: tk.ID} }
	for _, limit := range []int{1, 2, 4, n} {
		got := pageAll(t, limit, func(p storage.Page) ([]storage.APIToken, error) { return db.ListAPITokensPage(ctx, p) }, key)
		if g := ids(got, byID); !slices.Equal(g, wantIDs) {
			t.Fatalf("limit %d: pages %v, want %v", limit, g, wantIDs)
		}
	}
	// The cursor is a position, not a row: deleting its row keeps the next page right.
	first := check(db.ListAPITokensPage(ctx, storage.Page{Limit: 4}))(t)
	last := key(first[3])
	if err := db.DeleteAPIToken(ctx, last.ID); err != nil {
		t.Fatal(err)
	}
	rest := check(db.ListAPITokensPage(ctx, storage.Page{After: &last, Limit: 100}))(t)
	if g := ids(rest, byID); !slices.Equal(g, wantIDs[4:]) {
		t.Fatalf("after a deleted cursor row: %v, want %v", g, wantIDs[4:])
	}
}

// testPluginPages: ListPluginsPage pages plugin names (every version of a name
// on the same page), in ListPlugins' order.
func testPluginPages(t *testing.T, newConfig NewConfig) {
	ctx := context.Background()
	db := fresh(t, newConfig)
	names := []string{"s3", "bigquery", "snow-flake", "a_b", "webhook", "zz", "a"}
	for i, name := range names {
		for v := range i%3 + 1 {
			check(db.CreatePlugin(ctx, storage.Plugin{Name: name, Version: fmt.Sprintf("%d.0.0", v), ABIVersion: "1.0",
				Manifest: "{}", CreatedAt: base.Add(time.Duration(v%2) * time.Hour)}))(t) // ties on created_at
		}
	}
	all := check(db.ListPlugins(ctx))(t)
	byID := func(p storage.Plugin) string { return p.ID }
	for _, limit := range []int{1, 2, 3, len(names), len(names) + 1} {
		var got []storage.Plugin
		after := ""
		for pages := 0; ; pages++ {
			if pages > len(names)+1 {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			page := check(db.ListPluginsPage(ctx, storage.PluginPage{AfterName: after, Limit: limit}))(t)
			var pageNames []string
			for _, p := range page {
				if !slices.Contains(pageNames, p.Name) {
					pageNames = append(pageNames, p.Name)
				}
			}
			if len(pageNames) > limit {
				t.Fatalf("limit %d: page of names %v", limit, pageNames)
			}
			got = append(got, page...)
			if len(pageNames) < limit {
				break
			}
			after = pageNames[len(pageNames)-1]
		}
		if g, w := ids(got, byID), ids(all, byID); !slices.Equal(g, w) {
			t.Fatalf("limit %d: pages %v, ListPlugins %v", limit, g, w)
		}
	}
	if got := check(db.ListPluginsPage(ctx, storage.PluginPage{AfterName: "zz"}))(t); len(got) != 0 {
		t.Fatalf("after the last name: %d plugins", len(got))
	}
	if got := check(db.ListPluginsPage(ctx, storage.PluginPage{}))(t); len(got) != len(all) {
		t.Fatalf("default page: %d plugins, want %d", len(got), len(all))
	}
}
