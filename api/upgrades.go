package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/storage"
)

// upgradeBody is the body of POST /batch_exports/{id}/upgrade: the target version and/or
// module (neither: the latest installed version of the export's plugin), and config
// changes merged into the export's config as a PATCH would, for keys the new version adds
// or changes.
type upgradeBody struct {
	Version *string        `json:"version"`
	SHA256  *string        `json:"sha256"`
	Config  map[string]any `json:"config"`
}

// pinView is one end of an upgrade.
type pinView struct {
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

type upgradeView struct {
	From pinView `json:"from"`
	To   pinView `json:"to"`
	// DroppedConfigKeys are config keys the export had that the new version's manifest
	// no longer declares: they are removed from the export.
	DroppedConfigKeys []string `json:"dropped_config_keys"`
}

// upgradeExport repins an export to another installed version of its plugin. The export's
// config (merged with the body's config) is checked against the new version's manifest and
// by the new version's sluice_validate before anything changes: a failing config is
// refused naming the field (400 from the schema, 422 from the plugin) and the export keeps
// its pin. The next run uses the new module.
func (s *Server) upgradeExport(c echo.Context) error {
	e, err := s.loadExport(c)
	if err != nil {
		return err
	}
	var body upgradeBody
	if _, err := decodeOptionalJSON(c, &body); err != nil {
		return err
	}
	ctx := c.Request().Context()
	version, sha := deref(body.Version), strings.ToLower(deref(body.SHA256))
	var target storage.Plugin
	if version == "" && sha == "" {
		target, err = s.db.GetLatestPluginByName(ctx, e.DestinationType)
	} else {
		target, err = s.db.FindPluginVersion(ctx, e.DestinationType, version, sha)
	}
	if isNotFound(err) {
		field := "version"
		if version == "" {
			field = "sha256"
		}
		msg, lerr := s.noSuchVersion(ctx, e.DestinationType, version, sha)
		if lerr != nil {
			return lerr
		}
		return BadRequest("no such plugin version", fieldErr(field, msg))
	}
	if err != nil {
		return err
	}
	m, err := s.ctl.PluginManifest(ctx, &target)
	if err != nil {
		return err
	}
	dropped, err := droppedKeys(e, m.Config)
	if err != nil {
		return err
	}
	from := pinView{Version: e.PluginVersion, SHA256: e.PluginSHA256}
	saved, err := s.storeExport(c, e, exportBody{Destination: &destinationBody{
		PluginVersion: &target.Version, PluginSHA256: &target.SHA256, Config: body.Config,
	}}, nil, false)
	if err != nil {
		return err
	}
	to := pinView{Version: saved.PluginVersion, SHA256: saved.PluginSHA256}
	if from != to {
		msg := fmt.Sprintf("plugin %s upgraded from %s (sha256 %s) to %s (sha256 %s)", saved.DestinationType, from.Version, from.SHA256, to.Version, to.SHA256)
		if len(dropped) > 0 {
			msg += "; config keys the new version does not declare were removed: " + strings.Join(dropped, ", ")
		}
		if _, err := s.db.AppendLog(ctx, storage.LogEntry{ExportID: saved.ID, Level: storage.LevelInfo, Source: "api", Message: msg}); err != nil {
			s.log.Warn("api: cannot log the upgrade in the export's log", "export_id", saved.ID, "err", err)
		}
		s.log.Info("api: export upgraded", "export_id", saved.ID, "plugin", saved.DestinationType, "from", from.Version, "to", to.Version, "sha256", to.SHA256)
	}
	v, err := s.exportView(ctx, manifestCache{}, saved)
	if err != nil {
		return err
	}
	if dropped == nil {
		dropped = []string{}
	}
	return c.JSON(http.StatusOK, struct {
		exportView
		Upgrade upgradeView `json:"upgrade"`
	}{v, upgradeView{From: from, To: to, DroppedConfigKeys: dropped}})
}

// droppedKeys lists the export's config keys (public, and secrets that are set) that the
// fields of another manifest do not declare.
func droppedKeys(e storage.BatchExport, fields []abi.Field) ([]string, error) {
	have := map[string]bool{}
	if e.Config != "" {
		public := map[string]any{}
		if err := json.Unmarshal([]byte(e.Config), &public); err != nil {
			return nil, fmt.Errorf("export %s config: %w", e.ID, err)
		}
		for k := range public {
			have[k] = true
		}
	}
	for k, v := range e.SecretConfig {
		if v != nil && v != "" {
			have[k] = true
		}
	}
	for _, f := range fields {
		delete(have, f.Name)
	}
	out := make([]string, 0, len(have))
	for k := range have {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// inUse is the 409 for removing plugin versions that live exports pin (f selects them),
// or nil when none does: it names the first page of them and how many there are; query
// is the batch_exports list query that pages through all of them.
func (s *Server) inUse(ctx context.Context, what string, f storage.ExportFilter, query url.Values) error {
	n, err := s.db.CountExports(ctx, f)
	if err != nil || n == 0 {
		return err
	}
	rows, err := s.db.ListExportsPage(ctx, f, storage.Page{Limit: listDefaultLimit})
	if err != nil {
		return err
	}
	refs := make([]ExportRef, len(rows))
	for i, e := range rows {
		refs[i] = ExportRef{ID: e.ID, Name: e.Name}
	}
	msg := fmt.Sprintf("%s is used by %d batch export(s); upgrade them to another version or delete them first", what, n)
	if int64(len(refs)) < n {
		msg += fmt.Sprintf(" (the first %d are listed; GET /api/v1/batch_exports?%s lists them all)", len(refs), query.Encode())
	}
	return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: msg, Exports: refs, ExportsTotal: n}
}
