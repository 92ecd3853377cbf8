-- Summary tables read by Grafana, Dynatrace push and the retraining policy.
-- Result tables are long/narrow and keyed by (endpoint_id, window_start, window_end[, feature], metric)
-- so every write is an upsert and re-running an interval replaces its rows.

CREATE TABLE IF NOT EXISTS monitoring.model_endpoints (
    endpoint_id      text PRIMARY KEY,
    project          text NOT NULL,
    model_name       text NOT NULL,
    model_version    text NOT NULL,
    model_class      text NOT NULL DEFAULT '',
    function_uri     text NOT NULL DEFAULT '',
    task             text NOT NULL DEFAULT 'regression',
    first_request    timestamptz,
    last_request     timestamptz,
    prediction_count bigint NOT NULL DEFAULT 0,
    error_count      bigint NOT NULL DEFAULT 0,
    drift_status     text,
    dq_state         text,
    last_window_start timestamptz,
    last_window_end  timestamptz,
    model_artifact   jsonb,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS model_endpoints_project ON monitoring.model_endpoints (project);

CREATE TABLE IF NOT EXISTS monitoring.reference_profiles (
    endpoint_id   text NOT NULL,
    model_version text NOT NULL,
    version       integer NOT NULL,
    source        text NOT NULL,
    row_count     bigint NOT NULL,
    profile       jsonb NOT NULL,
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_id, model_version, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS reference_profiles_one_active
    ON monitoring.reference_profiles (endpoint_id, model_version) WHERE is_active;

CREATE TABLE IF NOT EXISTS monitoring.interval_runs (
    endpoint_id      text NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    status           text NOT NULL,           -- ok | no_data | failed
    rows_seen        bigint NOT NULL DEFAULT 0,
    bad_rows         bigint NOT NULL DEFAULT 0,
    bad_row_details  jsonb NOT NULL DEFAULT '{}'::jsonb,
    dq_state         text,                    -- passed | warning | failed | skipped
    drift_status     text,                    -- no_drift | possible_drift | drift_detected | skipped
    model_version    text,
    reference_version integer,
    compute_mode     text NOT NULL DEFAULT 'memory',
    stage_timings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    library_version  text NOT NULL,
    error            text,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    duration_s       double precision NOT NULL,
    PRIMARY KEY (endpoint_id, window_start, window_end)
);
CREATE INDEX IF NOT EXISTS interval_runs_time ON monitoring.interval_runs (window_end);

CREATE TABLE IF NOT EXISTS monitoring.feature_drift (
    endpoint_id  text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    feature      text NOT NULL,
    metric       text NOT NULL,
    value        double precision,
    p_value      double precision,
    threshold_possible double precision,
    threshold_detected double precision,
    status       text,
    PRIMARY KEY (endpoint_id, window_start, window_end, feature, metric)
);
CREATE INDEX IF NOT EXISTS feature_drift_time ON monitoring.feature_drift (window_end);

CREATE TABLE IF NOT EXISTS monitoring.drift_summary (
    endpoint_id  text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    metric       text NOT NULL,
    value        double precision,
    drift_status text NOT NULL,               -- the endpoint's status for the window, on every row
    dq_state     text,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (endpoint_id, window_start, window_end, metric)
);
CREATE INDEX IF NOT EXISTS drift_summary_time ON monitoring.drift_summary (window_end);

CREATE TABLE IF NOT EXISTS monitoring.feature_stats (
    endpoint_id  text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    feature      text NOT NULL,
    metric       text NOT NULL,
    value        double precision,
    PRIMARY KEY (endpoint_id, window_start, window_end, feature, metric)
);
CREATE INDEX IF NOT EXISTS feature_stats_time ON monitoring.feature_stats (window_end);

CREATE TABLE IF NOT EXISTS monitoring.data_quality_results (
    endpoint_id        text NOT NULL,
    window_start       timestamptz NOT NULL,
    window_end         timestamptz NOT NULL,
    expectation_id     text NOT NULL,
    expectation_type   text NOT NULL,
    column_name        text,
    success            boolean NOT NULL,
    unexpected_count   bigint,
    unexpected_percent double precision,
    observed_value     jsonb,
    severity           text NOT NULL,         -- critical | warning
    details            jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (endpoint_id, window_start, window_end, expectation_id)
);
CREATE INDEX IF NOT EXISTS data_quality_results_time ON monitoring.data_quality_results (window_end);

CREATE TABLE IF NOT EXISTS monitoring.operational_metrics (
    endpoint_id  text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    bucket_start timestamptz NOT NULL,         -- 5-minute buckets inside the window
    metric       text NOT NULL,
    value        double precision,
    PRIMARY KEY (endpoint_id, window_start, window_end, bucket_start, metric)
);
CREATE INDEX IF NOT EXISTS operational_metrics_time ON monitoring.operational_metrics (bucket_start);

CREATE TABLE IF NOT EXISTS monitoring.model_performance (
    endpoint_id  text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    segment      text NOT NULL DEFAULT 'all',  -- 'all' or a bucket label of the configured column
    metric       text NOT NULL,
    value        double precision,
    label_count  bigint NOT NULL DEFAULT 0,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_id, window_start, window_end, segment, metric)
);
CREATE INDEX IF NOT EXISTS model_performance_time ON monitoring.model_performance (window_end);

CREATE TABLE IF NOT EXISTS monitoring.app_results (
    endpoint_id   text NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    application   text NOT NULL,
    metric        text NOT NULL,               -- the result's name
    kind          text NOT NULL,
    status        text NOT NULL,               -- no_drift | possible_drift | drift_detected | ok | anomaly | error ...
    value         double precision,
    extra         jsonb NOT NULL DEFAULT '{}'::jsonb,
    schedule_time timestamptz NOT NULL,
    PRIMARY KEY (endpoint_id, window_start, window_end, application, metric)
);
CREATE INDEX IF NOT EXISTS app_results_time ON monitoring.app_results (window_end);

CREATE TABLE IF NOT EXISTS monitoring.retraining_events (
    event_id      bigserial PRIMARY KEY,
    endpoint_id   text NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    event_type    text NOT NULL,               -- decision | training
    triggered     boolean NOT NULL DEFAULT false,
    outcome       text,                        -- trigger | no_trigger | promoted | rejected | failed
    reasons       jsonb NOT NULL DEFAULT '[]'::jsonb,
    evidence      jsonb NOT NULL DEFAULT '{}'::jsonb,
    run_id        text,
    model_version_before text,
    model_version_after  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, window_start, window_end, event_type)
);

CREATE TABLE IF NOT EXISTS monitoring.dynatrace_outbox (
    line_id      bigserial PRIMARY KEY,
    endpoint_id  text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    series_key   text NOT NULL,                -- metric key plus sorted dimensions: one line per series per window
    line         text NOT NULL,
    timestamp_ms bigint NOT NULL,
    status       text NOT NULL DEFAULT 'pending',  -- pending | sent | invalid | expired
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    UNIQUE (endpoint_id, window_start, window_end, series_key)
);
CREATE INDEX IF NOT EXISTS dynatrace_outbox_pending ON monitoring.dynatrace_outbox (line_id) WHERE status = 'pending';

-- Dashboards read through a role that can only SELECT; deployments grant it to their Grafana login.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mlmon_readonly') THEN
        CREATE ROLE mlmon_readonly NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA monitoring TO mlmon_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA monitoring TO mlmon_readonly;
ALTER DEFAULT PRIVILEGES IN SCHEMA monitoring GRANT SELECT ON TABLES TO mlmon_readonly;
