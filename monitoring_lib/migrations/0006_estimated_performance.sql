-- Performance estimated before labels land (`performance.estimation`): stored beside the realised metrics of
-- the same window, told apart by `estimated`, with the estimate's sampling band. label_count holds, for an
-- estimated row, the predictions the estimate rests on.
ALTER TABLE monitoring.model_performance
    ADD COLUMN IF NOT EXISTS estimated   boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS value_lower double precision,
    ADD COLUMN IF NOT EXISTS value_upper double precision;

ALTER TABLE monitoring.model_performance DROP CONSTRAINT IF EXISTS model_performance_pkey;
ALTER TABLE monitoring.model_performance
    ADD CONSTRAINT model_performance_pkey PRIMARY KEY (endpoint_id, window_start, window_end, segment, metric, estimated);

COMMENT ON COLUMN monitoring.model_performance.estimated IS
    'true: estimated from the predictions alone (CBPE or direct loss estimation), value_lower/value_upper its band';
