-- A run's generation: 0 for its first execution and the automatic retries of it, one more
-- for each deliberate re-run (a user's retry, a backfill over the interval again). Only the
-- queue job of the current generation may execute or finish the run (docs/runs.md).
-- Existing runs start at their attempt count: every job enqueued before this migration
-- carried a generation no higher than that, so the next re-run cannot collide with one.
ALTER TABLE runs ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET generation = attempt;
-- Backfill progress and completion count a backfill's runs by status.
CREATE INDEX runs_backfill_status ON runs (backfill_id, status);
-- Start-up recovery finds the runs waiting for a job.
CREATE INDEX runs_status ON runs (status);
