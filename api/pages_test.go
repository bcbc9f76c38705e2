package api_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

// tie gives row i one of a few instants, several rows each: ties on created_at
// that only the id orders.
func tie(i int) time.Time {
	return time.Date(2026, 11, 1, 0, 0, i/3, 250_000_000, time.UTC)
}

// setCreatedAt rewrites a row's created_at (the repository stamps its own clock).
func (e *env) setCreatedAt(table, id string, at time.Time) {
	e.t.Helper()
	res := e.db.Gorm().Exec("UPDATE "+table+" SET created_at = ? WHERE id = ?", at, id)
	if res.Error != nil || res.RowsAffected != 1 {
		e.t.Fatalf("set %s %s created_at: %v", table, id, res.Error)
	}
}

// keyOrder sorts ids by (created_at, id), newest first when desc.
func keyOrder(at map[string]time.Time, desc bool) []string {
	var ids []string
	for id := range at {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		c := at[a].Compare(at[b])
		if c == 0 {
			c = strings.Compare(a, b)
		}
		if desc {
			c = -c
		}
		return c
	})
	return ids
}

// pages follows next_cursor from path (with limit) to the last page and returns
// each page's results' key field. Every page but the last is full; the last has a
// null next_cursor.
func (e *env) pages(path string, limit int, key string) [][]string {
	e.t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	var out [][]string
	cursor := ""
	for range 100 {
		u := fmt.Sprintf("%s%slimit=%d", path, sep, limit)
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		m := e.must("GET", u, nil, http.StatusOK).json(e.t)
		var page []string
		for _, r := range m["results"].([]any) {
			page = append(page, r.(map[string]any)[key].(string))
		}
		if len(page) > limit {
			e.t.Fatalf("%s: %d results, limit %d", u, len(page), limit)
		}
		out = append(out, page)
		next, isStr := m["next_cursor"].(string)
		if m["next_cursor"] != nil && (!isStr || next == "") {
			e.t.Fatalf("%s: next_cursor %v", u, m["next_cursor"])
		}
		if !isStr {
			return out
		}
		if len(page) != limit {
			e.t.Fatalf("%s: %d results and a next_cursor, want a full page of %d", u, len(page), limit)
		}
		cursor = next
	}
	e.t.Fatalf("%s: paging does not end", path)
	return nil
}

func flat(pages [][]string) []string {
	var out []string
	for _, p := range pages {
		out = append(out, p...)
	}
	return out
}

