"""One window's results in the tables of schema `monitoring`: written together, replaced on a re-run, read back.

Each table's columns are named once here; rows are taken from the computed values by those names, so a
column added to a table is added in one place. The reads of one stored window run in the caller's
transaction, so what is built from them (the Dynatrace lines) matches what was just written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import psycopg

from monitoring_lib import __version__
from monitoring_lib.applications import AppResult
from monitoring_lib.compute.window_results import WindowResults
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.results.quality import write_quality_results
from monitoring_lib.results.tables import replace_window, upsert

OPERATIONAL = ("bucket_start", "metric", "value")
FEATURE_DRIFT = ("segment", "feature", "metric", "value", "p_value", "threshold_possible", "threshold_detected",
                 "status")
DRIFT_SUMMARY = ("metric", "value", "drift_status", "dq_state", "details")
FEATURE_STATS = ("feature", "metric", "value")
ESTIMATED_PERFORMANCE = ("segment", "metric", "value", "label_count", "estimated", "value_lower", "value_upper")
APP_RESULTS = ("application", "metric", "kind", "status", "value", "extra", "schedule_time")
INTERVAL_RUNS = ("endpoint_id", "window_start", "window_end", "status", "rows_seen", "bad_rows", "bad_row_details",
                 "dq_state", "drift_status", "model_version", "reference_version", "compute_mode", "stage_timings",
                 "library_version", "error", "started_at", "finished_at", "duration_s")


def _finite(value: Any) -> Any:
    """NaN and ±Infinity are stored as NULL: a value the dashboards cannot plot is no value."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


_MEASURED = {"value", "p_value"}


