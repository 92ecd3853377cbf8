"""The retraining decision: a pure function from drift history to a decision with its reasons.

Decisions are values (every one is recorded, trigger or not), so an operator can always answer
"why did (or didn't) this model retrain?" from `monitoring.retraining_events`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitoring_lib.config import RetrainingConfig, format_duration


@dataclass(frozen=True)
class WindowOutcome:
    window_start: datetime
    window_end: datetime
    drift_status: str | None
    dq_state: str | None
    drifted_features: tuple[str, ...] = ()
    performance_status: str | None = None  # the estimated-performance verdict (`performance.estimation`)
    drifted_segments: tuple[str, ...] = ()  # segments at drift_detected against their own reference (`segments`)


@dataclass(frozen=True)
class Decision:
    trigger: bool
    reasons: list[str]
    evidence: dict = field(default_factory=dict)
    drifted_features: list[str] = field(default_factory=list)


def decide(
    current: WindowOutcome,
    history: list[WindowOutcome],
    other_triggers: list[datetime],
    policy: RetrainingConfig,
) -> Decision:
    """Trigger when `min_detected` of the last `lookback_intervals` windows (this one included) detected drift,
    or, with `performance_drop`, an estimated performance drop (`drop_detected`), or, with `segment_drift`,
    drift in one of its segments.

    Never on a window whose data failed quality, never within the cooldown of another trigger, and
    never beyond the daily cap in any 24 hours. `history` holds earlier windows (any order);
    `other_triggers` the window ends of the other windows' triggered decisions, before or after this
    one: windows decided out of order (a backfill run newest first) obey the same limits.
    """
    recent = sorted([w for w in history if w.window_end <= current.window_start], key=lambda w: w.window_end)
    recent = [*recent[-(policy.lookback_intervals - 1):], current] if policy.lookback_intervals > 1 else [current]
    def flagged(w: WindowOutcome) -> bool:
        dropped = policy.performance_drop and w.performance_status == "drop_detected"
        return w.drift_status == "drift_detected" or dropped or (policy.segment_drift and bool(w.drifted_segments))

    detected = [w for w in recent if flagged(w) and w.dq_state != "failed"]
    evidence = {
        "window": [current.window_start.isoformat(), current.window_end.isoformat()],
        "considered": [[w.window_end.isoformat(), w.drift_status, w.dq_state] for w in recent],
        "detected": len(detected),
        "required": policy.min_detected,
    }
    if policy.performance_drop:
        evidence["performance"] = [[w.window_end.isoformat(), w.performance_status] for w in recent]
    if policy.segment_drift:
        evidence["segments"] = [[w.window_end.isoformat(), list(w.drifted_segments)] for w in recent]
    what = " or ".join(["drift", *(["an estimated performance drop"] if policy.performance_drop else []),
                        *(["drift in a segment"] if policy.segment_drift else [])])
    features = sorted({f for w in detected for f in w.drifted_features})
    if not policy.enabled:
        return Decision(False, ["retraining is disabled for this endpoint"], evidence)
    if current.dq_state == "failed":
        return Decision(False, ["this window's data failed quality checks: drift on it never triggers retraining"],
                        evidence)
    if not flagged(current):
        performance = (f" and its estimated performance {current.performance_status or 'unknown'}"
                       if policy.performance_drop else "")
        segments = " and no segment drifted" if policy.segment_drift else ""
        return Decision(False, [f"this window's drift status is {current.drift_status or 'unknown'}{performance}"
                                f"{segments}"], evidence)
    if len(detected) < policy.min_detected:
        return Decision(False, [f"{what} detected in {len(detected)} of the last {len(recent)} window(s); "
                                f"{policy.min_detected} needed"], evidence, features)
    end = current.window_end
    others = [t for t in other_triggers if t != end]
    near = sorted((t for t in others if abs(end - t) < policy.cooldown), key=lambda t: abs(end - t))
    if near:
        return Decision(False, [f"cooldown: retraining was triggered for the window ending {near[0].isoformat()},"
                                f" less than the cooldown of {format_duration(policy.cooldown)} before or after"
                                " this one"], evidence, features)
    if _busiest_day(end, others) >= policy.daily_cap:
        return Decision(False, [f"daily cap of {policy.daily_cap} retraining run(s) reached"], evidence, features)
    others_only = [w for w in detected if w.drift_status != "drift_detected"]
    drops = sum(1 for w in others_only if policy.performance_drop and w.performance_status == "drop_detected")
    by_segment = len(others_only) - drops
    because = "".join([f"; {drops} of them by an estimated performance drop alone" if drops else "",
                       f"; {by_segment} of them by drift in a segment alone" if by_segment else ""])
    named = ", ".join(features) or "none named"
    segments = sorted({s for w in detected for s in w.drifted_segments}) if policy.segment_drift else []
    where = f"; drifted segments: {', '.join(segments)}" if segments else ""
    return Decision(True, [f"{what} detected in {len(detected)} of the last {len(recent)} window(s) "
                           f"(>= {policy.min_detected}){because}; drifted features: {named}{where}"], evidence,
                    features)


def _busiest_day(end: datetime, others: list[datetime]) -> int:
    """The most other triggers in one 24-hour span that also holds `end`."""
    day = timedelta(days=1)
    times = sorted([*(t for t in others if abs(end - t) < day), end])
    return max((sum(1 for t in times if a <= t < a + day) - 1 for a in times if a <= end < a + day), default=0)
