"""The retraining decision of one window: the stored history judged by the policy, and recorded.

A decision to retrain is recorded as `trigger`; the monitoring DAG's trigger then reports its real
outcome (`record_trigger`): `triggered` with the retraining run id, or `trigger_failed` with the error.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.results.retraining_events import (
    decision_ends,
    set_trigger_outcome,
    upsert_decision,
    window_outcomes,
)
from monitoring_lib.retraining.policy import Decision, WindowOutcome, decide

# decisions that start the cooldown and count towards the daily cap: decided to retrain and the trigger
# started the run, or has not reported (yet); a decision whose trigger is known to have failed is not one
COUNTED_OUTCOMES = ("trigger", "triggered")


def _outcomes(conn: psycopg.Connection, endpoint_id: str, since: datetime, until: datetime) -> list[WindowOutcome]:
    return [WindowOutcome(r["window_start"], r["window_end"], r["drift_status"], r["dq_state"],
                          tuple(r["drifted_features"]), r["estimate_status"], tuple(r["drifted_segments"]))
            for r in window_outcomes(conn, endpoint_id, since, until)]


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
    triggers = decision_ends(conn, cfg.endpoint_id, COUNTED_OUTCOMES, window_start, window_end,
                             window_end - reach, window_end + reach)
    decision = decide(current, history, triggers, cfg.retraining)
    evidence = {**decision.evidence, "drifted_features": decision.drifted_features}
    upsert_decision(conn, cfg.endpoint_id, window_start, window_end, trigger=decision.trigger,
                    reasons=decision.reasons, evidence=evidence, run_id=run_id)
    return decision


def retraining_run_id(endpoint_id: str, window_end: datetime) -> str:
    """Deterministic, so a repeated monitoring run can never start a second retraining run."""
    return f"retrain__{endpoint_id}__{window_end.strftime('%Y%m%dT%H%M%SZ')}"


def decide_window(url: str, cfg: EndpointConfig, start: datetime, end: datetime) -> tuple[Decision, str]:
    """Decide for one computed window and record it; the decision and the retraining run id it would start."""
    run_id = retraining_run_id(cfg.endpoint_id, end)
    with connect(url) as conn:
        decision = decide_and_record(conn, cfg, start, end, run_id)
        conn.commit()
    return decision, run_id


def record_trigger(url: str, endpoint_id: str, start: datetime, end: datetime, run_id: str,
                   error: str | None = None) -> str:
    """Store the trigger's real outcome on the window's decision row.

    Without `error`: `triggered`, the retraining run `run_id` exists. With it: `trigger_failed`, `triggered`
    false and the error kept, so this window neither starts a cooldown nor counts towards the cap.
    """
    outcome = "trigger_failed" if error is not None else "triggered"
    with connect(url) as conn:
        set_trigger_outcome(conn, endpoint_id, start, end, run_id, outcome, error)
        conn.commit()
    return outcome
