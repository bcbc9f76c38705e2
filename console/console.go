// Package console is Sluice's web console: server-rendered pages (html/template, assets
// embedded with go:embed, a few lines of progressive JavaScript) over the REST API.
//
// The console owns no business rules. Every page calls the API in process (the
// http.Handler of api.New) with the signed-in user's own bearer token, so validation,
// scopes, errors and storage are exactly the API's: a field error the API names appears
// next to that field, a 403 from the API is a 403 page.
//
// Sign-in takes an API token. The token stays on the server, in an in-memory session
// whose random id is the HttpOnly, SameSite=Strict cookie; every form carries the
// session's CSRF token, checked on every POST. Sessions do not survive a restart.
package console

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Cookie names.
const (
	SessionCookie  = "sluice_session"
	preCSRFCookie  = "sluice_signin_csrf"
	csrfField      = "csrf_token"
	defaultSession = 12 * time.Hour
)

// Config configures the console. Zero values take the defaults.
type Config struct {
	// SessionTTL is how long a sign-in lasts (default 12h).
	SessionTTL time.Duration
	// Now is the clock used for next-run times and session expiry. Default time.Now.
	Now func() time.Time
	// Logger receives internal errors. Default slog.Default().
	Logger *slog.Logger
}

// Console serves the pages. Create it with New.
type Console struct {
	cfg  Config
	api  http.Handler
	mux  *http.ServeMux
	tmpl *templates
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
}

// session is one sign-in. The token never leaves the server.
type session struct {
	id       string
	token    string
	csrf     string
	canWrite bool
	canAdmin bool
	expires  time.Time
}

// New builds the console over api, the REST API's handler (api.New(...).Handler()).
func New(cfg Config, api http.Handler) *Console {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = defaultSession
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Console{cfg: cfg, api: api, mux: http.NewServeMux(), log: cfg.Logger, sessions: map[string]*session{}}
	c.tmpl = mustTemplates()
	c.routes()
	return c
}

// consolePrefixes are the paths the console owns; everything else goes to the API.
var consolePrefixes = []string{"/signin", "/signout", "/static/", "/exports", "/plugins"}

// Handler serves the console at "/" and passes every other path (/api/v1/..., /healthz,
// /metrics, /capture, ...) to the API handler given to New.
func (c *Console) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "/" {
			c.mux.ServeHTTP(w, r)
			return
		}
		for _, pre := range consolePrefixes {
			if p == strings.TrimSuffix(pre, "/") || strings.HasPrefix(p, pre) {
				c.mux.ServeHTTP(w, r)
				return
			}
		}
		c.api.ServeHTTP(w, r)
	})
}

func (c *Console) routes() {
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	c.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/exports", http.StatusSeeOther)
	})
	c.mux.HandleFunc("GET /signin", c.signinPage)
	c.mux.HandleFunc("POST /signin", c.signin)
	c.mux.HandleFunc("POST /signout", c.post(c.signout))

	c.mux.HandleFunc("GET /exports", c.get(c.exportsPage))
	c.mux.HandleFunc("GET /exports/new", c.get(c.newExportPage))
	c.mux.HandleFunc("POST /exports/new", c.post(c.createExport))
	c.mux.HandleFunc("GET /exports/{id}", c.get(c.exportPage))
	c.mux.HandleFunc("GET /exports/{id}/runs-fragment", c.get(c.runsFragment))
	c.mux.HandleFunc("GET /exports/{id}/edit", c.get(c.editExportPage))
	c.mux.HandleFunc("POST /exports/{id}/edit", c.post(c.updateExport))
	c.mux.HandleFunc("POST /exports/{id}/pause", c.post(c.exportAction("pause")))
	c.mux.HandleFunc("POST /exports/{id}/unpause", c.post(c.exportAction("unpause")))
	c.mux.HandleFunc("POST /exports/{id}/test", c.post(c.testExport))
	c.mux.HandleFunc("GET /exports/{id}/delete", c.get(c.deleteExportPage))
	c.mux.HandleFunc("POST /exports/{id}/delete", c.post(c.deleteExport))
	c.mux.HandleFunc("POST /exports/{id}/backfills", c.post(c.createBackfill))
	c.mux.HandleFunc("POST /exports/{id}/backfills/{bid}/cancel", c.post(c.cancelBackfill))
	c.mux.HandleFunc("GET /exports/{id}/runs/{rid}", c.get(c.runPage))
	c.mux.HandleFunc("POST /exports/{id}/runs/{rid}/retry", c.post(c.runAction("retry")))
	c.mux.HandleFunc("POST /exports/{id}/runs/{rid}/cancel", c.post(c.runAction("cancel")))

	c.mux.HandleFunc("GET /plugins", c.get(c.pluginsPage))
	c.mux.HandleFunc("POST /plugins", c.post(c.installPlugin))
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// ---- sessions and CSRF ----

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

