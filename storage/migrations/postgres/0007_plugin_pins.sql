-- Plugin pins (docs/storage.md, "Plugin versions and pins"). An export pins the plugin
-- version it runs: plugin_id names the plugin row (one name and version), and
-- plugin_version and plugin_sha256 copy that row's version and module hash, written in the
-- same transaction as plugin_id. Existing exports get the pin of the plugin row they
-- already reference; an export whose row is gone (a soft-deleted export) keeps ''.
ALTER TABLE batch_exports ADD COLUMN plugin_version TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_exports ADD COLUMN plugin_sha256 TEXT NOT NULL DEFAULT '';
UPDATE batch_exports SET
    plugin_version = COALESCE((SELECT p.version FROM plugins p WHERE p.id = batch_exports.plugin_id), ''),
    plugin_sha256  = COALESCE((SELECT p.sha256 FROM plugins p WHERE p.id = batch_exports.plugin_id), '');
-- The module each run's latest attempt ran with ('' for runs that never started, and for
-- runs older than this migration: which module ran them is not known).
ALTER TABLE runs ADD COLUMN plugin_version TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN plugin_sha256 TEXT NOT NULL DEFAULT '';
