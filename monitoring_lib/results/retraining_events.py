"""`retraining_events`: each window's retraining decision and, when a run was started, its training outcome.

One row per (endpoint, window, event type): `decision` rows are written by the monitoring run and updated by
the trigger's callback; `training` rows by the retraining DAG. Both are upserts, so a re-run replaces.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from monitoring_lib.results.tables import document


def window_outcomes(conn: psycopg.Connection, endpoint_id: str, since: datetime,
                    until: datetime) -> list[dict[str, Any]]:
    """The windows ending in (since, until], oldest first: drift, data quality, drifted features and the
    estimated-performance verdict, what the retraining policy judges."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT r.window_start, r.window_end, r.drift_status, r.dq_state,
                   coalesce(d.details->'drifted_features', '[]'::jsonb) AS drifted_features,
                   p.status AS estimate_status,
                   coalesce((SELECT jsonb_agg(s.metric ORDER BY s.metric) FROM monitoring.app_results s
                             WHERE s.endpoint_id = r.endpoint_id AND s.window_start = r.window_start
                               AND s.window_end = r.window_end AND s.application = 'segment'
                               AND s.status = 'drift_detected'), '[]'::jsonb) AS drifted_segments
            FROM monitoring.interval_runs r
            LEFT JOIN monitoring.drift_summary d ON d.endpoint_id = r.endpoint_id
                 AND d.window_start = r.window_start AND d.window_end = r.window_end AND d.metric = 'general_drift'
            LEFT JOIN monitoring.app_results p ON p.endpoint_id = r.endpoint_id AND p.window_start = r.window_start
                 AND p.window_end = r.window_end AND p.application = 'performance' AND p.metric = 'estimated'
            WHERE r.endpoint_id = %s AND r.window_end > %s AND r.window_end <= %s
            ORDER BY r.window_end
            """,
            (endpoint_id, since, until),
        ).fetchall()


def decision_ends(conn: psycopg.Connection, endpoint_id: str, outcomes: tuple[str, ...], window_start: datetime,
                  window_end: datetime, since: datetime, until: datetime) -> list[datetime]:
    """Window ends of other windows' decisions with one of `outcomes`, ending in (since, until)."""
    return [r[0] for r in conn.execute(
        "SELECT window_end FROM monitoring.retraining_events WHERE endpoint_id = %s AND event_type = 'decision'"
        " AND outcome = ANY(%s) AND NOT (window_start = %s AND window_end = %s)"
        " AND window_end > %s AND window_end < %s",
        (endpoint_id, list(outcomes), window_start, window_end, since, until),
    )]


def upsert_decision(conn: psycopg.Connection, endpoint_id: str, window_start: datetime, window_end: datetime, *,
                    trigger: bool, reasons: list[str], evidence: dict[str, Any], run_id: str | None) -> None:
    """The window's decision; re-deciding replaces it and forgets the earlier trigger's error."""
    conn.execute(
        """
        INSERT INTO monitoring.retraining_events
            (endpoint_id, window_start, window_end, event_type, triggered, outcome, reasons, evidence, run_id)
        VALUES (%s, %s, %s, 'decision', %s, %s, %s, %s, %s)
        ON CONFLICT (endpoint_id, window_start, window_end, event_type) DO UPDATE SET
            triggered = EXCLUDED.triggered, outcome = EXCLUDED.outcome, reasons = EXCLUDED.reasons,
            evidence = EXCLUDED.evidence, run_id = EXCLUDED.run_id, trigger_error = NULL, created_at = now()
        """,
        (endpoint_id, window_start, window_end, trigger, "trigger" if trigger else "no_trigger",
         document(reasons), document(evidence), run_id if trigger else None),
    )


def set_trigger_outcome(conn: psycopg.Connection, endpoint_id: str, window_start: datetime, window_end: datetime,
                        run_id: str, outcome: str, error: str | None) -> None:
    """The trigger's real outcome on the decision that asked for run `run_id`."""
    conn.execute(
        "UPDATE monitoring.retraining_events SET outcome = %s, triggered = %s, trigger_error = %s"
        " WHERE endpoint_id = %s AND window_start = %s AND window_end = %s AND event_type = 'decision'"
        " AND run_id = %s",
        (outcome, error is None, error, endpoint_id, window_start, window_end, run_id),
    )


def training_outcome(conn: psycopg.Connection, endpoint_id: str, window_start: datetime,
                     window_end: datetime) -> dict[str, Any] | None:
    """The finished training (promoted or rejected) recorded for the window, if any."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT outcome, model_version_before, model_version_after, evidence FROM monitoring.retraining_events"
            " WHERE endpoint_id = %s AND window_start = %s AND window_end = %s AND event_type = 'training'"
            " AND outcome IN ('promoted', 'rejected')", (endpoint_id, window_start, window_end)).fetchone()


def upsert_training(conn: psycopg.Connection, endpoint_id: str, window_start: datetime, window_end: datetime, *,
                    outcome: str, before: str, after: str | None, evidence: dict[str, Any], reasons: list[str],
                    run_id: str | None) -> None:
    """The window's training outcome, with both model versions and the evidence compared."""
    conn.execute(
        """
        INSERT INTO monitoring.retraining_events (endpoint_id, window_start, window_end, event_type, triggered,
            outcome, reasons, evidence, run_id, model_version_before, model_version_after)
        VALUES (%s, %s, %s, 'training', true, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (endpoint_id, window_start, window_end, event_type) DO UPDATE SET
            outcome = EXCLUDED.outcome, reasons = EXCLUDED.reasons, evidence = EXCLUDED.evidence,
            model_version_before = EXCLUDED.model_version_before,
            model_version_after = EXCLUDED.model_version_after, created_at = now()
        """,
        (endpoint_id, window_start, window_end, outcome, document(reasons), document(evidence), run_id, before,
         after))


def started_and_trained(conn: psycopg.Connection, endpoint_id: str) -> list[dict[str, Any]]:
    """Decisions that started a retraining run, and training outcomes, oldest window first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT window_end, event_type, outcome, reasons, model_version_before, model_version_after"
            " FROM monitoring.retraining_events WHERE endpoint_id = %s AND (triggered OR event_type = 'training')"
            " ORDER BY window_end, event_type", (endpoint_id,)).fetchall()
