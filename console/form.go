package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/schedule"
)

// formField is one input generated from a manifest config field. Name is the API's
// dotted path ("destination.config.bucket_name"), so the API's field errors land on it.
type formField struct {
	Name        string
	Key         string
	Type        string // manifest type
	Kind        string // text, number, checkbox, select, password, textarea
	Value       string
	Checked     bool
	Options     []string
	Blank       bool // a select with an empty choice (optional enum without default)
	Required    bool
	Secret      bool
	SecretSet   bool
	Description string
	Default     string
	Error       string
}

// exportForm is the create/edit form.
type exportForm struct {
	Edit      bool
	ID        string
	Types     []string
	Type      string
	Name      string
	Interval  string
	Intervals []string
	Timezone  string
	Offset    string
	StartAt   string
	EndAt     string
	TeamID    string
	Include   string
	Exclude   string
	Paused    bool
	Config    []formField
	Errors    map[string]string
	// Other lists the API's field errors that no input shows.
	Other []string
}

const cfgPrefix = "destination.config."

// schemaFields builds the config inputs of a manifest, filled from values (the stored
// config, or what was just posted).
func schemaFields(m abi.Manifest, values map[string]any, secretsSet []string) []formField {
	out := make([]formField, 0, len(m.Config))
	for _, f := range m.Config {
		ff := formField{Name: cfgPrefix + f.Name, Key: f.Name, Type: f.Type, Required: f.Required, Secret: f.Secret,
			Description: f.Description, SecretSet: slices.Contains(secretsSet, f.Name)}
		if f.Default != nil {
			ff.Default = valueString(f.Type, f.Default)
		}
		v, has := values[f.Name]
		if !has && f.Default != nil {
			v, has = f.Default, true
		}
		switch {
		case f.Secret:
			ff.Kind = "password" // never filled
		case len(f.Enum) > 0:
			ff.Kind, ff.Options, ff.Blank = "select", f.Enum, !f.Required && f.Default == nil
		case f.Type == abi.TypeBoolean:
			ff.Kind = "checkbox"
			b, _ := v.(bool)
			ff.Checked = b
		case f.Type == abi.TypeInteger || f.Type == abi.TypeNumber:
			ff.Kind = "number"
		case f.Type == abi.TypeStringList || f.Type == abi.TypeObject:
			ff.Kind = "textarea"
		default:
			ff.Kind = "text"
		}
		if has && !f.Secret && v != nil {
			ff.Value = valueString(f.Type, v)
		}
		out = append(out, ff)
	}
	return out
}

