package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/storage"
)

type tokenView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	// Token is the plaintext, in the creation response only.
	Token string `json:"token,omitempty"`
}

func newTokenView(t storage.APIToken) tokenView {
	scopes := t.ScopeList()
	if scopes == nil {
		scopes = []string{}
	}
	return tokenView{ID: t.ID, Name: t.Name, Scopes: scopes, CreatedAt: t.CreatedAt, LastUsedAt: t.LastUsedAt}
}

var validScopes = []string{storage.ScopeRead, storage.ScopeWrite, storage.ScopeAdmin}

func (s *Server) createToken(c echo.Context) error {
	var body struct {
		Name   *string  `json:"name"`
		Scopes []string `json:"scopes"`
	}
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	var errs []FieldError
	if body.Name == nil || strings.TrimSpace(*body.Name) == "" {
		errs = append(errs, fieldErr("name", "required"))
	} else if len(*body.Name) > 200 {
		errs = append(errs, fieldErr("name", "must be at most 200 characters"))
	}
	if len(body.Scopes) == 0 {
		errs = append(errs, fieldErr("scopes", "at least one scope is required: read, write or admin"))
	}
	for i, sc := range body.Scopes {
		if !slices.Contains(validScopes, sc) {
			errs = append(errs, fieldErr("scopes["+itoa(int64(i))+"]", "unknown scope "+quote(sc)+": want read, write or admin"))
		}
	}
	if err := badFields(errs); err != nil {
		return err
	}
	t, plain, err := s.db.CreateAPIToken(c.Request().Context(), strings.TrimSpace(*body.Name), body.Scopes)
	if err != nil {
		return err
	}
	v := newTokenView(t)
	v.Token = plain
	return c.JSON(http.StatusCreated, v)
}

// listTokens: oldest first; limit (1-500, default 100) and cursor (next_cursor of
// the previous page: the (created_at, id) of its last token).
func (s *Server) listTokens(c echo.Context) error {
	var errs []FieldError
	page, limit := pageQuery(c, &errs)
	if err := badFields(errs); err != nil {
		return err
	}
	ts, err := s.db.ListAPITokensPage(c.Request().Context(), page)
	if err != nil {
		return err
	}
	ts, next := nextPage(ts, limit, func(t storage.APIToken) storage.Cursor {
		return storage.Cursor{CreatedAt: t.CreatedAt, ID: t.ID}
	})
	out := make([]tokenView, len(ts))
	for i, t := range ts {
		out[i] = newTokenView(t)
	}
	return c.JSON(http.StatusOK, list(out, next))
}

func (s *Server) deleteToken(c echo.Context) error {
	id, err := pathID(c, "token_id", "token")
	if err != nil {
		return err
	}
	if err := s.db.DeleteAPIToken(c.Request().Context(), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// listResponse is the envelope of every list.
type listResponse[T any] struct {
	Results    []T     `json:"results"`
	NextCursor *string `json:"next_cursor"`
}

func list[T any](items []T, next string) listResponse[T] {
	if items == nil {
		items = []T{}
	}
	r := listResponse[T]{Results: items}
	if next != "" {
		r.NextCursor = &next
	}
	return r
}

func quote(s string) string { return `"` + s + `"` }
