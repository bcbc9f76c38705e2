package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/internal/configschema"
	"github.com/sluicehq/sluice/storage"
)

// Connections (docs/api.md, "Connections"): named credential sets of one plugin that
// exports share. A connection holds the plugin's secret fields and the fields the host
// binds to a capability (configschema.ConnectionField); its secrets are sealed like an
// export's and never leave (secrets_set names those that have a value).

type connectionBody struct {
	Name   *string        `json:"name"`
	Type   *string        `json:"type"`
	Config map[string]any `json:"config"`
}

type connectionView struct {
	ID     string         `json:"id"`
	Name   string         `json:"name"`
	Type   string         `json:"type"`
	Config map[string]any `json:"config"`
	// SecretsSet names the secret fields that have a value (values never leave).
	SecretsSet []string  `json:"secrets_set"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// connectionManifest is the manifest of the connection's plugin (its latest version);
// nil when the plugin is no longer installed.
func (s *Server) connectionManifest(ctx context.Context, mc manifestCache, plugin string) (*storage.Plugin, *abi.Manifest, error) {
	p, err := s.db.GetLatestPluginByName(ctx, plugin)
	if isNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	m, err := s.manifestFor(ctx, mc, &p)
	return &p, m, err
}

func (s *Server) connectionView(ctx context.Context, mc manifestCache, cn storage.Connection) (connectionView, error) {
	st, err := storedConnection(cn)
	if err != nil {
		return connectionView{}, err
	}
	_, m, err := s.connectionManifest(ctx, mc, cn.PluginName)
	if err != nil {
		return connectionView{}, err
	}
	v := connectionView{ID: cn.ID, Name: cn.Name, Type: cn.PluginName, CreatedAt: cn.CreatedAt, UpdatedAt: cn.UpdatedAt}
	if m != nil {
		v.Config, v.SecretsSet = configschema.Redact(m.Config, st.Public), configschema.SecretsSet(m.Config, st.Secret)
	} else {
		// The plugin was deleted: secrets are never in the public part; name those set.
		v.Config, v.SecretsSet = st.Public, []string{}
		for k, x := range st.Secret {
			if x != nil && x != "" {
				v.SecretsSet = append(v.SecretsSet, k)
			}
		}
		sort.Strings(v.SecretsSet)
	}
	return v, nil
}

// storedConnection is a stored connection's config as configschema has it.
func storedConnection(cn storage.Connection) (configschema.Stored, error) {
	st := configschema.Stored{Public: map[string]any{}, Secret: cn.SecretConfig}
	if cn.Config != "" {
		if err := json.Unmarshal([]byte(cn.Config), &st.Public); err != nil {
			return st, fmt.Errorf("connection %s config: %w", cn.ID, err)
		}
	}
	if st.Secret == nil {
		st.Secret = map[string]any{}
	}
	return st, nil
}

func (s *Server) loadConnection(c echo.Context) (storage.Connection, error) {
	id, err := pathID(c, "id", "connection")
	if err != nil {
		return storage.Connection{}, err
	}
	cn, err := s.db.GetConnection(c.Request().Context(), id)
	if err != nil {
		return storage.Connection{}, notFoundAs(err, "connection")
	}
	return cn, nil
}

func connectionName(name *string, errs *[]FieldError) string {
	n := strings.TrimSpace(*name)
	switch {
	case n == "":
		*errs = append(*errs, fieldErr("name", "must not be empty"))
	case len(n) > 200:
		*errs = append(*errs, fieldErr("name", "must be at most 200 characters"))
	}
	return n
}

func (s *Server) createConnection(c echo.Context) error {
	ctx := c.Request().Context()
	var body connectionBody
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	var errs []FieldError
	cn := storage.Connection{}
	if body.Name == nil {
		errs = append(errs, fieldErr("name", "required"))
	} else {
		cn.Name = connectionName(body.Name, &errs)
	}
	var m *abi.Manifest
	if body.Type == nil || *body.Type == "" {
		errs = append(errs, fieldErr("type", "required: the name of an installed plugin"))
	} else {
		var err error
		if _, m, err = s.connectionManifest(ctx, manifestCache{}, *body.Type); err != nil {
			return err
		}
		if m == nil {
			errs = append(errs, fieldErr("type", fmt.Sprintf("unknown plugin %q: install it first (GET /api/v1/plugins lists them)", *body.Type)))
		}
		cn.PluginName = *body.Type
	}
	var st configschema.Stored
	if m != nil {
		in := body.Config
		if in == nil {
			in = map[string]any{}
		}
		var ferrs configschema.FieldErrors
		st, ferrs = configschema.ResolveConnection(m.Config, in, nil)
		errs = append(errs, ferrs.Prefix("config")...)
	}
	if err := badFields(errs); err != nil {
		return err
	}
	pub, err := json.Marshal(st.Public)
	if err != nil {
		return err
	}
	cn.Config, cn.SecretConfig = string(pub), st.Secret
	saved, err := s.db.CreateConnection(ctx, cn)
	if err != nil {
		return err
	}
	v, err := s.connectionView(ctx, manifestCache{}, saved)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, v)
}

// updateConnection merges the body into the connection (secrets omitted or sent as
// "********" are kept, null unsets a field). Every live export that uses the connection
// must still resolve (required fields) and pass its plugin's validation with the new
// fields, or nothing changes; runs pick the change up when they next start.
func (s *Server) updateConnection(c echo.Context) error {
	ctx := c.Request().Context()
	cn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	var body connectionBody
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	var errs []FieldError
	if body.Name != nil {
		cn.Name = connectionName(body.Name, &errs)
	}
	if body.Type != nil && *body.Type != cn.PluginName {
		errs = append(errs, fieldErr("type", fmt.Sprintf("a connection's type cannot change (it is %q): create another connection", cn.PluginName)))
	}
	mc := manifestCache{}
	var st configschema.Stored
	configChanged := body.Config != nil
	if configChanged {
		_, m, err := s.connectionManifest(ctx, mc, cn.PluginName)
		if err != nil {
			return err
		}
		if m == nil {
			return badFields(append(errs, fieldErr("config", fmt.Sprintf("the plugin %q is no longer installed: install it again to change the fields", cn.PluginName))))
		}
		prev, err := storedConnection(cn)
		if err != nil {
			return err
		}
		var ferrs configschema.FieldErrors
		st, ferrs = configschema.ResolveConnection(m.Config, body.Config, &prev)
		errs = append(errs, ferrs.Prefix("config")...)
	}
	if err := badFields(errs); err != nil {
		return err
	}
	cn.SecretConfig = nil // keep the stored secrets unless the config changes
	if configChanged {
		if err := s.checkConnectionUsers(ctx, mc, cn.ID, st); err != nil {
			return err
		}
		pub, err := json.Marshal(st.Public)
		if err != nil {
			return err
		}
		cn.Config, cn.SecretConfig = string(pub), st.Secret
	}
	saved, err := s.db.UpdateConnection(ctx, cn)
	if err != nil {
		return notFoundAs(err, "connection")
	}
	v, err := s.connectionView(ctx, mc, saved)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// checkConnectionUsers checks that every live export using the connection still has a
// complete config with the connection's new fields, and that its plugin accepts it.
func (s *Server) checkConnectionUsers(ctx context.Context, mc manifestCache, id string, conn configschema.Stored) error {
	users, err := s.db.ExportsUsingConnection(ctx, id)
	if err != nil {
		return err
	}
	var errs []FieldError
	for _, u := range users {
		e, err := s.db.GetExport(ctx, u.ID)
		if isNotFound(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		p, err := s.db.GetPlugin(ctx, e.PluginID)
		if err != nil {
			return err
		}
		m, err := s.manifestFor(ctx, mc, &p)
		if err != nil {
			return err
		}
		own, err := storedExportConfig(e)
		if err != nil {
			return err
		}
		eff, ferrs := configschema.Effective(m.Config, conn, own)
		for _, fe := range ferrs {
			errs = append(errs, fieldErr("config."+fe.Field, fmt.Sprintf("export %s (%q) would not run: %s", e.ID, e.Name, fe.Message)))
		}
		if len(ferrs) > 0 {
			continue
		}
		if err := s.ctl.ValidateDestination(ctx, &p, eff.Public, configschema.SecretsSet(m.Config, eff.Secret)); err != nil {
			var ae *Error
			if errors.As(err, &ae) {
				out := *ae
				out.Message = fmt.Sprintf("export %s (%q) would not run with this connection: %s", e.ID, e.Name, ae.Message)
				for i := range out.Fields {
					out.Fields[i].Field = "config." + strings.TrimPrefix(out.Fields[i].Field, "destination.config.")
				}
				return &out
			}
			return err
		}
	}
	return badFields(errs)
}

// storedExportConfig is an export's own config as configschema has it.
func storedExportConfig(e storage.BatchExport) (configschema.Stored, error) {
	st := configschema.Stored{Public: map[string]any{}, Secret: e.SecretConfig}
	if e.Config != "" {
		if err := json.Unmarshal([]byte(e.Config), &st.Public); err != nil {
			return st, fmt.Errorf("export %s config: %w", e.ID, err)
		}
	}
	if st.Secret == nil {
		st.Secret = map[string]any{}
	}
	return st, nil
}

func (s *Server) getConnection(c echo.Context) error {
	cn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	v, err := s.connectionView(c.Request().Context(), manifestCache{}, cn)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// listConnections: oldest first; filter type; limit and cursor as the other lists.
func (s *Server) listConnections(c echo.Context) error {
	ctx := c.Request().Context()
	var errs []FieldError
	page, limit := pageQuery(c, &errs)
	if err := badFields(errs); err != nil {
		return err
	}
	rows, err := s.db.ListConnectionsPage(ctx, storage.ConnectionFilter{PluginName: c.QueryParam("type")}, page)
	if err != nil {
		return err
	}
	rows, next := nextPage(rows, limit, func(cn storage.Connection) storage.Cursor {
		return storage.Cursor{CreatedAt: cn.CreatedAt, ID: cn.ID}
	})
	mc := manifestCache{}
	out := make([]connectionView, 0, len(rows))
	for _, cn := range rows {
		v, err := s.connectionView(ctx, mc, cn)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	return c.JSON(http.StatusOK, list(out, next))
}

// deleteConnection: 409 listing the live exports that use it.
func (s *Server) deleteConnection(c echo.Context) error {
	cn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	err = s.db.DeleteConnection(c.Request().Context(), cn.ID)
	var inUse *storage.ConnectionInUseError
	if errors.As(err, &inUse) {
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Exports: inUse.Exports,
			Message: fmt.Sprintf("the connection is used by %d export(s): change or delete them first", len(inUse.Exports))}
	}
	if err != nil {
		return notFoundAs(err, "connection")
	}
	return c.NoContent(http.StatusNoContent)
}

// testConnection runs the plugin's destination test with the connection alone: its
// fields, and those of an optional body {"config": {...}} (the export's own fields a
// test needs, such as a bucket the connection does not name; no secrets).
func (s *Server) testConnection(c echo.Context) error {
	ctx := c.Request().Context()
	cn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	var body struct {
		Config map[string]any `json:"config"`
	}
	if _, err := decodeOptionalJSON(c, &body); err != nil {
		return err
	}
	p, m, err := s.connectionManifest(ctx, manifestCache{}, cn.PluginName)
	if err != nil {
		return err
	}
	if m == nil {
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: fmt.Sprintf("the connection's plugin %q is no longer installed", cn.PluginName)}
	}
	conn, err := storedConnection(cn)
	if err != nil {
		return err
	}
	in := body.Config
	if in == nil {
		in = map[string]any{}
	}
	own, ferrs := configschema.ResolveOwn(m.Config, in, nil, nil)
	if len(ferrs) == 0 {
		var eff configschema.Stored
		if eff, ferrs = configschema.Effective(m.Config, conn, own); len(ferrs) == 0 {
			rep, err := s.ctl.TestConnection(ctx, p, eff)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, testReport(rep))
		}
	}
	return badFields(ferrs.Prefix("config"))
}