// checkPageParams: limit outside 1-500 or not a number, and any cursor that is not a
// next_cursor, are 400s naming the parameter; the bounds themselves are accepted.
func checkPageParams(t *testing.T, e *env, path string, badCursors ...string) {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	bad := func(query, field string) {
		t.Helper()
		r := e.do("GET", path+sep+query, nil)
		if r.Status != http.StatusBadRequest {
			t.Fatalf("%s: status %d, want 400: %s", query, r.Status, r.Body)
		}
		ae := r.err(t)
		if !slices.Equal(ae.fieldNames(), []string{field}) || !strings.Contains(ae.Message, field) {
			t.Fatalf("%s: error %s, want one naming %s", query, r.Body, field)
		}
	}
	for _, l := range []string{"0", "-1", "501", "x", "1.5"} {
		bad("limit="+l, "limit")
	}
	for _, l := range []string{"1", "500"} {
		e.must("GET", path+sep+"limit="+l, nil, http.StatusOK)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	cursors := append([]string{"!!not-base64!!", b64("garbage|"), b64("2026-11-01T00:00:00Z|not-a-uuid"),
		b64("yesterday|0b5c6e2e-3b0a-4d5c-8f6e-2a1b3c4d5e6f")}, badCursors...)
	for _, c := range cursors {
		bad("cursor="+url.QueryEscape(c), "cursor")
	}
}

func TestExportsPaged(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	at := map[string]time.Time{}
	paused := map[string]time.Time{}
	for i := range 7 {
		id := e.export(fmt.Sprintf("e%d", i))
		e.setCreatedAt("batch_exports", id, tie(i))
		at[id] = tie(i)
		if i%2 == 0 {
			e.must("POST", "/api/v1/batch_exports/"+id+"/pause", nil, http.StatusOK)
			paused[id] = tie(i)
		}
	}
	want := keyOrder(at, false) // oldest first
	for _, limit := range []int{1, 2, 3, 7} {
		pages := e.pages("/api/v1/batch_exports", limit, "id")
		if got := flat(pages); !slices.Equal(got, want) {
			t.Fatalf("limit %d: %v, want %v", limit, got, want)
		}
		if n := (7 + limit - 1) / limit; len(pages) != n {
			t.Fatalf("limit %d: %d pages, want %d", limit, len(pages), n)
		}
	}
	// Filters apply before the page: 4 paused exports in 2 full pages, the last with no cursor.
	pages := e.pages("/api/v1/batch_exports?paused=true", 2, "id")
	if got := flat(pages); len(pages) != 2 || !slices.Equal(got, keyOrder(paused, false)) {
		t.Fatalf("paused pages %v, want %v in 2 pages", pages, keyOrder(paused, false))
	}
	if got := flat(e.pages("/api/v1/batch_exports?destination_type=s3test&paused=false", 2, "id")); len(got) != 3 {
		t.Fatalf("unpaused s3test exports: %v", got)
	}
	if got := flat(e.pages("/api/v1/batch_exports?destination_type=webhook", 2, "id")); len(got) != 0 {
		t.Fatalf("webhook exports: %v", got)
	}
	// Deleting the export a cursor points at does not break the next page.
	first := e.must("GET", "/api/v1/batch_exports?limit=3", nil, 200).json(t)
	res := first["results"].([]any)
	e.must("DELETE", "/api/v1/batch_exports/"+res[2].(map[string]any)["id"].(string), nil, http.StatusNoContent)
	rest := e.must("GET", "/api/v1/batch_exports?limit=10&cursor="+first["next_cursor"].(string), nil, 200).json(t)
	var got []string
	for _, r := range rest["results"].([]any) {
		got = append(got, r.(map[string]any)["id"].(string))
	}
	if !slices.Equal(got, want[3:]) {
		t.Fatalf("after a deleted cursor row: %v, want %v", got, want[3:])
	}
	checkPageParams(t, e, "/api/v1/batch_exports")
}

func TestBackfillsPaged(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("bf")
	other := e.export("other")
	path := "/api/v1/batch_exports/" + id + "/backfills"
	at := map[string]time.Time{}
	for i := range 8 {
		body := fmt.Sprintf(`{"start_at": "2026-11-%02dT00:00:00Z", "end_at": "2026-11-%02dT02:00:00Z"}`, i+1, i+1)
		bid := e.must("POST", path, body, http.StatusCreated).json(t)["id"].(string)
		e.setCreatedAt("backfills", bid, tie(i))
		at[bid] = tie(i)
		e.must("POST", "/api/v1/batch_exports/"+other+"/backfills", body, http.StatusCreated)
	}
	want := keyOrder(at, true) // newest first
	for _, limit := range []int{1, 3, 4, 8} {
		if got := flat(e.pages(path, limit, "id")); !slices.Equal(got, want) {
			t.Fatalf("limit %d: %v, want %v", limit, got, want)
		}
	}
	// Each result keeps its progress.
	r := e.must("GET", path+"?limit=2", nil, 200).json(t)
	for _, b := range r["results"].([]any) {
		if p := b.(map[string]any)["progress"].(map[string]any); p["total_runs"].(float64) != 2 {
			t.Fatalf("progress %v", p)
		}
	}
	checkPageParams(t, e, path)
	e.must("GET", "/api/v1/batch_exports/"+strings.Repeat("0", 8)+"-0000-0000-0000-000000000000/backfills?limit=2", nil, http.StatusNotFound)
}

func TestTokensPaged(t *testing.T) {
	e := newEnv(t)
	at := map[string]time.Time{}
	for i := range 7 {
		id, _ := e.token("read")
		e.setCreatedAt("api_tokens", id, tie(i))
		at[id] = tie(i)
	}
	want := keyOrder(at, false) // oldest first
	for _, limit := range []int{1, 2, 3, 7} {
		if got := flat(e.pages("/api/v1/tokens", limit, "id")); !slices.Equal(got, want) {
			t.Fatalf("limit %d: %v, want %v", limit, got, want)
		}
	}
	checkPageParams(t, e, "/api/v1/tokens")

	// The default page is 100 tokens.
	for i := range 100 {
		if _, _, err := e.db.CreateAPIToken(context.Background(), fmt.Sprintf("bulk%d", i), []string{storage.ScopeRead}); err != nil {
			t.Fatal(err)
		}
	}
	m := e.must("GET", "/api/v1/tokens", nil, 200).json(t)
	if n := len(m["results"].([]any)); n != 100 || m["next_cursor"] == nil {
		t.Fatalf("default page: %d tokens, next_cursor %v", n, m["next_cursor"])
	}
	m = e.must("GET", "/api/v1/tokens?cursor="+m["next_cursor"].(string), nil, 200).json(t)
	if n := len(m["results"].([]any)); n != 7 || m["next_cursor"] != nil {
		t.Fatalf("second default page: %d tokens, next_cursor %v", n, m["next_cursor"])
	}
}

func TestPluginsPaged(t *testing.T) {
	e := newEnv(t)
	names := []string{"webhook", "s3test", "a-b", "a_b", "bq", "zz"}
	for i, name := range names {
		for v := range i%3 + 1 {
			m := webhookManifest
			m.Name, m.Version = name, fmt.Sprintf("%d.0.0", v)
			e.plugin(m)
		}
	}
	want := slices.Clone(names)
	slices.Sort(want)
	for _, limit := range []int{1, 2, 4, 6} {
		pages := e.pages("/api/v1/plugins", limit, "name")
		if got := flat(pages); !slices.Equal(got, want) {
			t.Fatalf("limit %d: %v, want %v", limit, got, want)
		}
	}
	// Every version of a name comes with it, on its page.
	m := e.must("GET", "/api/v1/plugins?limit=2", nil, 200).json(t)
	m = e.must("GET", "/api/v1/plugins?limit=2&cursor="+m["next_cursor"].(string), nil, 200).json(t)
	for _, p := range m["results"].([]any) {
		p := p.(map[string]any)
		i := slices.Index(names, p["name"].(string))
		if vs := p["versions"].([]any); len(vs) != i%3+1 {
			t.Fatalf("%s: %d versions, want %d", p["name"], len(vs), i%3+1)
		}
	}
	checkPageParams(t, e, "/api/v1/plugins", base64.RawURLEncoding.EncodeToString([]byte("Not A Name")))
}