def _pick(row: dict[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
    """The row's values in the table's column order; measured values made storable."""
    return tuple(_finite(row[c]) if c in _MEASURED else row[c] for c in columns)


def write_window(
    conn: psycopg.Connection, cfg: EndpointConfig, start: datetime, end: datetime, model_version: str,
    profile: ReferenceProfile | None, results: WindowResults, anomalies: list[AppResult], started_at: datetime,
    timings: dict[str, float],
) -> None:
    """Every table's rows of [start, end) for the endpoint, in the caller's transaction."""
    e = cfg.endpoint_id
    replace_window(conn, "operational_metrics", e, start, end, list(OPERATIONAL), ["bucket_start", "metric"],
                   list(results.operational))
    if results.quality is not None:
        write_quality_results(conn, e, start, end, results.quality)
    else:
        replace_window(conn, "data_quality_results", e, start, end, [], [], [])
    drift = results.drift
    feature_rows: list[tuple[Any, ...]] = []
    summary_rows: list[tuple[Any, ...]] = []
    stats_rows: list[tuple[Any, ...]] = []
    if drift is not None:
        feature_rows = [_pick({"segment": "all", **r}, FEATURE_DRIFT) for r in drift.feature_rows]
        deciding = cfg.drift.feature.metric  # per segment the deciding metric alone: rows stay segments x features
        feature_rows += [_pick({"segment": s.name, **r}, FEATURE_DRIFT) for s in results.segments if s.drift
                         for r in s.drift.feature_rows if r["metric"] == deciding]
        details = {"reasons": list(drift.reasons), "drifted_features": list(drift.drifted_features)}
        summary_rows = [_pick({"metric": metric, "value": value, "drift_status": drift.status,
                               "dq_state": results.dq_state, "details": details if metric == "general_drift" else {}},
                              DRIFT_SUMMARY)
                        for metric, value in drift.summary.items()]
        stats_rows = [_pick(r, FEATURE_STATS) for r in drift.feature_stats_rows]
    replace_window(conn, "feature_drift", e, start, end, list(FEATURE_DRIFT), ["segment", "feature", "metric"],
                   feature_rows)
    replace_window(conn, "drift_summary", e, start, end, list(DRIFT_SUMMARY), ["metric"], summary_rows)
    replace_window(conn, "feature_stats", e, start, end, list(FEATURE_STATS), ["feature", "metric"], stats_rows)
    replace_window(conn, "app_results", e, start, end, list(APP_RESULTS), ["application", "metric"],
                   [(*a.row(), end) for a in (*results.apps, *anomalies)])
    replace_window(conn, "model_performance", e, start, end, list(ESTIMATED_PERFORMANCE),
                   ["segment", "metric", "estimated"], _estimated_rows(results), scope={"estimated": True})
    finished_at = datetime.now(timezone.utc)
    stored_timings: dict[str, Any] = dict(timings)
    if results.quality is not None:
        stored_timings["dq_failed_rows"] = int(results.quality.failed_rows)
    run = {
        "endpoint_id": e, "window_start": start, "window_end": end, "status": "ok" if results.rows else "no_data",
        "rows_seen": results.rows, "bad_rows": results.bad.bad_rows, "bad_row_details": results.bad.by_reason,
        "dq_state": results.dq_state, "drift_status": results.drift_status, "model_version": model_version,
        "reference_version": profile.version if profile else None, "compute_mode": cfg.compute,
        "stage_timings": stored_timings, "library_version": __version__, "error": None, "started_at": started_at,
        "finished_at": finished_at, "duration_s": (finished_at - started_at).total_seconds(),
    }
    upsert(conn, "interval_runs", list(INTERVAL_RUNS), ["endpoint_id", "window_start", "window_end"],
           [tuple(run[c] for c in INTERVAL_RUNS)])


def _estimated_rows(results: WindowResults) -> list[tuple[Any, ...]]:
    """The estimate's metrics as `model_performance` rows of segment 'all' and of each segment `column=value`
    (label_count: the rows each rests on)."""
    if results.estimate is None:
        return []
    out = []
    for segment, est in (("all", results.estimate), *results.estimate.segments):
        if all(m.value is None for m in est.metrics):  # too few rows to estimate
            continue
        out += [_pick({"segment": segment, "metric": m.metric, "value": m.value, "label_count": est.rows,
                       "estimated": True, "value_lower": _finite(m.lower), "value_upper": _finite(m.upper)},
                      ESTIMATED_PERFORMANCE) for m in est.metrics]
    return out


def metric_history(conn: psycopg.Connection, cfg: EndpointConfig, start: datetime) -> pd.DataFrame:
    """Feature means and KPIs of the `anomaly_window` windows before `start`, as long rows in time order."""
    rows = conn.execute(
        """
        SELECT window_end, 'feature_mean:' || feature AS metric, value FROM monitoring.feature_stats
         WHERE endpoint_id = %(e)s AND metric = 'mean' AND window_end <= %(s)s
           AND window_end > %(s)s - %(span)s
        UNION ALL
        SELECT window_end, 'kpi:' || metric, value FROM monitoring.app_results
         WHERE endpoint_id = %(e)s AND application = 'kpi' AND window_end <= %(s)s
           AND window_end > %(s)s - %(span)s
        ORDER BY 1
        """,
        {"e": cfg.endpoint_id, "s": start, "span": cfg.schedule.interval * (cfg.drift.anomaly_window + 1)},
    ).fetchall()
    return pd.DataFrame(rows, columns=["window_end", "metric", "value"])


def stored_drift_summary(
    conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime
) -> list[tuple[str, float | None, str]]:
    """The window's `drift_summary` rows as (metric, value, drift_status), by metric."""
    return conn.execute(
        "SELECT metric, value, drift_status FROM monitoring.drift_summary"
        " WHERE endpoint_id = %s AND window_start = %s AND window_end = %s ORDER BY metric",
        (endpoint_id, start, end),
    ).fetchall()


def stored_feature_drift(
    conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime, metric: str, features: Sequence[str]
) -> list[tuple[str, float | None]]:
    """The window's `feature_drift` values of one drift metric for the given features, as (feature, value)."""
    return conn.execute(
        "SELECT feature, value FROM monitoring.feature_drift"
        " WHERE endpoint_id = %s AND window_start = %s AND window_end = %s AND segment = 'all'"
        " AND metric = %s AND feature = ANY(%s) ORDER BY feature",
        (endpoint_id, start, end, metric, list(features)),
    ).fetchall()


def stored_app_status(conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime, application: str,
                      metric: str) -> str | None:
    """The status of one `app_results` row of the window (the estimated-performance verdict, say), if stored."""
    row = conn.execute(
        "SELECT status FROM monitoring.app_results WHERE endpoint_id = %s AND window_start = %s AND window_end = %s"
        " AND application = %s AND metric = %s", (endpoint_id, start, end, application, metric)).fetchone()
    return row[0] if row else None


def stored_app_statuses(conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime,
                        application: str) -> list[tuple[str, str]]:
    """(metric, status) of the window's `app_results` rows of one application (its segments, say), by metric."""
    return conn.execute(
        "SELECT metric, status FROM monitoring.app_results WHERE endpoint_id = %s AND window_start = %s"
        " AND window_end = %s AND application = %s ORDER BY metric", (endpoint_id, start, end, application)).fetchall()


def stored_quality_counts(
    conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime
) -> tuple[int, int]:
    """How many quality checks the window has results for, and how many of them failed."""
    total, failed = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE NOT success) FROM monitoring.data_quality_results"
        " WHERE endpoint_id = %s AND window_start = %s AND window_end = %s",
        (endpoint_id, start, end),
    ).fetchone()
    return total, failed


