"""Reading the drift history for the policy and recording every decision in `retraining_events`.

A decision to retrain is recorded as `trigger`; the monitoring DAG's trigger then reports its real
outcome (`record_trigger`): `triggered` with the retraining run id, or `trigger_failed` with the error.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.results.tables import document
from monitoring_lib.retraining.policy import Decision, WindowOutcome, decide

# decisions that start the cooldown and count towards the daily cap: decided to retrain and the trigger
# started the run, or has not reported (yet); a decision whose trigger is known to have failed is not one
COUNTED_OUTCOMES = ("trigger", "triggered")


def _outcomes(conn: psycopg.Connection, endpoint_id: str, since: datetime, until: datetime) -> list[WindowOutcome]:
    rows = conn.execute(
        """
        SELECT r.window_start, r.window_end, r.drift_status, r.dq_state,
               coalesce(d.details->'drifted_features', '[]'::jsonb), p.status
        FROM monitoring.interval_runs r
        LEFT JOIN monitoring.drift_summary d ON d.endpoint_id = r.endpoint_id AND d.window_start = r.window_start
             AND d.window_end = r.window_end AND d.metric = 'general_drift'
        LEFT JOIN monitoring.app_results p ON p.endpoint_id = r.endpoint_id AND p.window_start = r.window_start
             AND p.window_end = r.window_end AND p.application = 'performance' AND p.metric = 'estimated'
        WHERE r.endpoint_id = %s AND r.window_end > %s AND r.window_end <= %s
        ORDER BY r.window_end
        """,
        (endpoint_id, since, until),
    ).fetchall()
    return [WindowOutcome(r[0], r[1], r[2], r[3], tuple(r[4]), r[5]) for r in rows]


def decide_and_record(
    conn: psycopg.Connection, cfg: EndpointConfig, window_start: datetime, window_end: datetime, run_id: str
) -> Decision:
    """Evaluate the policy for one window and upsert the decision (re-running the window replaces it)."""
    span = cfg.schedule.interval * (cfg.retraining.lookback_intervals + 1)
    outcomes = _outcomes(conn, cfg.endpoint_id, window_start - span, window_end)
    current = next((o for o in outcomes if o.window_start == window_start and o.window_end == window_end), None)
    if current is None:
        current = WindowOutcome(window_start, window_end, None, None)
    history = [o for o in outcomes if o is not current]
    reach = max(cfg.retraining.cooldown, timedelta(days=1))  # the daily cap spans a full day
    # both sides: a later window may have been decided first (a backfill run newest first)
    triggers = [r[0] for r in conn.execute(
        "SELECT window_end FROM monitoring.retraining_events WHERE endpoint_id = %s AND event_type = 'decision'"
        " AND outcome = ANY(%s) AND NOT (window_start = %s AND window_end = %s)"
        " AND window_end > %s AND window_end < %s",
        (cfg.endpoint_id, list(COUNTED_OUTCOMES), window_start, window_end, window_end - reach, window_end + reach),
    )]
    decision = decide(current, history, triggers, cfg.retraining)
    conn.execute(
        """
        INSERT INTO monitoring.retraining_events
            (endpoint_id, window_start, window_end, event_type, triggered, outcome, reasons, evidence, run_id)
        VALUES (%s, %s, %s, 'decision', %s, %s, %s, %s, %s)
        ON CONFLICT (endpoint_id, window_start, window_end, event_type) DO UPDATE SET
            triggered = EXCLUDED.triggered, outcome = EXCLUDED.outcome, reasons = EXCLUDED.reasons,
            evidence = EXCLUDED.evidence, run_id = EXCLUDED.run_id, trigger_error = NULL, created_at = now()
        """,
        (cfg.endpoint_id, window_start, window_end, decision.trigger,
         "trigger" if decision.trigger else "no_trigger", document(decision.reasons),
         document({**decision.evidence, "drifted_features": decision.drifted_features}),
         run_id if decision.trigger else None),
    )
    return decision


def retraining_run_id(endpoint_id: str, window_end: datetime) -> str:
    """Deterministic, so a repeated monitoring run can never start a second retraining run."""
    return f"retrain__{endpoint_id}__{window_end.strftime('%Y%m%dT%H%M%SZ')}"


def decide_for_report(url: str, cfg: EndpointConfig, report: dict) -> dict | bool:
    """Decide for the window of an interval report; the trigger's conf when retraining is due, else False."""

    start = datetime.fromisoformat(report["window_start"])
    end = datetime.fromisoformat(report["window_end"])
    run_id = retraining_run_id(cfg.endpoint_id, end)
    with connect(url) as conn:
        decision = decide_and_record(conn, cfg, start, end, run_id)
        conn.commit()
    if not decision.trigger:
        return False
    return {"endpoint_id": cfg.endpoint_id, "window_start": report["window_start"], "window_end": report["window_end"],
            "run_id": run_id, "reasons": decision.reasons, "drifted_features": decision.drifted_features}


def record_trigger(url: str, conf: dict, error: str | None = None) -> str:
    """Store the trigger's real outcome on the window's decision row (`conf` as decide_for_report returned it).

    Without `error`: `triggered`, the retraining run `conf["run_id"]` exists. With it: `trigger_failed`,
    `triggered` false and the error kept, so this window neither starts a cooldown nor counts towards the cap.
    """

    outcome = "trigger_failed" if error is not None else "triggered"
    with connect(url) as conn:
        conn.execute(
            "UPDATE monitoring.retraining_events SET outcome = %s, triggered = %s, trigger_error = %s"
            " WHERE endpoint_id = %s AND window_start = %s AND window_end = %s AND event_type = 'decision'"
            " AND run_id = %s",
            (outcome, error is None, error, conf["endpoint_id"], datetime.fromisoformat(conf["window_start"]),
             datetime.fromisoformat(conf["window_end"]), conf["run_id"]),
        )
        conn.commit()
    return outcome
