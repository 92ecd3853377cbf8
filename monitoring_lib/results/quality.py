"""Idempotent storage of quality results: one row per (endpoint, window, expectation).

Re-running an interval replaces its rows; checks that no longer exist (config changed) are removed so
Grafana never shows a stale failure next to fresh results. Runs inside the caller's transaction so the
quality rows land together with the interval's other summaries, or not at all.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql

from monitoring_lib.quality.results import QualityOutcome
from monitoring_lib.results.tables import document

TABLE = sql.Identifier("monitoring", "data_quality_results")
_COLUMNS = (
    "endpoint_id", "window_start", "window_end", "expectation_id", "expectation_type", "column_name",
    "success", "unexpected_count", "unexpected_percent", "observed_value", "severity", "details",
)  # fmt: skip
_KEY = ("endpoint_id", "window_start", "window_end", "expectation_id")


def _upsert_statement() -> sql.Composed:
    updates = [c for c in _COLUMNS if c not in _KEY]
    return sql.SQL("INSERT INTO {table} ({cols}) VALUES ({vals}) ON CONFLICT ({key}) DO UPDATE SET {sets}").format(
        table=TABLE,
        cols=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
        key=sql.SQL(", ").join(map(sql.Identifier, _KEY)),
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in updates
        ),
    )


def write_quality_results(
    conn: psycopg.Connection,
    endpoint_id: str,
    window_start: datetime,
    window_end: datetime,
    outcome: QualityOutcome,
) -> int:
    """Upsert the outcome's results for the window and drop the window's other rows; returns rows written.

    Does not commit: the caller owns the transaction.
    """
    rows = [
        (
            endpoint_id, window_start, window_end, r.expectation_id, r.expectation_type, r.column,
            r.success, r.unexpected_count, r.unexpected_percent,
            None if r.observed_value is None else document(r.observed_value), r.severity, document(r.details),
        )
        for r in outcome.results
    ]  # fmt: skip
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "DELETE FROM {table} WHERE endpoint_id = %s AND window_start = %s AND window_end = %s"
                " AND NOT (expectation_id = ANY(%s))"
            ).format(table=TABLE),
            (endpoint_id, window_start, window_end, [r.expectation_id for r in outcome.results]),
        )
        if rows:
            cur.executemany(_upsert_statement(), rows)
    return len(rows)