def stored_operational(
    conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime
) -> list[tuple[datetime, str, float | None]]:
    """The window's `operational_metrics` rows as (bucket_start, metric, value), by bucket."""
    return conn.execute(
        "SELECT bucket_start, metric, value FROM monitoring.operational_metrics"
        " WHERE endpoint_id = %s AND window_start = %s AND window_end = %s ORDER BY bucket_start",
        (endpoint_id, start, end),
    ).fetchall()


def multivariate_only_windows(conn: psycopg.Connection, endpoint_id: str) -> list[tuple[datetime, float, float]]:
    """Windows whose multivariate drift was detected while no feature's own drift was: (window end, error,
    upper bound of the reference band), oldest first. What the per-feature metrics alone would have missed."""
    return conn.execute(
        """
        SELECT a.window_end, a.value, (a.extra->>'upper_detected')::float8
          FROM monitoring.app_results a
         WHERE a.endpoint_id = %(e)s AND a.application = 'drift' AND a.metric = 'multivariate'
           AND a.status = 'drift_detected'
           AND NOT EXISTS (SELECT 1 FROM monitoring.app_results f
                            WHERE f.endpoint_id = a.endpoint_id AND f.window_start = a.window_start
                              AND f.window_end = a.window_end AND f.application = 'drift'
                              AND f.kind = 'feature_drift' AND f.status = 'drift_detected')
         ORDER BY a.window_end
        """,
        {"e": endpoint_id},
    ).fetchall()


def segment_only_windows(conn: psycopg.Connection, endpoint_id: str) -> list[tuple[datetime, str, list[str]]]:
    """Windows where a segment's drift was detected while the whole window's was not: (window end, segment,
    its drifted features), oldest first. What the population's mix hid."""
    return conn.execute(
        """
        SELECT a.window_end, a.metric, ARRAY(SELECT jsonb_array_elements_text(a.extra->'drifted_features'))
          FROM monitoring.app_results a
          JOIN monitoring.interval_runs r USING (endpoint_id, window_start, window_end)
         WHERE a.endpoint_id = %(e)s AND a.application = 'segment' AND a.status = 'drift_detected'
           AND r.drift_status IS DISTINCT FROM 'drift_detected'
         ORDER BY a.window_end, a.metric
        """,
        {"e": endpoint_id},
    ).fetchall()

