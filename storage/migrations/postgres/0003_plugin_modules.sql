-- The bytes of every installed plugin module, keyed by sha256, so that any host sharing the
-- database can fetch a module it does not have on disk (docs/deploy.md). A table of its
-- own: listing plugins never reads a module. Several plugin rows (one per name and version)
-- may share one module row.
CREATE TABLE plugin_modules (
    sha256     TEXT PRIMARY KEY,
    module     BYTEA NOT NULL,
    size       BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