// valueString shows a config value in its input.
func valueString(typ string, v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		if typ == abi.TypeStringList {
			parts := make([]string, len(x))
			for i, p := range x {
				parts[i] = fmt.Sprint(p)
			}
			return strings.Join(parts, "\n")
		}
	case []string:
		return strings.Join(x, "\n")
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool, int, int64:
		return fmt.Sprint(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// configFromForm reads the config inputs. Empty inputs are left out (create) or null
// (edit: the default applies again); an empty secret is always left out, which keeps
// the stored one. Values that do not parse as their type are sent as typed, for the
// API to refuse with its own message.
func configFromForm(form url.Values, m abi.Manifest, edit bool) (map[string]any, map[string]any) {
	cfg := map[string]any{}
	posted := map[string]any{} // for re-rendering after an error (never secrets)
	for _, f := range m.Config {
		raw := form.Get(cfgPrefix + f.Name)
		if f.Type == abi.TypeBoolean && len(f.Enum) == 0 {
			b := form.Get(cfgPrefix+f.Name) != ""
			cfg[f.Name], posted[f.Name] = b, b
			continue
		}
		if f.Type != abi.TypeStringList && f.Type != abi.TypeObject {
			raw = strings.TrimSpace(raw)
		}
		if f.Secret {
			if raw != "" {
				cfg[f.Name] = raw
			}
			continue
		}
		posted[f.Name] = raw
		if strings.TrimSpace(raw) == "" {
			if edit {
				cfg[f.Name] = nil
			}
			continue
		}
		switch f.Type {
		case abi.TypeInteger:
			if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
				cfg[f.Name] = n
				continue
			}
		case abi.TypeNumber:
			if n, err := strconv.ParseFloat(raw, 64); err == nil {
				cfg[f.Name] = n
				continue
			}
		case abi.TypeBoolean:
			if b, err := strconv.ParseBool(raw); err == nil {
				cfg[f.Name] = b
				continue
			}
		case abi.TypeStringList:
			var items []string
			for _, line := range strings.Split(raw, "\n") {
				if line = strings.TrimSpace(line); line != "" {
					items = append(items, line)
				}
			}
			cfg[f.Name] = items
			continue
		case abi.TypeObject:
			var obj any
			if json.Unmarshal([]byte(raw), &obj) == nil {
				cfg[f.Name] = obj
				continue
			}
		}
		cfg[f.Name] = raw
	}
	return cfg, posted
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' }) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// pluginFor finds a plugin by name.
func pluginFor(pl []pluginView, name string) (pluginView, bool) {
	for _, p := range pl {
		if p.Name == name {
			return p, true
		}
	}
	return pluginView{}, false
}

func pluginNames(pl []pluginView) []string {
	out := make([]string, len(pl))
	for i, p := range pl {
		out[i] = p.Name
	}
	return out
}

func (c *Console) newExportPage(w http.ResponseWriter, r *http.Request, s *session) {
	pl, e := c.loadPlugins(r, s)
	if e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	typ := r.URL.Query().Get("type")
	if _, ok := pluginFor(pl, typ); !ok {
		typ = ""
		if _, ok := pluginFor(pl, "s3"); ok {
			typ = "s3"
		} else if len(pl) > 0 {
			typ = pl[0].Name
		}
	}
	p, _ := pluginFor(pl, typ)
	f := exportForm{Types: pluginNames(pl), Type: typ, Interval: schedule.IntervalHour, Intervals: schedule.Intervals,
		Timezone: "UTC", Offset: "0", Config: schemaFields(p.Manifest, nil, nil), Errors: map[string]string{}}
	c.render(w, http.StatusOK, "exportform", page{Title: "New export", Nav: "exports", Data: f}, s)
}

// readExportForm builds the API body from the posted form, and the form to show again.
func readExportForm(r *http.Request, p pluginView, edit bool, cur *exportView) (map[string]any, exportForm) {
	form := r.PostForm
	f := exportForm{Edit: edit, Type: p.Name, Name: form.Get("name"), Interval: form.Get("interval"), Intervals: schedule.Intervals,
		Timezone: form.Get("timezone"), Offset: form.Get("interval_offset"), StartAt: form.Get("start_at"), EndAt: form.Get("end_at"),
		TeamID: form.Get("team_id"), Include: form.Get("include_events"), Exclude: form.Get("exclude_events"),
		Paused: form.Get("paused") != ""}
	cfg, posted := configFromForm(form, p.Manifest, edit)
	var secrets []string
	if cur != nil {
		secrets = cur.Destination.SecretsSet
	}
	f.Config = schemaFields(p.Manifest, posted, secrets)

	body := map[string]any{"name": f.Name, "interval": f.Interval, "paused": f.Paused}
	if tz := strings.TrimSpace(f.Timezone); tz != "" {
		body["timezone"] = tz
	}
	loc := location(f.Timezone)
	if off := strings.TrimSpace(f.Offset); off != "" {
		if n, err := strconv.ParseInt(off, 10, 64); err == nil {
			body["interval_offset"] = n
		} else {
			body["interval_offset"] = off
		}
	} else if edit {
		body["interval_offset"] = 0
	}
	for key, v := range map[string]string{"start_at": f.StartAt, "end_at": f.EndAt} {
		if t := localToAPI(v, loc); t != nil || edit {
			body[key] = t
		}
	}
	if tid := strings.TrimSpace(f.TeamID); tid != "" {
		if n, err := strconv.ParseInt(tid, 10, 64); err == nil {
			body["team_id"] = n
		} else {
			body["team_id"] = tid
		}
	} else if edit && cur != nil && cur.TeamID != nil {
		body["team_id"] = nil
	}
	filters := map[string]any{"include_events": splitList(f.Include), "exclude_events": splitList(f.Exclude)}
	if cur != nil && len(cur.Filters.Properties) > 0 && string(cur.Filters.Properties) != "null" {
		filters["properties"] = cur.Filters.Properties
	}
	body["filters"] = filters
	dest := map[string]any{"config": cfg}
	if !edit {
		dest["type"] = p.Name
	}
	body["destination"] = dest
	return body, f
}

// showErrors puts the API's field errors next to their inputs; the others are listed.
func (f *exportForm) showErrors(e *apiError) {
	f.Errors = e.fieldMap()
	known := map[string]bool{"name": true, "interval": true, "timezone": true, "interval_offset": true, "start_at": true,
		"end_at": true, "team_id": true, "paused": true}
	for i := range f.Config {
		if msg, ok := f.Errors[f.Config[i].Name]; ok {
			f.Config[i].Error = msg
			known[f.Config[i].Name] = true
		}
	}
	for _, k := range sortedKeys(f.Errors) {
		switch {
		case known[k]:
		case strings.HasPrefix(k, "filters.include_events"):
			f.Errors["include_events"] = f.Errors[k]
		case strings.HasPrefix(k, "filters.exclude_events"):
			f.Errors["exclude_events"] = f.Errors[k]
		default:
			f.Other = append(f.Other, k+": "+f.Errors[k])
		}
	}
}

func (c *Console) createExport(w http.ResponseWriter, r *http.Request, s *session) {
	pl, e := c.loadPlugins(r, s)
	if e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	typ := r.PostFormValue("type")
	p, ok := pluginFor(pl, typ)
	if !ok {
		p = pluginView{Name: typ}
	}
	body, f := readExportForm(r, p, false, nil)
	f.Types = pluginNames(pl)
	var created exportView
	e = c.apiCall(r, s, http.MethodPost, apiBase, body, &created)
	if e == nil {
		http.Redirect(w, r, "/exports/"+created.ID+"?msg=created", http.StatusSeeOther)
		return
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		c.apiFail(w, r, s, e)
		return
	}
	f.showErrors(e)
	c.render(w, e.Status, "exportform", page{Title: "New export", Nav: "exports", Error: e, Data: f}, s)
}

func (c *Console) editExportPage(w http.ResponseWriter, r *http.Request, s *session) {
	var ex exportView
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+url.PathEscape(r.PathValue("id")), nil, &ex); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	var p pluginView
	if e := c.apiCall(r, s, http.MethodGet, "/api/v1/plugins/"+url.PathEscape(ex.Destination.Type), nil, &p); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	loc := location(ex.Timezone)
	f := exportForm{Edit: true, ID: ex.ID, Type: ex.Destination.Type, Name: ex.Name, Interval: ex.Interval, Intervals: schedule.Intervals,
		Timezone: ex.Timezone, Offset: strconv.FormatInt(ex.IntervalOffset, 10), StartAt: apiToLocal(ex.StartAt, loc),
		EndAt: apiToLocal(ex.EndAt, loc), Include: strings.Join(ex.Filters.IncludeEvents, ", "),
		Exclude: strings.Join(ex.Filters.ExcludeEvents, ", "), Paused: ex.Paused,
		Config: schemaFields(p.Manifest, ex.Destination.Config, ex.Destination.SecretsSet), Errors: map[string]string{}}
	if ex.TeamID != nil {
		f.TeamID = strconv.FormatInt(*ex.TeamID, 10)
	}
	c.render(w, http.StatusOK, "exportform", page{Title: "Edit " + ex.Name, Nav: "exports", Data: f}, s)
}

func (c *Console) updateExport(w http.ResponseWriter, r *http.Request, s *session) {
	var ex exportView
	if e := c.apiCall(r, s, http.MethodGet, apiBase+"/"+url.PathEscape(r.PathValue("id")), nil, &ex); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	var p pluginView
	if e := c.apiCall(r, s, http.MethodGet, "/api/v1/plugins/"+url.PathEscape(ex.Destination.Type), nil, &p); e != nil {
		c.apiFail(w, r, s, e)
		return
	}
	body, f := readExportForm(r, p, true, &ex)
	f.ID = ex.ID
	e := c.apiCall(r, s, http.MethodPatch, apiBase+"/"+ex.ID, body, nil)
	if e == nil {
		http.Redirect(w, r, "/exports/"+ex.ID+"?msg=updated", http.StatusSeeOther)
		return
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		c.apiFail(w, r, s, e)
		return
	}
	f.showErrors(e)
	c.render(w, e.Status, "exportform", page{Title: "Edit " + ex.Name, Nav: "exports", Error: e, Data: f}, s)
}
