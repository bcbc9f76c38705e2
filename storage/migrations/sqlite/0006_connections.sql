-- Connections (docs/api.md, "Connections"): named credential sets that exports share.
-- plugin_name is the plugin (destination type) whose manifest the fields follow, by name,
-- so that a connection outlives plugin upgrades. config holds the non-secret fields (JSON),
-- secret_config the secret ones, sealed like batch_exports.secret_config.
CREATE TABLE connections (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    plugin_name   TEXT NOT NULL,
    config        TEXT NOT NULL DEFAULT '{}',
    secret_config TEXT NOT NULL DEFAULT '',
    created_at    DATETIME NOT NULL,
    updated_at    DATETIME NOT NULL
);
CREATE INDEX connections_created_at ON connections (created_at, id);
CREATE INDEX connections_plugin_name ON connections (plugin_name);
-- The connection an export takes its credentials from (NULL: its own). No foreign key, as
-- for plugin_id: a soft-deleted export keeps the id of a connection that may since have
-- been deleted; DeleteConnection refuses while live exports use it.
ALTER TABLE batch_exports ADD COLUMN connection_id TEXT;
CREATE INDEX batch_exports_connection_id ON batch_exports (connection_id);
