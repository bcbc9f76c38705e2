package api

import (
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/storage"
)

// The lists of exports, backfills, plugins and tokens page with limit (1-500, the
// bound runs have) and cursor. The default page is 100: these lists came whole
// before, and a client that reads one page should keep seeing everything of a
// typical install.
const (
	listDefaultLimit = 100
	listMaxLimit     = 500
)

const badCursor = "invalid cursor: pass next_cursor from the previous page as is"

// pageQuery reads limit and cursor of a list ordered by (created_at, id). The page
// asks storage for limit+1 rows: the extra one tells whether a next page exists
// (see nextPage).
func pageQuery(c echo.Context, errs *[]FieldError) (storage.Page, int) {
	limit := queryInt(c, "limit", listDefaultLimit, 1, listMaxLimit, errs)
	p := storage.Page{Limit: limit + 1}
	if cur := c.QueryParam("cursor"); cur != "" {
		var ok bool
		if p.After, ok = decodeKeyCursor(cur); !ok {
			*errs = append(*errs, fieldErr("cursor", badCursor))
		}
	}
	return p, limit
}

// nextPage cuts rows (up to limit+1 of them) to limit and returns the next_cursor:
// the (created_at, id) of the last row kept, or "" when there is no next page.
func nextPage[T any](rows []T, limit int, key func(T) storage.Cursor) ([]T, string) {
	if len(rows) <= limit {
		return rows, ""
	}
	rows = rows[:limit]
	k := key(rows[limit-1])
	return rows, encodeCursor(k.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + k.ID)
}

// decodeKeyCursor reads a next_cursor of nextPage: "<RFC 3339 time>|<uuid>".
func decodeKeyCursor(cur string) (*storage.Cursor, bool) {
	txt, ok := decodeCursor(cur)
	if !ok {
		return nil, false
	}
	ts, id, ok := strings.Cut(txt, "|")
	if !ok {
		return nil, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return nil, false
	}
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return nil, false
	}
	return &storage.Cursor{CreatedAt: t.UTC(), ID: u.String()}, true
}
