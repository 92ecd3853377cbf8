-- The promotion history: which model version served an endpoint from when. A window belongs to the version
-- that served it (`endpoints.serving_version`), so a window recomputed after a later promotion (force_recompute,
-- a cleared task, a backfill of old windows) keeps its own version and is compared with that version's
-- reference, not with the one in service when it happens to be recomputed.
CREATE TABLE IF NOT EXISTS monitoring.model_versions (
    endpoint_id   text NOT NULL,
    model_version text NOT NULL,
    promoted_at   timestamptz NOT NULL,
    source        text NOT NULL DEFAULT 'registered',  -- registered | retraining | backfill
    PRIMARY KEY (endpoint_id, model_version)
);
CREATE INDEX IF NOT EXISTS model_versions_promoted ON monitoring.model_versions (endpoint_id, promoted_at);

COMMENT ON TABLE monitoring.model_versions IS
    'one row per model version an endpoint served: promoted_at is when it took over; the earliest version also '
    'covers every window before its row';

-- Back-fill from what the schema knew before. Runs used to take the version in service when they ran, so:
--   a version a retraining promoted: the time its promotion was recorded;
--   another version seen in interval_runs: from the start of the earliest window a run computed with it within one
--     interval of that window's end (a live run), or from the earliest run's start if no run of it was live (a
--     backfill run later says only that the version was in service by then);
--   the version in service now, if still unknown: when the registry row was last written.
-- Windows before an endpoint's earliest row belong to that earliest version (`endpoints.serving_version`).
WITH promoted AS (
    SELECT endpoint_id, model_version_after AS model_version, min(created_at) AS promoted_at
    FROM monitoring.retraining_events
    WHERE event_type = 'training' AND outcome = 'promoted' AND model_version_after IS NOT NULL
    GROUP BY 1, 2
), computed AS (
    SELECT endpoint_id, model_version,
           min(CASE WHEN started_at - window_end < window_end - window_start THEN window_start
                    ELSE started_at END) AS promoted_at
    FROM monitoring.interval_runs WHERE model_version IS NOT NULL
    GROUP BY 1, 2
), current AS (
    SELECT endpoint_id, model_version, updated_at AS promoted_at FROM monitoring.model_endpoints
), evidence AS (
    SELECT endpoint_id, model_version, promoted_at, 1 AS rank FROM promoted
    UNION ALL SELECT endpoint_id, model_version, promoted_at, 2 FROM computed
    UNION ALL SELECT endpoint_id, model_version, promoted_at, 3 FROM current
)
INSERT INTO monitoring.model_versions (endpoint_id, model_version, promoted_at, source)
SELECT DISTINCT ON (endpoint_id, model_version) endpoint_id, model_version, promoted_at, 'backfill'
FROM evidence
ORDER BY endpoint_id, model_version, rank
ON CONFLICT (endpoint_id, model_version) DO NOTHING;

GRANT SELECT ON monitoring.model_versions TO mlmon_readonly;
