-- Per-segment monitoring (`segments`): a window's feature drift also per value of a segment column, each
-- against the same segment of the reference. `segment` is 'all' for the whole window, else 'column=value'
-- ('other' pools the values not named). Readers of the whole window's drift take segment = 'all'.
ALTER TABLE monitoring.feature_drift ADD COLUMN IF NOT EXISTS segment text NOT NULL DEFAULT 'all';

ALTER TABLE monitoring.feature_drift DROP CONSTRAINT IF EXISTS feature_drift_pkey;
ALTER TABLE monitoring.feature_drift
    ADD CONSTRAINT feature_drift_pkey PRIMARY KEY (endpoint_id, window_start, window_end, segment, feature, metric);

COMMENT ON COLUMN monitoring.feature_drift.segment IS
    '''all'': the whole window; ''column=value'': one segment against its own reference (deciding metric only)';