func (c *Console) lookup(r *http.Request) *session {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if c.cfg.Now().After(s.expires) {
		delete(c.sessions, ck.Value)
		return nil
	}
	return s
}

func (c *Console) newSession(token string, canWrite, canAdmin bool) *session {
	s := &session{id: randomHex(32), token: token, csrf: randomHex(32), canWrite: canWrite, canAdmin: canAdmin,
		expires: c.cfg.Now().Add(c.cfg.SessionTTL)}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	for id, old := range c.sessions { // drop expired sessions now and then
		if now.After(old.expires) {
			delete(c.sessions, id)
		}
	}
	c.sessions[s.id] = s
	return s
}

func (c *Console) dropSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, s.id)
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// sameOrigin refuses a cross-site POST whose Origin header names another host (a second
// line of defence after SameSite=Strict and the CSRF token).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	o = strings.TrimPrefix(strings.TrimPrefix(o, "http://"), "https://")
	return o == r.Host
}

type handler func(w http.ResponseWriter, r *http.Request, s *session)

// get requires a session; without one it redirects to the sign-in page.
func (c *Console) get(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.lookup(r)
		if s == nil {
			http.Redirect(w, r, "/signin?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		securityHeaders(w)
		h(w, r, s)
	}
}

// post requires a session and the session's CSRF token in the form: 403 otherwise.
func (c *Console) post(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		s := c.lookup(r)
		if s == nil {
			c.fail(w, r, nil, http.StatusUnauthorized, "Your session has ended: sign in again.")
			return
		}
		// Multipart bodies (plugin uploads) are parsed by the handler; the token is
		// read from the form either way.
		var tok string
		if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
			r.Body = http.MaxBytesReader(w, r.Body, 65<<20)
			if err := r.ParseMultipartForm(32 << 20); err == nil {
				tok = r.FormValue(csrfField)
			}
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			tok = r.PostFormValue(csrfField)
		}
		if !sameOrigin(r) || tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) != 1 {
			c.fail(w, r, s, http.StatusForbidden, "The form's CSRF token is missing or wrong: reload the page and try again.")
			return
		}
		h(w, r, s)
	}
}

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// ---- in-process API calls ----

// apiError is the API's error body.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Fields  []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"fields"`
}

func (e *apiError) Error() string { return e.Message }

// fieldMap maps each field the API named to its message.
func (e *apiError) fieldMap() map[string]string {
	m := map[string]string{}
	if e == nil {
		return m
	}
	for _, f := range e.Fields {
		if m[f.Field] == "" {
			m[f.Field] = f.Message
		} else {
			m[f.Field] += "; " + f.Message
		}
	}
	return m
}

// call sends one request to the API in process with the session's token. body is
// JSON-encoded unless it is an io.Reader (sent as is with contentType). out, if not nil,
// receives the decoded 2xx body. A non-2xx answer is an *apiError.
func (c *Console) call(r *http.Request, token, method, path string, body any, contentType string, out any) *apiError {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd = b
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return &apiError{Status: 500, Code: "internal", Message: err.Error()}
		}
		rd = bytes.NewReader(raw)
		contentType = "application/json"
	}
	req := httptest.NewRequestWithContext(r.Context(), method, path, rd)
	req.RemoteAddr = r.RemoteAddr
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	c.api.ServeHTTP(rec, req)
	if rec.Code >= 200 && rec.Code < 300 {
		if out != nil && rec.Body.Len() > 0 {
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
				c.log.Error("console: decode API answer", "path", path, "err", err)
				return &apiError{Status: 500, Code: "internal", Message: "unexpected answer from the API"}
			}
		}
		return nil
	}
	var wrap struct {
		Error apiError `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &wrap); err != nil || wrap.Error.Message == "" {
		wrap.Error = apiError{Code: "internal", Message: http.StatusText(rec.Code)}
	}
	wrap.Error.Status = rec.Code
	return &wrap.Error
}

// api calls the API with the session's token.
func (c *Console) apiCall(r *http.Request, s *session, method, path string, body, out any) *apiError {
	return c.call(r, s.token, method, path, body, "", out)
}
