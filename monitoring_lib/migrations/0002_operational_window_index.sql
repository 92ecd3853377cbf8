-- Readers that look for each endpoint's latest window (the Dynatrace SQL extension's operational group,
-- every 15 minutes) filter operational_metrics by window_end; without this index each of them scans the
-- whole history.
CREATE INDEX IF NOT EXISTS operational_metrics_window ON monitoring.operational_metrics (window_end);
