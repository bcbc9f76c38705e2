package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/schedule"
	"github.com/sluicehq/sluice/internal/configschema"
	"github.com/sluicehq/sluice/storage"
)

// Interval names, as the scheduler (host/schedule) defines them.
var intervalNames = schedule.Intervals

// intervals maps each interval to its nominal period (the backfill size bound).
var intervals = func() map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, iv := range schedule.Intervals {
		m[iv] = schedule.Spec{Interval: iv}.Period()
	}
	return m
}()

// Property filter operators.
var operators = []string{"exact", "is_not", "is_set", "is_not_set", "icontains"}

// Filters select the events an export sends.
type Filters struct {
	IncludeEvents []string         `json:"include_events,omitempty"`
	ExcludeEvents []string         `json:"exclude_events,omitempty"`
	Properties    []PropertyFilter `json:"properties,omitempty"`
}

// PropertyFilter matches an event property.
type PropertyFilter struct {
	Key      string `json:"key"`
	Operator string `json:"operator"`
	Value    any    `json:"value,omitempty"`
}

type destinationBody struct {
	Type *string `json:"type"`
	// PluginVersion and PluginSHA256 pin an installed version of the plugin (either or
	// both). Absent: a new export pins the latest installed version; an update keeps the
	// export's pin unless the type changes.
	PluginVersion *string        `json:"plugin_version"`
	PluginSHA256  *string        `json:"plugin_sha256"`
	Config        map[string]any `json:"config"`
}

// exportBody is the body of POST (every required field) and PATCH (any subset).
type exportBody struct {
	Name           *string          `json:"name"`
	Destination    *destinationBody `json:"destination"`
	Interval       *string          `json:"interval"`
	Timezone       *string          `json:"timezone"`
	IntervalOffset *int64           `json:"interval_offset"`
	StartAt        json.RawMessage  `json:"start_at"`
	EndAt          json.RawMessage  `json:"end_at"`
	Paused         *bool            `json:"paused"`
	Model          *string          `json:"model"`
	Filters        *Filters         `json:"filters"`
	// TeamID is PostHog's team (project) id: only its events are exported. null clears it.
	TeamID json.RawMessage `json:"team_id"`
	alertBody
}

type destinationView struct {
	Type string `json:"type"`
	// PluginVersion and PluginSHA256 are the pin: the plugin version and module every run
	// of the export uses until it is upgraded.
	PluginVersion string         `json:"plugin_version"`
	PluginSHA256  string         `json:"plugin_sha256"`
	Config        map[string]any `json:"config"`
	// SecretsSet names the secret config keys that have a value (values never leave).
	SecretsSet []string `json:"secrets_set"`
}

