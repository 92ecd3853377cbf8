"""The `model_endpoints` registry: one row per monitored endpoint, the Overview dashboard's table.

The config gives the initial model version; once registered, the version is owned by the registry
(retraining promotes new versions), so editing config metadata never rolls a promotion back.

`model_versions` keeps the promotion history, so each window is attributed to the version that served
it (`serving_version`), whenever it is computed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from monitoring_lib.config import EndpointConfig
from monitoring_lib.results.tables import document
from monitoring_lib.source import window_model_version


def ensure_endpoint(conn: psycopg.Connection, cfg: EndpointConfig) -> str:
    """Register or refresh the endpoint's metadata; returns the model version currently in service.

    The version in service enters the promotion history if it is not there yet (the first
    registration, or a version set in the registry by hand), as promoted now.
    """
    row = conn.execute(
        """
        INSERT INTO monitoring.model_endpoints
            (endpoint_id, project, model_name, model_version, model_class, function_uri, task)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (endpoint_id) DO UPDATE SET
            project = EXCLUDED.project, model_name = EXCLUDED.model_name,
            model_class = EXCLUDED.model_class, function_uri = EXCLUDED.function_uri,
            task = EXCLUDED.task, updated_at = now()
        RETURNING model_version
        """,
        (cfg.endpoint_id, cfg.project, cfg.model.name, cfg.model.version, cfg.model.model_class,
         cfg.model.function_uri, cfg.model.task),
    ).fetchone()
    record_promotion(conn, cfg.endpoint_id, str(row[0]), source="registered", replace=False)
    return str(row[0])


_PROMOTE = ("INSERT INTO monitoring.model_versions (endpoint_id, model_version, promoted_at, source)"
            " VALUES (%s, %s, coalesce(%s::timestamptz, now()), %s) ON CONFLICT (endpoint_id, model_version) ")
_PROMOTE_REPLACING = _PROMOTE + "DO UPDATE SET promoted_at = EXCLUDED.promoted_at, source = EXCLUDED.source"
_PROMOTE_KEEPING = _PROMOTE + "DO NOTHING"


def record_promotion(conn: psycopg.Connection, endpoint_id: str, model_version: str, *,
                     promoted_at: datetime | None = None, source: str = "retraining", replace: bool = True) -> None:
    """Note that `model_version` serves the endpoint from `promoted_at` (default: now, the caller's transaction).

    `replace=False` keeps an existing row: re-registering never moves a promotion's time.
    """
    conn.execute(
        _PROMOTE_REPLACING if replace else _PROMOTE_KEEPING, (endpoint_id, model_version, promoted_at, source),
    )


def serving_version(conn: psycopg.Connection, endpoint_id: str, window_start: datetime,
                    window_end: datetime) -> str | None:
    """The model version that served [window_start, window_end), from the promotion history.

    That is the version in service just before the window's end: the latest promoted strictly before
    `window_end`. A window straddling a promotion thus belongs to the new version, which is what a live
    run at the window's end used, so recomputing the window later reproduces the live attribution; and the
    new model's first traffic is judged against its own reference at once. A window before the first
    recorded promotion belongs to the earliest version (nothing else is known to have served it).
    None when the endpoint has no history at all. Only the window's end decides; callers name the whole window.
    """
    row = conn.execute(
        """
        SELECT model_version FROM monitoring.model_versions WHERE endpoint_id = %(e)s
        ORDER BY promoted_at < %(end)s DESC,
                 CASE WHEN promoted_at < %(end)s THEN promoted_at END DESC NULLS LAST,
                 promoted_at, model_version
        LIMIT 1
        """,
        {"e": endpoint_id, "end": window_end},
    ).fetchone()
    return None if row is None else str(row[0])


def window_version(conn: psycopg.Connection, cfg: EndpointConfig, window_start: datetime,
                   window_end: datetime) -> str:
    """The model version a window belongs to: the source's `model_version_column` when configured and not all
    NULL in the window (its most frequent value), else the promotion history, else the registry or config."""
    if cfg.source.model_version_column:
        logged = window_model_version(conn, cfg, window_start, window_end)
        if logged is not None:
            return logged
    return (serving_version(conn, cfg.endpoint_id, window_start, window_end)
            or current_version(conn, cfg.endpoint_id) or cfg.model.version)


def current_version(conn: psycopg.Connection, endpoint_id: str, *, lock: bool = False) -> str | None:
    """The version the registry says is in service; `lock` holds the row to the end of the transaction, so
    two promotions cannot race."""
    query = "SELECT model_version FROM monitoring.model_endpoints WHERE endpoint_id = %s"
    row = conn.execute(query + " FOR UPDATE" if lock else query, (endpoint_id,)).fetchone()
    return None if row is None else str(row[0])


def refresh_endpoint_totals(
    conn: psycopg.Connection, endpoint_id: str, first_ts: datetime | None, last_ts: datetime | None
) -> None:
    """Recompute counts from the stored windows (not increments), so re-runs leave identical totals.

    Errors = errors flagged by the model service + bad rows found in extraction + rows failing
    row-level quality checks, as MLRun's dashboards count invalid timestamps, ids and types.
    """
    conn.execute(
        """
        WITH runs AS (
            SELECT coalesce(sum(rows_seen), 0) AS predictions,
                   coalesce(sum(bad_rows), 0) AS bad,
                   coalesce(sum((stage_timings->>'dq_failed_rows')::bigint), 0) AS dq_bad
            FROM monitoring.interval_runs WHERE endpoint_id = %(e)s
        ), errs AS (
            SELECT coalesce(sum(value), 0)::bigint AS errors
            FROM monitoring.operational_metrics WHERE endpoint_id = %(e)s AND metric = 'errors'
        ), latest AS (
            SELECT window_start, window_end, drift_status, dq_state FROM monitoring.interval_runs
            WHERE endpoint_id = %(e)s AND status <> 'failed' ORDER BY window_end DESC LIMIT 1
        )
        UPDATE monitoring.model_endpoints m SET
            prediction_count = runs.predictions,
            error_count = errs.errors + runs.bad + runs.dq_bad,
            first_request = CASE WHEN %(first)s::timestamptz IS NULL THEN m.first_request
                                 ELSE least(m.first_request, %(first)s::timestamptz) END,
            last_request = CASE WHEN %(last)s::timestamptz IS NULL THEN m.last_request
                                ELSE greatest(m.last_request, %(last)s::timestamptz) END,
            last_window_start = latest.window_start, last_window_end = latest.window_end,
            drift_status = latest.drift_status, dq_state = latest.dq_state, updated_at = now()
        FROM runs, errs, latest
        WHERE m.endpoint_id = %(e)s
        """,
        {"e": endpoint_id, "first": first_ts, "last": last_ts},
    )


def list_endpoints(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            """
            SELECT e.endpoint_id, e.project, e.model_name, e.model_version, e.last_window_start,
                   e.last_window_end, e.prediction_count, e.error_count, e.drift_status, e.dq_state,
                   r.rows_seen AS last_rows, r.status AS last_status
            FROM monitoring.model_endpoints e
            LEFT JOIN monitoring.interval_runs r ON r.endpoint_id = e.endpoint_id
                 AND r.window_start = e.last_window_start AND r.window_end = e.last_window_end
            ORDER BY e.project, e.endpoint_id
            """
        )
        return cur.fetchall()


def set_served_model(conn: psycopg.Connection, endpoint_id: str, version: str, artifact: dict[str, Any]) -> None:
    """Put a promoted model in service; windows computed from now on belong to it (with `record_promotion`)."""
    conn.execute(
        "UPDATE monitoring.model_endpoints SET model_version = %s, model_artifact = %s, updated_at = now()"
        " WHERE endpoint_id = %s", (version, document(artifact), endpoint_id))
