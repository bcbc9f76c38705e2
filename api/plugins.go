package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/internal/configschema"
	"github.com/sluicehq/sluice/storage"
)

var pluginNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

type pluginView struct {
	ID           string        `json:"id"`
	Name         string        `json:"name"`
	Version      string        `json:"version"`
	ABIVersion   string        `json:"abi_version"`
	SHA256       string        `json:"sha256"`
	Capabilities []string      `json:"capabilities"`
	Description  string        `json:"description"`
	CreatedAt    time.Time     `json:"created_at"`
	Manifest     abi.Manifest  `json:"manifest"`
	Versions     []versionView `json:"versions,omitempty"`
}

type versionView struct {
	ID        string    `json:"id"`
	Version   string    `json:"version"`
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
	// Exports counts the live batch exports pinned to this version: it cannot be deleted
	// while any is.
	Exports int64 `json:"exports"`
}

func (s *Server) pluginView(c echo.Context, p storage.Plugin) (pluginView, error) {
	m, err := s.ctl.PluginManifest(c.Request().Context(), &p)
	if err != nil {
		return pluginView{}, err
	}
	caps := []string(p.Capabilities)
	if caps == nil {
		caps = []string{}
	}
	if m.Config == nil {
		m.Config = []abi.Field{}
	}
	if m.Capabilities == nil {
		m.Capabilities = []string{}
	}
	return pluginView{ID: p.ID, Name: p.Name, Version: p.Version, ABIVersion: p.ABIVersion, SHA256: p.SHA256,
		Capabilities: caps, Description: m.Description, CreatedAt: p.CreatedAt, Manifest: m}, nil
}

// installPlugin: multipart/form-data with a "module" file and "capabilities" (a comma
// list, repeated, or both).
func (s *Server) installPlugin(c echo.Context) error {
	r := c.Request()
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if referenceBody(mt) {
		return s.installPluginReference(c) // pluginref.go
	}
	if mt != "multipart/form-data" {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMedia,
			Message: "expected multipart/form-data with a \"module\" file (curl -F module=@plugin.wasm), or JSON with a \"reference\""}
	}
	if err := r.ParseMultipartForm(8 << 20); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return BadRequest("malformed multipart body: " + err.Error())
	}
	defer r.MultipartForm.RemoveAll()
	for k := range r.MultipartForm.Value {
		if k != "capabilities" && k != "signature" {
			return BadRequest("unknown field", fieldErr(k, "unknown field; expected module, capabilities and signature"))
		}
	}
	for k := range r.MultipartForm.File {
		if k != "module" && k != "signature" {
			return BadRequest("unknown field", fieldErr(k, "unknown file field; expected module or signature"))
		}
	}
	files := r.MultipartForm.File["module"]
	if len(files) != 1 {
		return BadRequest("module: exactly one module file is required", fieldErr("module", "exactly one WebAssembly module file is required"))
	}
	f, err := files[0].Open()
	if err != nil {
		return err
	}
	wasm, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return err
	}
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return BadRequest("module: not a WebAssembly binary", fieldErr("module", "not a WebAssembly binary (missing the \\0asm magic)"))
	}
	granted, err := grants(r.MultipartForm.Value["capabilities"])
	if err != nil {
		return err
	}
	sigs, err := formSignatures(r.MultipartForm) // pluginref.go
	if err != nil {
		return err
	}
	var p *storage.Plugin
	if len(sigs) > 0 {
		p, err = s.ctl.InstallPluginFrom(r.Context(), PluginSource{Module: wasm, Signatures: sigs}, granted)
	} else {
		p, err = s.ctl.InstallPlugin(r.Context(), wasm, granted)
	}
	if err != nil {
		return err
	}
	return s.installed(c, p)
}

// installed answers an install: 201 with the plugin.
func (s *Server) installed(c echo.Context, p *storage.Plugin) error {
	v, err := s.pluginView(c, *p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, v)
}

// grants parses capability grants: values each a comma list; names checked, each once.
func grants(values []string) ([]string, error) {
	granted := []string{}
	for _, v := range values {
		for _, cap := range strings.Split(v, ",") {
			cap = strings.TrimSpace(cap)
			if cap == "" {
				continue
			}
			if !pluginNameRE.MatchString(cap) {
				return nil, BadRequest("capabilities: invalid name", fieldErr("capabilities", "invalid capability name "+quote(cap)))
			}
			if !contains(granted, cap) {
				granted = append(granted, cap)
			}
		}
	}
	return granted, nil
}

// listPlugins: one item per plugin name (its latest version, with every version), by
// name; limit (1-500 names, default 100) and cursor (next_cursor of the previous page:
// the last name on it, which is the whole sort key since names are unique here).
func (s *Server) listPlugins(c echo.Context) error {
	var errs []FieldError
	limit := queryInt(c, "limit", listDefaultLimit, 1, listMaxLimit, &errs)
	page := storage.PluginPage{Limit: limit + 1}
	if cur := c.QueryParam("cursor"); cur != "" {
		name, ok := decodeCursor(cur)
		if !ok || !pluginNameRE.MatchString(name) {
			errs = append(errs, fieldErr("cursor", badCursor))
		}
		page.AfterName = name
	}
	if err := badFields(errs); err != nil {
		return err
	}
	all, err := s.db.ListPluginsPage(c.Request().Context(), page)
	if err != nil {
		return err
	}
	groups := groupByName(all)
	next := ""
	if len(groups) > limit {
		groups = groups[:limit]
		next = encodeCursor(groups[limit-1][0].Name)
	}
	out := []pluginView{}
	for _, group := range groups {
		v, err := s.pluginView(c, group[0])
		if err != nil {
			return err
		}
		if v.Versions, err = s.versions(c, group); err != nil {
			return err
		}
		out = append(out, v)
	}
	return c.JSON(http.StatusOK, list(out, next))
}

