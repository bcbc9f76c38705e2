-- Backfill estimates and record counts (docs/runs.md, "Backfills"). earliest: the request
-- omitted start_at (start_at holds the resolved, aligned start); adjusted_start_at: the
-- start of the backfill's first interval; total_records_count: the source's count over the
-- backfill's intervals, NULL until counted (or when the count timed out or failed, which
-- total_records_status says: pending, counted, timed_out, failed; '' for older rows).
ALTER TABLE backfills ADD COLUMN earliest BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE backfills ADD COLUMN adjusted_start_at TIMESTAMPTZ;
ALTER TABLE backfills ADD COLUMN total_records_count BIGINT;
ALTER TABLE backfills ADD COLUMN total_records_status TEXT NOT NULL DEFAULT '';
-- What the source held for the run's interval when its current attempt started; NULL when
-- not counted (older runs, a count that timed out or failed).
ALTER TABLE runs ADD COLUMN records_total_count BIGINT;
-- The missing-data check (docs/runs.md): records the source holds for a Completed run's
-- interval beyond its records_completed (late data), as of data_checked_at; NULL: not
-- checked in this generation.
ALTER TABLE runs ADD COLUMN records_missing BIGINT;
ALTER TABLE runs ADD COLUMN data_checked_at TIMESTAMPTZ;
