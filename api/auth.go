package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/storage"
)

// principal is who a request authenticated as.
type principal struct {
	tokenID string // "" for the admin token
	name    string
	token   storage.APIToken
	admin   bool // the SLUICE_API_TOKEN
}

func (p principal) has(scope string) bool {
	return p.admin || p.token.HasScope(scope)
}

const principalKey = "sluice.principal"

// auth requires a bearer token with scope. admin implies write and read; write implies
// read (storage.APIToken.HasScope). 401 without a valid token, 403 without the scope.
func (s *Server) auth(scope string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			tok, ok := bearer(c.Request())
			if !ok {
				return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
					Message: "missing bearer token: send Authorization: Bearer <token>"}
			}
			p, err := s.authenticate(c, tok)
			if err != nil {
				return err
			}
			if !p.has(scope) {
				return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
					Message: "this token lacks the " + scope + " scope"}
			}
			c.Set(principalKey, p)
			return next(c)
		}
	}
}

func (s *Server) authenticate(c echo.Context, tok string) (principal, error) {
	if s.cfg.AdminToken != "" {
		a, b := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.cfg.AdminToken))
		if subtle.ConstantTimeCompare(a[:], b[:]) == 1 {
			return principal{admin: true, name: "SLUICE_API_TOKEN"}, nil
		}
	}
	t, err := s.db.AuthenticateAPIToken(c.Request().Context(), tok)
	if errors.Is(err, storage.ErrNotFound) {
		return principal{}, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: "invalid token"}
	}
	if err != nil {
		return principal{}, err
	}
	return principal{tokenID: t.ID, name: t.Name, token: t}, nil
}

// bearer extracts the token of "Authorization: Bearer <token>" (scheme case-insensitive).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