// groupByName splits ListPlugins' (or ListPluginsPage's) output (by name, newest first) into one slice per name.
func groupByName(all []storage.Plugin) [][]storage.Plugin {
	var out [][]storage.Plugin
	for _, p := range all {
		if n := len(out); n > 0 && out[n-1][0].Name == p.Name {
			out[n-1] = append(out[n-1], p)
			continue
		}
		out = append(out, []storage.Plugin{p})
	}
	return out
}

func (s *Server) versions(c echo.Context, group []storage.Plugin) ([]versionView, error) {
	ids := make([]string, len(group))
	for i, p := range group {
		ids[i] = p.ID
	}
	counts, err := s.db.CountExportsByPlugin(c.Request().Context(), ids)
	if err != nil {
		return nil, err
	}
	out := make([]versionView, len(group))
	for i, p := range group {
		out[i] = versionView{ID: p.ID, Version: p.Version, SHA256: p.SHA256, CreatedAt: p.CreatedAt, Exports: counts[p.ID]}
	}
	return out, nil
}

// pluginVersions returns every installed version of a name, newest first; 404 if none.
func (s *Server) pluginVersions(c echo.Context) ([]storage.Plugin, error) {
	name := c.Param("name")
	if !pluginNameRE.MatchString(name) {
		return nil, notFound("plugin")
	}
	all, err := s.db.ListPlugins(c.Request().Context())
	if err != nil {
		return nil, err
	}
	var out []storage.Plugin
	for _, p := range all {
		if p.Name == name {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, notFound("plugin " + quote(name))
	}
	return out, nil
}

func (s *Server) getPlugin(c echo.Context) error {
	group, err := s.pluginVersions(c)
	if err != nil {
		return err
	}
	v, err := s.pluginView(c, group[0])
	if err != nil {
		return err
	}
	if v.Versions, err = s.versions(c, group); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// pluginVersion returns the installed version of the :name and :version path parameters.
func (s *Server) pluginVersion(c echo.Context) (storage.Plugin, error) {
	name, version := c.Param("name"), c.Param("version")
	if !pluginNameRE.MatchString(name) || version == "" {
		return storage.Plugin{}, notFound("plugin version")
	}
	p, err := s.db.FindPluginVersion(c.Request().Context(), name, version, "")
	if err != nil {
		return storage.Plugin{}, notFoundAs(err, "plugin "+quote(name)+" version "+quote(version))
	}
	return p, nil
}

// getPluginVersion: one installed version, with its own manifest (the config schema an
// upgrade to it checks the export's config against).
func (s *Server) getPluginVersion(c echo.Context) error {
	p, err := s.pluginVersion(c)
	if err != nil {
		return err
	}
	v, err := s.pluginView(c, p)
	if err != nil {
		return err
	}
	if v.Versions, err = s.versions(c, []storage.Plugin{p}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// deletePluginVersion removes one version; 409 listing the live exports pinned to it.
func (s *Server) deletePluginVersion(c echo.Context) error {
	p, err := s.pluginVersion(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	q := url.Values{"destination_type": {p.Name}, "plugin_sha256": {p.SHA256}}
	if err := s.inUse(ctx, fmt.Sprintf("plugin %q version %q", p.Name, p.Version), storage.ExportFilter{PluginID: p.ID}, q); err != nil {
		return err
	}
	if err := s.db.DeletePlugin(ctx, p.ID); err != nil {
		if errors.Is(err, storage.ErrConflict) { // an export pinned it meanwhile
			if err := s.inUse(ctx, fmt.Sprintf("plugin %q version %q", p.Name, p.Version), storage.ExportFilter{PluginID: p.ID}, q); err != nil {
				return err
			}
		}
		return notFoundAs(err, "plugin version")
	}
	s.log.Info("api: plugin version deleted", "plugin", p.Name, "version", p.Version, "sha256", p.SHA256)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) pluginConfigDoc(c echo.Context) error {
	group, err := s.pluginVersions(c)
	if err != nil {
		return err
	}
	m, err := s.ctl.PluginManifest(c.Request().Context(), &group[0])
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "text/markdown; charset=utf-8", []byte(configschema.Markdown(m)))
}

// deletePlugin removes every version of a plugin; 409 while a (live) export uses one.
func (s *Server) deletePlugin(c echo.Context) error {
	ctx := c.Request().Context()
	group, err := s.pluginVersions(c)
	if err != nil {
		return err
	}
	// Every export of a plugin pins one of its versions, under the plugin's name.
	f := storage.ExportFilter{DestinationType: group[0].Name}
	q := url.Values{"destination_type": {group[0].Name}}
	if err := s.inUse(ctx, fmt.Sprintf("plugin %q", group[0].Name), f, q); err != nil {
		return err
	}
	for _, p := range group {
		if err := s.db.DeletePlugin(ctx, p.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
			if errors.Is(err, storage.ErrConflict) { // an export pinned it meanwhile
				if err := s.inUse(ctx, fmt.Sprintf("plugin %q", p.Name), f, q); err != nil {
					return err
				}
			}
			return err
		}
	}
	return c.NoContent(http.StatusNoContent)
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
