"""Read-only views of the summary tables for the people watching: the operator page, `mlmon status`, run notes.

Every row comes back as a dict keyed by column name; no reader depends on a column's position.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row


def _rows(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def recent_windows(conn: psycopg.Connection, endpoint_ids: list[str], limit: int) -> dict[str, list[dict[str, Any]]]:
    """The last `limit` windows per endpoint, oldest first, with each window's drifted features and failed checks."""
    rows = _rows(conn, """
        SELECT * FROM (
            SELECT r.endpoint_id, r.window_start, r.window_end, r.status, r.rows_seen, r.bad_rows, r.dq_state,
                   r.drift_status, r.model_version, r.error,
                   row_number() OVER (PARTITION BY r.endpoint_id ORDER BY r.window_end DESC) AS n,
                   coalesce(d.details, '{}'::jsonb) AS drift_details,
                   (SELECT count(*) FROM monitoring.data_quality_results q WHERE q.endpoint_id = r.endpoint_id
                      AND q.window_start = r.window_start AND q.window_end = r.window_end AND NOT q.success)
                       AS failed_checks,
                   (SELECT count(*) FROM monitoring.data_quality_results q WHERE q.endpoint_id = r.endpoint_id
                      AND q.window_start = r.window_start AND q.window_end = r.window_end AND NOT q.success
                      AND q.severity = 'critical') AS failed_critical
            FROM monitoring.interval_runs r
            LEFT JOIN monitoring.drift_summary d ON d.endpoint_id = r.endpoint_id AND d.window_start = r.window_start
                 AND d.window_end = r.window_end AND d.metric = 'general_drift'
            WHERE r.endpoint_id = ANY(%(ids)s)
        ) w WHERE n <= %(limit)s ORDER BY endpoint_id, window_end
        """, {"ids": endpoint_ids, "limit": limit})
    out: dict[str, list[dict[str, Any]]] = {e: [] for e in endpoint_ids}
    for row in rows:
        details = row.pop("drift_details") or {}
        row.pop("n")
        row["drifted_features"] = list(details.get("drifted_features", []))
        row["drift_reasons"] = list(details.get("reasons", []))
        out[row["endpoint_id"]].append(row)
    return out


