-- Failure alerts (docs/alerts.md). An export's own webhook URL is a secret (a Slack
-- incoming-webhook URL is its own credential): it is stored sealed like secret_config,
-- '' when the export uses the host's SLUICE_ALERT_WEBHOOK_URL. alert_format '' is the
-- host's default; alert_period_seconds NULL is the host's SLUICE_ALERT_PERIOD.
ALTER TABLE batch_exports ADD COLUMN alert_webhook_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_exports ADD COLUMN alert_format TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_exports ADD COLUMN alert_period_seconds INTEGER;
-- The rate limit of an export's alerts, shared by every host: the alert holding the
-- current period (slot_key, claimed at last_alert_at), whether it was delivered, and how
-- many alerts were suppressed since the last delivered one.
CREATE TABLE alert_state (
    export_id     TEXT PRIMARY KEY REFERENCES batch_exports (id) ON DELETE CASCADE,
    last_alert_at TIMESTAMPTZ,
    slot_key      TEXT NOT NULL DEFAULT '',
    delivered     BOOLEAN NOT NULL DEFAULT FALSE,
    suppressed    INTEGER NOT NULL DEFAULT 0,
    updated_at    TIMESTAMPTZ NOT NULL
);
