package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/internal/configschema"
	"github.com/sluicehq/sluice/storage"
)

// errBadConfig marks a destination config that cannot run as stored (its connection no
// longer completes it): retrying cannot help until the export or connection is fixed.
var errBadConfig = errors.New("the destination config is incomplete")

// destinationConfig is the config a run or a test of e binds and gives its plugin: the
// export's own, over its connection's fields when it uses one (docs/api.md,
// "Connections"). The connection is read now, when the run starts: a secret rotated on the
// connection takes effect at every export's next run. It returns e with SecretConfig set
// to the effective secrets, and the effective non-secret config.
func (h *Host) destinationConfig(ctx context.Context, e storage.BatchExport, m abi.Manifest) (storage.BatchExport, map[string]any, error) {
	public, err := decodeConfig(e.Config)
	if err != nil || e.ConnectionID == nil {
		return e, public, err
	}
	cn, err := h.db.GetConnection(ctx, *e.ConnectionID)
	if err != nil {
		return e, nil, fmt.Errorf("the export's connection %s: %w", *e.ConnectionID, err)
	}
	connPublic, err := decodeConfig(cn.Config)
	if err != nil {
		return e, nil, fmt.Errorf("connection %s: %w", cn.ID, err)
	}
	eff, ferrs := configschema.Effective(m.Config,
		configschema.Stored{Public: connPublic, Secret: cn.SecretConfig},
		configschema.Stored{Public: public, Secret: e.SecretConfig})
	if len(ferrs) > 0 {
		return e, nil, fmt.Errorf("%w with connection %s (%q): %w", errBadConfig, cn.ID, cn.Name, ferrs)
	}
	e.SecretConfig = eff.Secret
	return e, eff.Public, nil
}

// TestConnection runs the plugin's destination test with a connection's config alone
// (cfg: resolved by the API, complete). The plugin's log lines go to the host log: there
// is no export whose log would hold them.
func (h *Host) TestConnection(ctx context.Context, sp *storage.Plugin, cfg configschema.Stored) (abi.TestReport, error) {
	p, manifest, err := h.pluginFor(ctx, sp.ID, "")
	if err != nil {
		return abi.TestReport{}, err
	}
	e := storage.BatchExport{ID: "connection-test", Name: "connection test", PluginID: sp.ID, DestinationType: sp.Name, SecretConfig: cfg.Secret}
	return h.testDestination(ctx, p, manifest, e, cfg.Public, func(level slog.Level, msg string) {
		h.log.Log(ctx, level, "connection test: "+msg, "plugin", sp.Name)
	})
}

// testDestination runs the plugin's test with e's capabilities bound from public and
// e.SecretConfig; log, when not nil, receives the plugin's log lines instead of the
// export's run log.
func (h *Host) testDestination(ctx context.Context, p *runtime.Plugin, m abi.Manifest, e storage.BatchExport, public map[string]any, log func(slog.Level, string)) (abi.TestReport, error) {
	now := h.cfg.Clock.Now().UTC().Truncate(time.Hour)
	run := storage.Run{ID: "test-" + uuid.NewString(), ExportID: e.ID, IntervalStart: now.Add(-time.Hour), IntervalEnd: now}
	bind, release, err := h.bindings(ctx, run, e, m, public)
	defer release()
	if err != nil {
		return abi.TestReport{Steps: []abi.TestStep{{Name: "bind capabilities", OK: false, Message: err.Error()}}}, nil
	}
	if log != nil {
		bind.Log = log
	}
	return p.Test(ctx, abi.OpenRequest{RunID: run.ID, ExportID: e.ID, ExportName: e.Name, IntervalStart: run.IntervalStart,
		IntervalEnd: run.IntervalEnd, Attempt: 1, Config: public, Columns: abi.EventColumns}, bind)
}
