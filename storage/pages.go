package storage

import (
	"time"

	"gorm.io/gorm"
)

// DefaultPageLimit is the size of a page of ListExportsPage, ListBackfillsPage,
// ListAPITokensPage and ListPluginsPage when Page.Limit is 0.
const DefaultPageLimit = 100

// Cursor is the sort key of the last row of a page of a list ordered by
// (created_at, id): the next page starts right after it, so rows created in the
// same instant (a tie on created_at) page by id, none twice and none skipped.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// Page asks for one page of a keyset-paged list.
type Page struct {
	After *Cursor // nil: the first page
	Limit int     // at most this many rows; 0 means DefaultPageLimit
}

func (p Page) limit() int {
	if p.Limit <= 0 {
		return DefaultPageLimit
	}
	return p.Limit
}

// apply orders q by (created_at, id), newest first when desc, and keeps the rows
// after p.After and at most p.Limit of them.
func (p Page) apply(q *gorm.DB, desc bool) *gorm.DB {
	if c := p.After; c != nil {
		t := normTime(c.CreatedAt)
		cmp := ">"
		if desc {
			cmp = "<"
		}
		q = q.Where("(created_at "+cmp+" ? OR (created_at = ? AND id "+cmp+" ?))", t, t, c.ID)
	}
	if desc {
		q = q.Order("created_at DESC").Order("id DESC")
	} else {
		q = q.Order("created_at").Order("id")
	}
	return q.Limit(p.limit())
}
