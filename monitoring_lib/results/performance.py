"""Model performance read back from `model_performance`: the newest window with enough labels, and its values.

Labels land long after a window is computed, so the newest labelled window is looked up by its label
count rather than by the run's own window.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import psycopg


class LabelledWindow(NamedTuple):
    window_start: datetime
    window_end: datetime
    model_version: str | None  # the version that served the window; None when no run of it is recorded
    label_count: int


def latest_labelled_window(
    conn: psycopg.Connection, endpoint_id: str, until: datetime, since: datetime, min_labels: int
) -> LabelledWindow | None:
    """The newest window ending in (since, until] whose segment 'all' rests on at least `min_labels` labels."""
    row = conn.execute(
        "SELECT p.window_start, p.window_end, r.model_version, p.label_count FROM monitoring.model_performance p"
        " LEFT JOIN monitoring.interval_runs r USING (endpoint_id, window_start, window_end)"
        " WHERE p.endpoint_id = %s AND p.segment = 'all' AND p.window_end <= %s AND p.window_end > %s"
        " AND NOT p.estimated AND p.label_count >= %s ORDER BY p.window_end DESC LIMIT 1",
        (endpoint_id, until, since, min_labels),
    ).fetchone()
    return None if row is None else LabelledWindow(*row)


def performance_values(
    conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime, estimated: bool = False
) -> list[tuple[str, float | None]]:
    """The window's realised (or `estimated`) performance metrics of segment 'all' as (metric, value), by metric."""
    return conn.execute(
        "SELECT metric, value FROM monitoring.model_performance"
        " WHERE endpoint_id = %s AND window_start = %s AND window_end = %s AND segment = 'all'"
        " AND estimated = %s ORDER BY metric",
        (endpoint_id, start, end, estimated),
    ).fetchall()


class EstimatedWindow(NamedTuple):
    window_end: datetime
    metric: str  # the judged metric of `performance.estimation`
    status: str
    estimated: float | None
    lower: float | None
    upper: float | None
    realised: float | None  # None until the window's labels land
    reference: float | None


def estimate_history(conn: psycopg.Connection, endpoint_id: str) -> list[EstimatedWindow]:
    """Every window's estimate of its judged metric beside the realised value of it, oldest first."""
    rows = conn.execute(
        """
        SELECT a.window_end, a.extra->>'metric', a.status, e.value, e.value_lower, e.value_upper, r.value,
               (a.extra->>'reference')::float8
          FROM monitoring.app_results a
          JOIN monitoring.model_performance e ON e.endpoint_id = a.endpoint_id AND e.window_start = a.window_start
           AND e.window_end = a.window_end AND e.segment = 'all' AND e.estimated AND e.metric = a.extra->>'metric'
          LEFT JOIN monitoring.model_performance r ON r.endpoint_id = a.endpoint_id AND r.window_start = a.window_start
           AND r.window_end = a.window_end AND r.segment = 'all' AND NOT r.estimated AND r.metric = e.metric
         WHERE a.endpoint_id = %s AND a.application = 'performance' AND a.metric = 'estimated'
         ORDER BY a.window_end
        """,
        (endpoint_id,),
    ).fetchall()
    return [EstimatedWindow(*r) for r in rows]


def computed_windows(conn: psycopg.Connection, endpoint_id: str, since: datetime,
                     until: datetime) -> list[tuple[datetime, datetime, str | None]]:
    """Windows computed without error and ending in (since, until], oldest first, with the version that served."""
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT window_start, window_end, model_version FROM monitoring.interval_runs WHERE endpoint_id = %s"
        " AND status = 'ok' AND window_end <= %s AND window_end > %s ORDER BY window_start",
        (endpoint_id, until, since))]


def stored_label_counts(conn: psycopg.Connection, endpoint_id: str, since: datetime,
                        unusable_metric: str) -> dict[tuple[datetime, datetime], int]:
    """Per window ending after `since`: the labelled rows it had when its realised performance was last computed
    (rows used plus the unusable ones, which `unusable_metric` counts)."""
    return {(r[0], r[1]): int(r[2]) for r in conn.execute(
        "SELECT window_start, window_end, label_count + value::bigint FROM monitoring.model_performance"
        " WHERE endpoint_id = %s AND segment = 'all' AND metric = %s AND NOT estimated AND window_end > %s",
        (endpoint_id, unusable_metric, since))}
