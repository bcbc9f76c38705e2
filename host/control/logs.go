package control

import (
	"context"
	"log/slog"

	"github.com/sluicehq/sluice/storage"
)

func storageLevel(l slog.Level) storage.LogLevel {
	switch {
	case l >= slog.LevelError:
		return storage.LevelError
	case l >= slog.LevelWarn:
		return storage.LevelWarn
	case l >= slog.LevelInfo:
		return storage.LevelInfo
	}
	return storage.LevelDebug
}

// runLog records a line in a run's log (served by GET .../runs/{id}/logs). source is
// "host" or "plugin:<name>".
func (h *Host) runLog(ctx context.Context, run storage.Run, source string, level slog.Level, msg string) {
	id := run.ID
	h.appendLog(ctx, storage.LogEntry{ExportID: run.ExportID, RunID: &id, Level: storageLevel(level), Source: source, Message: msg})
}

// exportLog records a line in an export's log, outside any run.
func (h *Host) exportLog(ctx context.Context, exportID string, level slog.Level, msg string) {
	h.appendLog(ctx, storage.LogEntry{ExportID: exportID, Level: storageLevel(level), Source: "host", Message: msg})
}

func (h *Host) appendLog(ctx context.Context, e storage.LogEntry) {
	e.Time = h.cfg.Clock.Now().UTC()
	if _, err := h.db.AppendLog(context.WithoutCancel(ctx), e); err != nil {
		h.log.Warn("cannot store log line", "export_id", e.ExportID, "err", err)
	}
}
