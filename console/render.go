package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// page is what every template gets.
type page struct {
	Title    string
	Nav      string // "exports" or "plugins": the current section
	CSRF     string
	SignedIn bool
	CanWrite bool
	CanAdmin bool
	Flash    string
	Error    *apiError
	Data     any
}

type templates struct {
	pages map[string]*template.Template
}

var funcs = template.FuncMap{
	"fmtTime":  fmtTime,
	"fmtTimeP": fmtTimeP,
	"fmtStamp": fmtStamp,
	"fmtRange": fmtRange,
	"trunc": func(n int, s string) string {
		if r := []rune(s); len(r) > n {
			return string(r[:n]) + "…"
		}
		return s
	},
	"bytes": fmtBytes,
	"stateClass": func(s string) string {
		return "state-" + strings.ToLower(s)
	},
	"query":   url.QueryEscape,
	"join":    strings.Join,
	"add":     func(a, b int) int { return a + b },
	"list":    func(v ...string) []string { return v },
	"percent": func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
}

func mustTemplates() *templates {
	t := &templates{pages: map[string]*template.Template{}}
	names, err := templateFS.ReadDir("templates")
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		name := n.Name()
		if name == "layout.html" || strings.HasPrefix(name, "_") {
			continue
		}
		tt := template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/_*.html", "templates/"+name))
		t.pages[strings.TrimSuffix(name, ".html")] = tt
	}
	return t
}

// render writes a page with the layout (or, with fragment, only the named block).
func (c *Console) render(w http.ResponseWriter, status int, name string, p page, s *session) {
	c.renderBlock(w, status, name, "layout", p, s)
}

func (c *Console) renderBlock(w http.ResponseWriter, status int, name, block string, p page, s *session) {
	if s != nil {
		p.SignedIn, p.CSRF, p.CanWrite, p.CanAdmin = true, s.csrf, s.canWrite, s.canAdmin
	}
	t := c.tmpl.pages[name]
	var buf bytes.Buffer
	if t == nil {
		c.log.Error("console: no template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, block, p); err != nil {
		c.log.Error("console: render", "name", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// fail renders an error page with the status.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	c.render(w, status, "error", page{Title: http.StatusText(status), Error: &apiError{Status: status, Message: msg}}, s)
}

// apiFail renders the API's error as a page with the API's status; a 401 (the token was
// revoked) ends the session.
func (c *Console) apiFail(w http.ResponseWriter, r *http.Request, s *session, e *apiError) {
	if e.Status == http.StatusUnauthorized && s != nil {
		c.dropSession(s)
		setCookie(w, r, SessionCookie, "", -1)
		s = nil
	}
	c.render(w, e.Status, "error", page{Title: http.StatusText(e.Status), Error: e}, s)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// fmtRange shows an interval compactly: the end without its date when on the same day.
func fmtRange(a, b time.Time) string {
	a, b = a.UTC(), b.UTC()
	if a.Format("2006-01-02") == b.Format("2006-01-02") || b.Equal(a.Truncate(24*time.Hour).Add(24*time.Hour)) {
		end := b.Format("15:04")
		if b.Second() != 0 {
			end = b.Format("15:04:05")
		}
		return a.Format("2006-01-02 15:04") + " → " + end + " UTC"
	}
	return a.Format("2006-01-02 15:04") + " → " + b.Format("2006-01-02 15:04") + " UTC"
}

func fmtTimeP(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return fmtTime(*t)
}

// fmtStamp is a compact UTC time for table cells: "Nov 20 10:10:00".
func fmtStamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "—"
	}
	return t.UTC().Format("Jan 2 15:04:05")
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
