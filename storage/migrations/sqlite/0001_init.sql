-- Sluice storage schema, version 1 (SQLite).
-- Times are DATETIME text in UTC ("2006-01-02 15:04:05.999999-07:00"), so text order is time order.

CREATE TABLE plugins (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    abi_version  TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    manifest     TEXT NOT NULL DEFAULT '{}',
    capabilities TEXT NOT NULL DEFAULT '[]',
    module_path  TEXT NOT NULL DEFAULT '',
    created_at   DATETIME NOT NULL,
    UNIQUE (name, version)
);

-- plugin_id has no foreign key: soft-deleted exports keep the id of a plugin
-- that may since have been deleted; DeletePlugin checks live exports itself.
CREATE TABLE batch_exports (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    plugin_id        TEXT NOT NULL,
    destination_type TEXT NOT NULL,
    "interval"       TEXT NOT NULL,
    timezone         TEXT NOT NULL DEFAULT 'UTC',
    interval_offset  INTEGER NOT NULL DEFAULT 0,
    start_at         DATETIME,
    end_at           DATETIME,
    paused           BOOLEAN NOT NULL DEFAULT 0,
    last_paused_at   DATETIME,
    model            TEXT NOT NULL DEFAULT 'events',
    filters          TEXT NOT NULL DEFAULT '{}',
    config           TEXT NOT NULL DEFAULT '{}',
    secret_config    TEXT NOT NULL DEFAULT '',
    created_at       DATETIME NOT NULL,
    updated_at       DATETIME NOT NULL,
    deleted_at       DATETIME
);
CREATE INDEX batch_exports_plugin_id ON batch_exports (plugin_id);
CREATE INDEX batch_exports_deleted_at ON batch_exports (deleted_at);

CREATE TABLE backfills (
    id          TEXT PRIMARY KEY,
    export_id   TEXT NOT NULL REFERENCES batch_exports (id) ON DELETE CASCADE,
    start_at    DATETIME NOT NULL,
    end_at      DATETIME NOT NULL,
    status      TEXT NOT NULL,
    total_runs  INTEGER NOT NULL DEFAULT 0,
    created_at  DATETIME NOT NULL,
    updated_at  DATETIME NOT NULL,
    finished_at DATETIME
);
CREATE INDEX backfills_export_id ON backfills (export_id, created_at);

CREATE TABLE runs (
    id                TEXT PRIMARY KEY,
    export_id         TEXT NOT NULL REFERENCES batch_exports (id) ON DELETE CASCADE,
    interval_start    DATETIME NOT NULL,
    interval_end      DATETIME NOT NULL,
    status            TEXT NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    records_completed INTEGER NOT NULL DEFAULT 0,
    bytes_exported    INTEGER NOT NULL DEFAULT 0,
    latest_error      TEXT NOT NULL DEFAULT '',
    backfill_id       TEXT REFERENCES backfills (id) ON DELETE SET NULL,
    checkpoint        TEXT NOT NULL DEFAULT '{}',
    created_at        DATETIME NOT NULL,
    started_at        DATETIME,
    finished_at       DATETIME,
    updated_at        DATETIME NOT NULL,
    UNIQUE (export_id, interval_end)
);
CREATE INDEX runs_export_status ON runs (export_id, status);
CREATE INDEX runs_backfill_id ON runs (backfill_id);

-- Log lines carry no foreign key: appends stay cheap and never fail because
-- the export was deleted meanwhile.
CREATE TABLE log_entries (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    export_id TEXT NOT NULL,
    run_id    TEXT,
    level     TEXT NOT NULL,
    source    TEXT NOT NULL DEFAULT '',
    message   TEXT NOT NULL,
    attrs     TEXT NOT NULL DEFAULT '{}',
    time      DATETIME NOT NULL
);
CREATE INDEX log_entries_export_time ON log_entries (export_id, time);
CREATE INDEX log_entries_run_id ON log_entries (run_id);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    created_at   DATETIME NOT NULL,
    last_used_at DATETIME
);