def failed_checks(conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The window's failed expectations, critical first, with what was observed."""
    return _rows(conn, """
        SELECT expectation_id, expectation_type, column_name, severity, unexpected_count, unexpected_percent,
               observed_value
        FROM monitoring.data_quality_results
        WHERE endpoint_id = %(e)s AND window_start = %(s)s AND window_end = %(w)s AND NOT success
        ORDER BY severity = 'critical' DESC, expectation_id
        """, {"e": endpoint_id, "s": start, "w": end})


def drifted_features(conn: psycopg.Connection, endpoint_id: str, start: datetime,
                     end: datetime) -> list[dict[str, Any]]:
    """Features not at no_drift in the window, with every metric's value and the tier thresholds."""
    return _rows(conn, """
        SELECT feature, metric, value, p_value, threshold_possible, threshold_detected, status
        FROM monitoring.feature_drift
        WHERE endpoint_id = %(e)s AND window_start = %(s)s AND window_end = %(w)s AND segment = 'all'
          AND feature IN (SELECT feature FROM monitoring.feature_drift WHERE endpoint_id = %(e)s
                          AND window_start = %(s)s AND window_end = %(w)s AND segment = 'all'
                          AND status IN ('possible_drift', 'drift_detected'))
        ORDER BY feature, metric
        """, {"e": endpoint_id, "s": start, "w": end})


def app_findings(conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Monitoring-application results of the window that are not fine (drift, anomaly, error), worst first."""
    return _rows(conn, """
        SELECT application, metric, kind, status, value, extra
        FROM monitoring.app_results
        WHERE endpoint_id = %(e)s AND window_start = %(s)s AND window_end = %(w)s
          AND status NOT IN ('ok', 'no_drift') AND application NOT IN ('segment', 'performance')
        ORDER BY status = 'error' DESC, status = 'drift_detected' DESC, application, metric
        """, {"e": endpoint_id, "s": start, "w": end})


def window_segments(conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The window's segments (`segments`), each against its own reference: drifted first, then by name."""
    return _rows(conn, """
        SELECT metric AS segment, status, value, extra
        FROM monitoring.app_results
        WHERE endpoint_id = %(e)s AND window_start = %(s)s AND window_end = %(w)s AND application = 'segment'
        ORDER BY CASE status WHEN 'drift_detected' THEN 0 WHEN 'possible_drift' THEN 1 WHEN 'no_drift' THEN 2
                 ELSE 3 END, metric
        """, {"e": endpoint_id, "s": start, "w": end})


def window_estimate(conn: psycopg.Connection, endpoint_id: str, start: datetime,
                    end: datetime) -> dict[str, Any] | None:
    """The window's estimated-performance verdict (`performance.estimation`), if it has one."""
    found = _rows(conn, """
        SELECT status, value, extra FROM monitoring.app_results
        WHERE endpoint_id = %(e)s AND window_start = %(s)s AND window_end = %(w)s
          AND application = 'performance' AND metric = 'estimated'
        """, {"e": endpoint_id, "s": start, "w": end})
    return found[0] if found else None


def retraining_history(conn: psycopg.Connection, endpoint_ids: list[str],
                       limit: int) -> dict[str, list[dict[str, Any]]]:
    """The newest retraining decisions and trainings per endpoint, newest first."""
    rows = _rows(conn, """
        SELECT * FROM (
            SELECT endpoint_id, window_start, window_end, event_type, triggered, outcome, reasons, run_id,
                   model_version_before, model_version_after, created_at,
                   row_number() OVER (PARTITION BY endpoint_id ORDER BY created_at DESC, event_id DESC) AS n
            FROM monitoring.retraining_events WHERE endpoint_id = ANY(%(ids)s)
        ) e WHERE n <= %(limit)s ORDER BY endpoint_id, created_at DESC, n
        """, {"ids": endpoint_ids, "limit": limit})
    out: dict[str, list[dict[str, Any]]] = {e: [] for e in endpoint_ids}
    for row in rows:
        row.pop("n")
        out[row["endpoint_id"]].append(row)
    return out


def window_summaries(conn: psycopg.Connection, endpoint_id: str, limit: int) -> list[dict[str, Any]]:
    """The endpoint's last `limit` windows, oldest first, with the general drift value and drifted features."""
    rows = _rows(conn, """
        SELECT r.window_start, r.rows_seen, r.bad_rows, r.dq_state, r.drift_status,
               d.value AS general_drift, coalesce(d.details->'drifted_features', '[]'::jsonb) AS drifted_features
        FROM monitoring.interval_runs r
        LEFT JOIN monitoring.drift_summary d ON d.endpoint_id = r.endpoint_id AND d.window_start = r.window_start
             AND d.window_end = r.window_end AND d.metric = 'general_drift'
        WHERE r.endpoint_id = %(e)s
        ORDER BY r.window_start DESC LIMIT %(limit)s
        """, {"e": endpoint_id, "limit": limit})
    return rows[::-1]


def run_details(conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime) -> dict[str, Any] | None:
    """The stored run of one window: its bad rows by reason and the compute mode that produced it."""
    found = _rows(conn, """
        SELECT bad_row_details, compute_mode FROM monitoring.interval_runs
        WHERE endpoint_id = %(e)s AND window_start = %(s)s AND window_end = %(w)s
        """, {"e": endpoint_id, "s": start, "w": end})
    return found[0] if found else None


def drifted_window_counts(conn: psycopg.Connection, endpoint_id: str, metric: str) -> list[tuple[str, int]]:
    """Per feature, how many windows reached drift_detected on `metric` (whole windows only), most first."""
    rows = _rows(conn, """
        SELECT feature, count(*) AS windows FROM monitoring.feature_drift
        WHERE endpoint_id = %(e)s AND status = 'drift_detected' AND segment = 'all' AND metric = %(m)s
        GROUP BY feature ORDER BY 2 DESC, feature
        """, {"e": endpoint_id, "m": metric})
    return [(r["feature"], int(r["windows"])) for r in rows]


def schema_readable(conn: psycopg.Connection) -> None:
    """Raises when the monitoring tables cannot be read: the health check's only question."""
    conn.execute("SELECT 1 FROM monitoring.model_endpoints LIMIT 1").fetchall()


def has_windows(conn: psycopg.Connection, endpoint_id: str) -> bool:
    """Whether any window of the endpoint was ever computed."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM monitoring.interval_runs WHERE endpoint_id = %s)",
                        (endpoint_id,)).fetchone()[0]
