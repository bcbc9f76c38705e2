package api

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/internal/configschema"
	"github.com/sluicehq/sluice/storage"
)

// BackfillRequest is a validated backfill request.
type BackfillRequest struct {
	// Start: the backfill runs the intervals that start at or after it and end by End.
	Start, End time.Time
	// Earliest: the client omitted start_at; Start is EarliestStart's answer.
	Earliest bool
	// SincePause: Start is the export's last_paused_at, and the backfill runs the
	// intervals whose scheduled run was due after it (those the paused schedule skipped),
	// including the one in progress when the export was paused.
	SincePause bool
}

// BackfillEstimate is what a backfill would do.
type BackfillEstimate struct {
	// AdjustedStart is the start of the first interval, End the end of the last (clipped
	// to now less the settle delay and to the export's end_at); both req's when no runs.
	AdjustedStart, End time.Time
	Runs               int
	// Records is the source's count of records in [AdjustedStart, End) with the export's
	// filters; nil when the count hit the cap (TimedOut).
	Records  *int64
	TimedOut bool
}

// PluginSource is where a module to install comes from: Module (an upload) with the
// Signatures sent alongside it, or Reference (registry/repository:tag@sha256:...), which
// the host pulls, with the signatures attached to it in the registry.
type PluginSource struct {
	Module     []byte
	Signatures [][]byte
	Reference  string
}

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
	// InstallPluginFrom installs a module from a PluginSource: an upload with its signature
	// documents, or a reference the host pulls from an OCI registry. A refused module,
	// signature or artifact: InvalidPlugin (422); a refused reference: BadRequest (400).
	InstallPluginFrom(ctx context.Context, src PluginSource, granted []string) (*storage.Plugin, error)
	// PluginManifest returns the manifest of an installed plugin.
	PluginManifest(ctx context.Context, p *storage.Plugin) (abi.Manifest, error)
	// ValidateDestination runs the plugin's sluice_validate on a config that already
	// passed the manifest's schema (non-secret keys with defaults; names of the secrets
	// set). A refused config: InvalidDestination(msg, field) (422).
	ValidateDestination(ctx context.Context, p *storage.Plugin, public map[string]any, secretsSet []string) error
	// ExportChanged (re)schedules or unschedules an export after it was created,
	// updated, paused, unpaused or deleted (a deleted export is ErrNotFound in storage).
	ExportChanged(ctx context.Context, exportID string) error
	// RequestBackfill creates the backfill and its runs (req already validated: Start <
	// End <= now, both UTC). It does not wait for the backfill's records count: that
	// runs in the background, under the host's count cap (docs/runs.md).
	RequestBackfill(ctx context.Context, exportID string, req BackfillRequest) (*storage.Backfill, error)
	// EstimateBackfill says what RequestBackfill would do, creating nothing: the runs and
	// the source's count of records in their intervals, under the host's count cap.
	EstimateBackfill(ctx context.Context, exportID string, req BackfillRequest) (BackfillEstimate, error)
	// EarliestStart is the start of the interval holding the export's first event in the
	// source (the earliest insertion time matching its filters, not before its start_at);
	// ok is false when the source holds none.
	EarliestStart(ctx context.Context, exportID string) (start time.Time, ok bool, err error)
	// CancelBackfill cancels a backfill and its unfinished runs.
	CancelBackfill(ctx context.Context, backfillID string) error
	// RetryRun re-runs a run's interval.
	RetryRun(ctx context.Context, runID string) (*storage.Run, error)
	// CancelRun cancels a waiting or running run.
	CancelRun(ctx context.Context, runID string) error
	// TestDestination runs the plugin's destination test with the export's config (over
	// its connection's, when it uses one).
	TestDestination(ctx context.Context, exportID string) (abi.TestReport, error)
	// TestConnection runs the plugin's destination test with a config resolved from a
	// connection alone (configschema.Effective: complete, defaults applied).
	TestConnection(ctx context.Context, p *storage.Plugin, cfg configschema.Stored) (abi.TestReport, error)
	// Ready reports whether the host can serve (GET /readyz).
	Ready(ctx context.Context) error
}
