package api

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/storage"
)

// Controller is what the API needs from the host (host/control implements it). The API
// reads and writes exports, runs, backfills, logs and tokens in storage itself; it calls
// the Controller for whatever needs the plugin runtime, the scheduler or the queue.
//
// Errors: return an *Error (or wrap one with %w) to choose the status and message the
// client sees (InvalidPlugin, InvalidDestination and BadRequest build the usual ones);
// storage.ErrNotFound becomes 404 and storage.ErrConflict 409; anything else is a 500
// whose details are logged, never sent.
type Controller interface {
	// InstallPlugin validates and stores a module with the granted capabilities.
	// A refused module: InvalidPlugin(msg) (422).
	InstallPlugin(ctx context.Context, wasm []byte, granted []string) (*storage.Plugin, error)
	// PluginManifest returns the manifest of an installed plugin.
	PluginManifest(ctx context.Context, p *storage.Plugin) (abi.Manifest, error)
	// ValidateDestination runs the plugin's sluice_validate on a config that already
	// passed the manifest's schema (non-secret keys with defaults; names of the secrets
	// set). A refused config: InvalidDestination(msg, field) (422).
	ValidateDestination(ctx context.Context, p *storage.Plugin, public map[string]any, secretsSet []string) error
	// ExportChanged (re)schedules or unschedules an export after it was created,
	// updated, paused, unpaused or deleted (a deleted export is ErrNotFound in storage).
	ExportChanged(ctx context.Context, exportID string) error
	// RequestBackfill creates the backfill and its runs for [start, end) (already
	// validated: start < end <= now, both UTC).
	RequestBackfill(ctx context.Context, exportID string, start, end time.Time) (*storage.Backfill, error)
	// CancelBackfill cancels a backfill and its unfinished runs.
	CancelBackfill(ctx context.Context, backfillID string) error
	// RetryRun re-runs a run's interval.
	RetryRun(ctx context.Context, runID string) (*storage.Run, error)
	// CancelRun cancels a waiting or running run.
	CancelRun(ctx context.Context, runID string) error
	// TestDestination runs the plugin's destination test with the export's config.
	TestDestination(ctx context.Context, exportID string) (abi.TestReport, error)
	// Ready reports whether the host can serve (GET /readyz).
	Ready(ctx context.Context) error
}