type exportView struct {
	ID             string          `json:"id"`
	Name           string          `json:"name"`
	Destination    destinationView `json:"destination"`
	Interval       string          `json:"interval"`
	Timezone       string          `json:"timezone"`
	IntervalOffset int             `json:"interval_offset"`
	StartAt        *time.Time      `json:"start_at"`
	EndAt          *time.Time      `json:"end_at"`
	Paused         bool            `json:"paused"`
	LastPausedAt   *time.Time      `json:"last_paused_at"`
	Model          string          `json:"model"`
	Filters        Filters         `json:"filters"`
	TeamID         *int64          `json:"team_id"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	alertView
}

// manifestCache memoises manifests by plugin ID within one request.
type manifestCache map[string]*abi.Manifest

func (s *Server) manifestFor(ctx context.Context, mc manifestCache, p *storage.Plugin) (*abi.Manifest, error) {
	if m, ok := mc[p.ID]; ok {
		return m, nil
	}
	m, err := s.ctl.PluginManifest(ctx, p)
	if err != nil {
		return nil, err
	}
	mc[p.ID] = &m
	return &m, nil
}

func (s *Server) exportView(ctx context.Context, mc manifestCache, e storage.BatchExport) (exportView, error) {
	public := map[string]any{}
	if e.Config != "" {
		if err := json.Unmarshal([]byte(e.Config), &public); err != nil {
			return exportView{}, fmt.Errorf("export %s config: %w", e.ID, err)
		}
	}
	var filters storedFilters
	if e.Filters != "" {
		if err := json.Unmarshal([]byte(e.Filters), &filters); err != nil {
			return exportView{}, fmt.Errorf("export %s filters: %w", e.ID, err)
		}
	}
	dv := destinationView{Type: e.DestinationType}
	p, err := s.db.GetPlugin(ctx, e.PluginID)
	if err != nil {
		return exportView{}, err
	}
	dv.PluginVersion, dv.PluginSHA256 = e.PluginVersion, e.PluginSHA256
	if dv.PluginSHA256 == "" { // not pinned by storage (cannot happen to a live export)
		dv.PluginVersion, dv.PluginSHA256 = p.Version, p.SHA256
	}
	m, err := s.manifestFor(ctx, mc, &p)
	if err != nil {
		return exportView{}, err
	}
	dv.Config = configschema.Redact(m.Config, public)
	dv.SecretsSet = configschema.SecretsSet(m.Config, e.SecretConfig)
	return exportView{
		ID: e.ID, Name: e.Name, Destination: dv, Interval: e.Interval, Timezone: e.Timezone,
		IntervalOffset: e.IntervalOffset, StartAt: e.StartAt, EndAt: e.EndAt, Paused: e.Paused,
		LastPausedAt: e.LastPausedAt, Model: e.Model, Filters: filters.Filters, TeamID: filters.TeamID, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
		alertView: alertViewOf(e.ExportAlerts),
	}, nil
}

// loadExport reads the export of the :id path parameter (404 for a bad UUID).
func (s *Server) loadExport(c echo.Context) (storage.BatchExport, error) {
	id, err := pathID(c, "id", "batch export")
	if err != nil {
		return storage.BatchExport{}, err
	}
	e, err := s.db.GetExport(c.Request().Context(), id)
	if err != nil {
		return storage.BatchExport{}, notFoundAs(err, "batch export")
	}
	return e, nil
}

// notFoundAs names what was not found in a storage.ErrNotFound.
func notFoundAs(err error, what string) error {
	if isNotFound(err) {
		return notFound(what)
	}
	return err
}

func (s *Server) createExport(c echo.Context) error {
	var body exportBody
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	e := storage.BatchExport{Timezone: "UTC", Model: "events"}
	var errs []FieldError
	if body.Name == nil {
		errs = append(errs, fieldErr("name", "required"))
	}
	if body.Destination == nil {
		errs = append(errs, fieldErr("destination", "required: {\"type\": <plugin name>, \"config\": {...}}"))
	}
	if body.Interval == nil {
		errs = append(errs, fieldErr("interval", "required: one of "+strings.Join(intervalNames, ", ")))
	}
	saved, err := s.storeExport(c, e, body, errs, true)
	if err != nil {
		return err
	}
	return s.respondExport(c, saved, http.StatusCreated)
}

func (s *Server) updateExport(c echo.Context) error {
	cur, err := s.loadExport(c)
	if err != nil {
		return err
	}
	var body exportBody
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	saved, err := s.storeExport(c, cur, body, nil, false)
	if err != nil {
		return err
	}
	return s.respondExport(c, saved, http.StatusOK)
}

func (s *Server) respondExport(c echo.Context, e storage.BatchExport, status int) error {
	v, err := s.exportView(c.Request().Context(), manifestCache{}, e)
	if err != nil {
		return err
	}
	return c.JSON(status, v)
}

// storeExport applies body to e (a new export when create), validates everything it can
// before answering (all field errors at once), resolves the destination config against
// the manifest of the plugin version it pins, asks the plugin to validate it, stores and
// reschedules.
func (s *Server) storeExport(c echo.Context, e storage.BatchExport, body exportBody, errs []FieldError, create bool) (storage.BatchExport, error) {
	ctx := c.Request().Context()
	if body.Name != nil {
		name := strings.TrimSpace(*body.Name)
		switch {
		case name == "":
			errs = append(errs, fieldErr("name", "must not be empty"))
		case len(name) > 200:
			errs = append(errs, fieldErr("name", "must be at most 200 characters"))
		}
		e.Name = name
	}
	// The schedule: the scheduler's own rules (schedule.Spec.Problems) decide, so an
	// export the API accepts is one the host can schedule.
	if body.Interval != nil {
		e.Interval = *body.Interval
		if iv, err := schedule.ParseInterval(*body.Interval); err == nil {
			e.Interval = iv // canonical spelling
		}
	}
	if body.Timezone != nil {
		e.Timezone = *body.Timezone
	}
	if body.IntervalOffset != nil {
		// Clamped so the conversion to a duration cannot overflow; still out of range.
		e.IntervalOffset = int(min(max(*body.IntervalOffset, -1), 1<<40))
	}
	var timeErrs []FieldError
	if st := timeField("start_at", body.StartAt, &timeErrs); st.set {
		e.StartAt = nil
		if !st.null {
			e.StartAt = &st.t
		}
	}
	if et := timeField("end_at", body.EndAt, &timeErrs); et.set {
		e.EndAt = nil
		if !et.null {
			e.EndAt = &et.t
		}
	}
	for _, p := range scheduleProblems(e) {
		switch {
		case p.Field == schedule.FieldInterval && create && body.Interval == nil:
			// already "required"
		case p.Field == schedule.FieldEndAt:
			timeErrs = append(timeErrs, fieldErr(p.Field, p.Message))
		default:
			errs = append(errs, fieldErr(p.Field, p.Message))
		}
	}
	if body.Timezone != nil && *body.Timezone == "" {
		// Empty means UTC to the scheduler; the API wants the name.
		errs = append(errs, fieldErr("timezone", `unknown time zone "": want an IANA name such as UTC or Europe/Paris`))
	}
	errs = append(errs, timeErrs...)
	if body.Paused != nil {
		e.Paused = *body.Paused
	}
	if body.Model != nil {
		if *body.Model != "events" {
			errs = append(errs, fieldErr("model", fmt.Sprintf("unknown model %q: only \"events\" is supported", *body.Model)))
		}
		e.Model = *body.Model
	}
	if body.Filters != nil {
		errs = append(errs, validateFilters(*body.Filters)...)
	}
	applyAlerts(body.alertBody, &e.ExportAlerts, &errs)
	team, teamSet := teamField(body.TeamID, &errs)
	if body.Filters != nil || teamSet {
		var cur storedFilters
		if e.Filters != "" {
			if err := json.Unmarshal([]byte(e.Filters), &cur); err != nil {
				return storage.BatchExport{}, fmt.Errorf("export %s filters: %w", e.ID, err)
			}
		}
		if body.Filters != nil {
			cur.Filters = *body.Filters
		}
		if teamSet {
			cur.TeamID = team
		}
		b, err := json.Marshal(cur)
		if err != nil {
			return storage.BatchExport{}, err
		}
		e.Filters = string(b)
	}
	if len(errs) == 0 {
		ferrs, err := s.checkTeam(ctx, e)
		if err != nil {
			return storage.BatchExport{}, err
		}
		errs = append(errs, ferrs...)
	}

	// The destination: resolve the plugin version it pins, then its config against that
	// version's manifest.
	var plugin *storage.Plugin
	var resolved configschema.Stored
	var configChanged bool
	if d := body.Destination; d != nil {
		typ := e.DestinationType
		if d.Type != nil {
			typ = *d.Type
		}
		p, ferrs, err := s.destinationPlugin(ctx, e, d, typ, create)
		if err != nil {
			return storage.BatchExport{}, err
		}
		errs = append(errs, ferrs...)
		if p != nil {
			plugin = p
			m, err := s.ctl.PluginManifest(ctx, plugin)
			if err != nil {
				return storage.BatchExport{}, err
			}
			// PATCH merges into the stored config, unless the type changes (another schema).
			var prev *configschema.Stored
			if !create && typ == e.DestinationType {
				prev = &configschema.Stored{Public: map[string]any{}, Secret: e.SecretConfig}
				if e.Config != "" {
					if err := json.Unmarshal([]byte(e.Config), &prev.Public); err != nil {
						return storage.BatchExport{}, fmt.Errorf("export %s config: %w", e.ID, err)
					}
				}
			}
			input := d.Config
			if input == nil {
				input = map[string]any{}
			}
			st, ferrs := configschema.Resolve(m.Config, input, prev)
			errs = append(errs, ferrs.Prefix("destination.config")...)
			resolved, configChanged = st, true
		}
	}
	if err := badFields(errs); err != nil {
		return storage.BatchExport{}, err
	}
	if configChanged {
		m, err := s.ctl.PluginManifest(ctx, plugin)
		if err != nil {
			return storage.BatchExport{}, err
		}
		secretsSet := configschema.SecretsSet(m.Config, resolved.Secret)
		if err := s.ctl.ValidateDestination(ctx, plugin, resolved.Public, secretsSet); err != nil {
			return storage.BatchExport{}, err
		}
		pub, err := json.Marshal(resolved.Public)
		if err != nil {
			return storage.BatchExport{}, err
		}
		e.PluginID, e.DestinationType, e.Config, e.SecretConfig = plugin.ID, plugin.Name, string(pub), resolved.Secret
	}

	var saved storage.BatchExport
	var err error
	if create {
		saved, err = s.db.CreateExport(ctx, e)
	} else {
		if !configChanged {
			e.SecretConfig = nil // keep the stored secrets as they are
		}
		saved, err = s.db.UpdateExport(ctx, e)
	}
	if err != nil {
		return storage.BatchExport{}, notFoundAs(err, "batch export")
	}
	s.exportChanged(ctx, saved.ID)
	return saved, nil
}

// destinationPlugin resolves the plugin version a destination pins: the version or module
// the body names (plugin_version, plugin_sha256), else the export's own pin while its
// type stays the same (an update never moves to another version by itself), else the
// latest installed version of the type. An unknown type or version is a field error.
func (s *Server) destinationPlugin(ctx context.Context, e storage.BatchExport, d *destinationBody, typ string, create bool) (*storage.Plugin, []FieldError, error) {
	if typ == "" {
		return nil, []FieldError{fieldErr("destination.type", "required: the name of an installed plugin")}, nil
	}
	version, sha := "", ""
	if d.PluginVersion != nil {
		version = *d.PluginVersion
	}
	if d.PluginSHA256 != nil {
		sha = strings.ToLower(*d.PluginSHA256)
	}
	var p storage.Plugin
	var err error
	switch {
	case version != "" || sha != "":
		p, err = s.db.FindPluginVersion(ctx, typ, version, sha)
		if isNotFound(err) {
			field := "destination.plugin_version"
			if version == "" {
				field = "destination.plugin_sha256"
			}
			msg, lerr := s.noSuchVersion(ctx, typ, version, sha)
			if lerr != nil {
				return nil, nil, lerr
			}
			return nil, []FieldError{fieldErr(field, msg)}, nil
		}
	case !create && typ == e.DestinationType && e.PluginID != "":
		p, err = s.db.GetPlugin(ctx, e.PluginID)
	default:
		p, err = s.db.GetLatestPluginByName(ctx, typ)
		if isNotFound(err) {
			return nil, []FieldError{fieldErr("destination.type", fmt.Sprintf("unknown plugin %q: install it first (GET /api/v1/plugins lists them)", typ))}, nil
		}
	}
	if err != nil {
		return nil, nil, err
	}
	return &p, nil, nil
}

// noSuchVersion says which versions of a plugin are installed, for a version or module
// that is not.
func (s *Server) noSuchVersion(ctx context.Context, name, version, sha string) (string, error) {
	all, err := s.db.ListPlugins(ctx)
	if err != nil {
		return "", err
	}
	var have []string
	for _, p := range all {
		if p.Name == name {
			have = append(have, p.Version+" (sha256 "+p.SHA256+")")
		}
	}
	want := strings.TrimSpace(strings.Join([]string{quoteIf(version), shaIf(sha)}, " "))
	if len(have) == 0 {
		return fmt.Sprintf("unknown plugin %q: install it first (GET /api/v1/plugins lists them)", name), nil
	}
	return fmt.Sprintf("plugin %q has no installed version %s; installed: %s", name, want, strings.Join(have, ", ")), nil
}

func quoteIf(s string) string {
	if s == "" {
		return ""
	}
	return quote(s)
}

func shaIf(s string) string {
	if s == "" {
		return ""
	}
	return "with sha256 " + s
}

// exportChanged tells the host to reschedule. The change is already stored, so a
// failure is logged rather than returned: answering 500 would invite a client to
// repeat a change that happened; the host reschedules every export when it starts.
func (s *Server) exportChanged(ctx context.Context, id string) {
	if err := s.ctl.ExportChanged(ctx, id); err != nil {
		s.log.Error("api: reschedule export", "export_id", id, "err", err)
	}
}

// scheduleProblems checks the export's schedule with host/schedule's rules: the function
// the scheduler itself applies (schedule.Parse), so anything accepted here schedules.
func scheduleProblems(e storage.BatchExport) []*schedule.FieldError {
	spec := schedule.Spec{Interval: e.Interval, Timezone: e.Timezone,
		Offset: time.Duration(e.IntervalOffset) * time.Second, StartAt: e.StartAt, EndAt: e.EndAt}
	return spec.Problems()
}

// storedFilters is the JSON of storage.BatchExport.Filters: the API's filters plus the
// team, which host/control's queryFor pushes into the source query.
type storedFilters struct {
	Filters
	TeamID *int64 `json:"team_id,omitempty"`
}

// teamField reads team_id: absent (set false), null (set, nil) or a positive integer.
func teamField(raw json.RawMessage, errs *[]FieldError) (*int64, bool) {
	if raw == nil {
		return nil, false
	}
	if string(raw) == "null" {
		return nil, true
	}
	var v int64
	if err := json.Unmarshal(raw, &v); err == nil && v > 0 {
		return &v, true
	}
	*errs = append(*errs, fieldErr("team_id", "must be a positive integer (the PostHog team/project id) or null, got "+string(raw)))
	return nil, false
}

// TeamLister is implemented by a Controller whose event source can list the teams it holds
// events of (host/control's API, from source.TeamLister). When the Controller implements
// it, an export must name its team_id as soon as the source holds more than one team:
// otherwise it would export every team's events.
type TeamLister interface {
	// SourceTeamIDs returns up to max distinct team ids present in the event source.
	SourceTeamIDs(ctx context.Context, max int) ([]int64, error)
}

// checkTeam requires team_id when the source is multi-tenant.
func (s *Server) checkTeam(ctx context.Context, e storage.BatchExport) ([]FieldError, error) {
	tl, ok := s.ctl.(TeamLister)
	if !ok {
		return nil, nil
	}
	var f storedFilters
	if e.Filters != "" {
		if err := json.Unmarshal([]byte(e.Filters), &f); err != nil {
			return nil, fmt.Errorf("export %s filters: %w", e.ID, err)
		}
	}
	if f.TeamID != nil {
		return nil, nil
	}
	teams, err := tl.SourceTeamIDs(ctx, 2)
	if err != nil {
		return nil, fmt.Errorf("list the source's teams: %w", err)
	}
	if len(teams) < 2 {
		return nil, nil
	}
	return []FieldError{fieldErr("team_id", fmt.Sprintf("required: the event source holds the events of several teams (%d, %d, ...); name the team whose events this export sends", teams[0], teams[1]))}, nil
}

func validateFilters(f Filters) []FieldError {
	var errs []FieldError
	for i, ev := range f.IncludeEvents {
		if ev == "" {
			errs = append(errs, fieldErr(fmt.Sprintf("filters.include_events[%d]", i), "must not be empty"))
		}
	}
	for i, ev := range f.ExcludeEvents {
		if ev == "" {
			errs = append(errs, fieldErr(fmt.Sprintf("filters.exclude_events[%d]", i), "must not be empty"))
		}
	}
	for i, p := range f.Properties {
		at := fmt.Sprintf("filters.properties[%d]", i)
		if strings.TrimSpace(p.Key) == "" {
			errs = append(errs, fieldErr(at+".key", "required"))
		}
		if !slices.Contains(operators, p.Operator) {
			errs = append(errs, fieldErr(at+".operator", fmt.Sprintf("unknown operator %q: want one of %s", p.Operator, strings.Join(operators, ", "))))
			continue
		}
		switch p.Operator {
		case "is_set", "is_not_set":
			if p.Value != nil {
				errs = append(errs, fieldErr(at+".value", "must be absent for operator "+p.Operator))
			}
		case "icontains":
			if _, ok := p.Value.(string); !ok {
				errs = append(errs, fieldErr(at+".value", "must be a string for operator icontains"))
			}
		default: // exact, is_not: a scalar or an array of scalars
			if !scalarOrList(p.Value) {
				errs = append(errs, fieldErr(at+".value", "must be a string, number, boolean or an array of them for operator "+p.Operator))
			}
		}
	}
	return errs
}

func scalarOrList(v any) bool {
	scalar := func(x any) bool {
		switch x.(type) {
		case string, bool, json.Number, float64:
			return true
		}
		return false
	}
	if l, ok := v.([]any); ok {
		if len(l) == 0 {
			return false
		}
		for _, x := range l {
			if !scalar(x) {
				return false
			}
		}
		return true
	}
	return scalar(v)
}

// listExports: oldest first; filters destination_type, plugin_version, plugin_sha256 (the
// pin) and paused; limit (1-500,
// default 100) and cursor (next_cursor of the previous page: the (created_at, id)
// of its last export).
func (s *Server) listExports(c echo.Context) error {
	ctx := c.Request().Context()
	var errs []FieldError
	f := storage.ExportFilter{DestinationType: c.QueryParam("destination_type"),
		PluginVersion: c.QueryParam("plugin_version"), PluginSHA256: strings.ToLower(c.QueryParam("plugin_sha256"))}
	switch paused := c.QueryParam("paused"); paused {
	case "":
	case "true", "false":
		v := paused == "true"
		f.Paused = &v
	default:
		errs = append(errs, fieldErr("paused", "must be true or false"))
	}
	page, limit := pageQuery(c, &errs)
	if err := badFields(errs); err != nil {
		return err
	}
	rows, err := s.db.ListExportsPage(ctx, f, page)
	if err != nil {
		return err
	}
	rows, next := nextPage(rows, limit, func(e storage.BatchExport) storage.Cursor {
		return storage.Cursor{CreatedAt: e.CreatedAt, ID: e.ID}
	})
	mc := manifestCache{}
	out := make([]exportView, 0, len(rows))
	for _, e := range rows {
		v, err := s.exportView(ctx, mc, e)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	return c.JSON(http.StatusOK, list(out, next))
}

func (s *Server) getExport(c echo.Context) error {
	e, err := s.loadExport(c)
	if err != nil {
		return err
	}
	v, err := s.exportView(c.Request().Context(), manifestCache{}, e)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) deleteExport(c echo.Context) error {
	e, err := s.loadExport(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.db.SoftDeleteExport(ctx, e.ID); err != nil {
		return notFoundAs(err, "batch export")
	}
	s.exportChanged(ctx, e.ID)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) pauseExport(c echo.Context) error { return s.setPaused(c, true, false) }

// unpauseExport takes an optional body {"backfill": true}: backfill the intervals the
// schedule skipped since the export was paused (its last_paused_at), as one backfill
// created with the unpause. Unpausing an export that is not paused backfills nothing.
func (s *Server) unpauseExport(c echo.Context) error {
	var body struct {
		Backfill bool `json:"backfill"`
	}
	if _, err := decodeOptionalJSON(c, &body); err != nil {
		return err
	}
	return s.setPaused(c, false, body.Backfill)
}

func (s *Server) setPaused(c echo.Context, paused, backfill bool) error {
	e, err := s.loadExport(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var req *BackfillRequest
	if backfill && e.Paused {
		if e.LastPausedAt == nil {
			return badFields([]FieldError{fieldErr("backfill", "the export has no last_paused_at (paused before it was recorded): request a backfill with start_at instead")})
		}
		req = &BackfillRequest{Start: *e.LastPausedAt, End: s.cfg.Now().UTC(), SincePause: true}
		if !req.Start.Before(req.End) {
			req = nil // paused since no time at all: nothing missed
		} else if err := s.checkBackfillRange(e, *req, "backfill"); err != nil {
			return err
		}
	}
	saved, err := s.db.SetExportPaused(ctx, e.ID, paused)
	if err != nil {
		return notFoundAs(err, "batch export")
	}
	if saved.Paused != e.Paused {
		s.exportChanged(ctx, e.ID)
	}
	v, err := s.exportView(ctx, manifestCache{}, saved)
	if err != nil {
		return err
	}
	if req == nil || saved.Paused == e.Paused {
		return c.JSON(http.StatusOK, v)
	}
	// Unpaused by this request: the backfill of the missed intervals.
	b, err := s.ctl.RequestBackfill(ctx, e.ID, *req)
	if err != nil {
		return fmt.Errorf("the export is unpaused, but its backfill since %s failed: %w", req.Start.Format(time.RFC3339), err)
	}
	bv, err := s.backfillView(ctx, *b)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct {
		exportView
		Backfill backfillView `json:"backfill"`
	}{v, bv})
}

type testReportView struct {
	OK    bool           `json:"ok"`
	Steps []abi.TestStep `json:"steps"`
}

func (s *Server) testExport(c echo.Context) error {
	e, err := s.loadExport(c)
	if err != nil {
		return err
	}
	rep, err := s.ctl.TestDestination(c.Request().Context(), e.ID)
	if err != nil {
		return err
	}
	v := testReportView{OK: true, Steps: rep.Steps}
	if v.Steps == nil {
		v.Steps = []abi.TestStep{}
	}
	for _, st := range v.Steps {
		v.OK = v.OK && st.OK
	}
	return c.JSON(http.StatusOK, v)
}
