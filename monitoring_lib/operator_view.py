"""What an operator's page needs from the summary tables: recent windows, staleness, drift reasons, failed checks.

Read-only SQL over the monitoring schema, no Airflow import (the Airflow metadata, such as paused DAGs and
failed runs, is read by the UI plugin). The endpoint's interval is the length of its last window, so
staleness needs no config file: a window is due one interval after the last one ended.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from monitoring_lib.results.endpoints import list_endpoints

DEFAULT_WINDOWS = 24
STATES = ("quality_failed", "quality_warning", "drift_detected", "possible_drift", "stale", "late", "failed_run")
SORTS = ("endpoint", "staleness", "severity")


def _rows(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def human_age(delta: timedelta) -> str:
    """'3 days 4 hours', '2 hours 5 minutes', '40 seconds': two units at most, for people."""
    seconds = max(0, int(delta.total_seconds()))
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    if not parts:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return " ".join(parts[:2])


def staleness(last_end: datetime | None, interval: timedelta | None, now: datetime) -> dict[str, Any]:
    """fresh: the next window is not overdue; late: one or two windows overdue; stale: three or more (or none)."""
    if last_end is None or interval is None or interval <= timedelta(0):
        return {"state": "stale", "age_s": None, "age": "no window computed", "missed": None}
    age = now - last_end
    missed = max(0, int(age / interval) - 1)
    state = "fresh" if missed == 0 else "late" if missed < 3 else "stale"
    return {"state": state, "age_s": age.total_seconds(), "age": f"{human_age(age)} ago", "missed": missed}


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


def _states(e: dict[str, Any]) -> set[str]:
    last = e["windows"][-1] if e["windows"] else {}
    states = {e["staleness"]["state"]}
    if last.get("dq_state") == "failed":
        states.add("quality_failed")
    if last.get("dq_state") == "warning":
        states.add("quality_warning")
    if last.get("drift_status") in ("drift_detected", "possible_drift"):
        states.add(last["drift_status"])
    if last.get("status") == "failed":
        states.add("failed_run")
    return states


def _severity(e: dict[str, Any]) -> int:
    weights = {"failed_run": 10, "quality_failed": 8, "stale": 6, "drift_detected": 4, "late": 2,
               "quality_warning": 1, "possible_drift": 1}
    return sum(weights.get(s, 0) for s in e["states"])


def overviews(conn: psycopg.Connection, *, windows: int = DEFAULT_WINDOWS, now: datetime | None = None,
              endpoint_ids: set[str] | None = None) -> list[dict[str, Any]]:
    """Per endpoint: registry row, the last `windows` windows, staleness, states, latest failures and retraining.

    `endpoint_ids` limits the result (the endpoints a viewer may see); None means all.
    """
    now = now or datetime.now(UTC)
    rows = [r for r in list_endpoints(conn) if endpoint_ids is None or r["endpoint_id"] in endpoint_ids]
    ids = [r["endpoint_id"] for r in rows]
    strips = recent_windows(conn, ids, windows)
    history = retraining_history(conn, ids, 10)
    result = []
    for row in rows:
        strip = strips[row["endpoint_id"]]
        computed = [w for w in strip if w["status"] != "failed"]
        last = computed[-1] if computed else None
        interval = (strip[-1]["window_end"] - strip[-1]["window_start"]) if strip else None
        events = history[row["endpoint_id"]]
        item = {
            **row, "windows": strip, "interval_s": interval.total_seconds() if interval else None,
            "staleness": staleness(last["window_end"] if last else None, interval, now),
            "failed_checks": failed_checks(conn, row["endpoint_id"], last["window_start"], last["window_end"])
            if last else [],
            "drifted_features": list(last["drifted_features"]) if last else [],
            "drift_reasons": list(last["drift_reasons"]) if last else [],
            "last_decision": next((e for e in events if e["event_type"] == "decision"), None),
            "last_training": next((e for e in events if e["event_type"] == "training"), None),
        }
        item["states"] = sorted(_states(item))
        result.append(item)
    return result


def filter_and_sort(items: list[dict[str, Any]], state: str | None, sort: str | None) -> list[dict[str, Any]]:
    """Server-side filter by one state (see STATES, or fresh) and sort: endpoint, staleness (oldest first), severity."""
    if state:
        items = [e for e in items if state in e["states"]]
    if sort == "staleness":
        return sorted(items, key=lambda e: (-(e["staleness"]["age_s"] if e["staleness"]["age_s"] is not None
                                              else float("inf")), e["endpoint_id"]))
    if sort == "severity":
        return sorted(items, key=lambda e: (-_severity(e), e["endpoint_id"]))
    return items


def endpoint_detail(conn: psycopg.Connection, endpoint_id: str, *, windows: int = 96,
                    now: datetime | None = None) -> dict[str, Any] | None:
    """One endpoint's overview with a longer strip, drifted features with metric values, its segments and
    estimated performance, and retraining history."""
    found = overviews(conn, windows=windows, now=now, endpoint_ids={endpoint_id})
    if not found:
        return None
    item = found[0]
    computed = [w for w in item["windows"] if w["status"] != "failed"]
    last = computed[-1] if computed else None
    item["feature_drift"] = (drifted_features(conn, endpoint_id, last["window_start"], last["window_end"])
                             if last else [])
    item["app_findings"] = app_findings(conn, endpoint_id, last["window_start"], last["window_end"]) if last else []
    item["segments"] = window_segments(conn, endpoint_id, last["window_start"], last["window_end"]) if last else []
    item["estimate"] = window_estimate(conn, endpoint_id, last["window_start"], last["window_end"]) if last else None
    item["retraining_history"] = retraining_history(conn, [endpoint_id], 50)[endpoint_id]
    return item
