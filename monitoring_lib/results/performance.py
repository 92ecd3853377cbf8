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
        " AND p.label_count >= %s ORDER BY p.window_end DESC LIMIT 1",
        (endpoint_id, until, since, min_labels),
    ).fetchone()
    return None if row is None else LabelledWindow(*row)


def performance_values(
    conn: psycopg.Connection, endpoint_id: str, start: datetime, end: datetime
) -> list[tuple[str, float | None]]:
    """The window's performance metrics of segment 'all' as (metric, value), by metric."""
    return conn.execute(
        "SELECT metric, value FROM monitoring.model_performance"
        " WHERE endpoint_id = %s AND window_start = %s AND window_end = %s AND segment = 'all' ORDER BY metric",
        (endpoint_id, start, end),
    ).fetchall()
