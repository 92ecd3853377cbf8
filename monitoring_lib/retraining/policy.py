"""The retraining decision: a pure function from drift history to a decision with its reasons.

Decisions are values (every one is recorded, trigger or not), so an operator can always answer
"why did (or didn't) this model retrain?" from `monitoring.retraining_events`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitoring_lib.config import RetrainingConfig


@dataclass(frozen=True)
class WindowOutcome:
    window_start: datetime
    window_end: datetime
    drift_status: str | None
    dq_state: str | None
    drifted_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    trigger: bool
    reasons: list[str]
    evidence: dict = field(default_factory=dict)
    drifted_features: list[str] = field(default_factory=list)


def decide(
    current: WindowOutcome,
    history: list[WindowOutcome],
    previous_triggers: list[datetime],
    policy: RetrainingConfig,
) -> Decision:
    """Trigger when `min_detected` of the last `lookback_intervals` windows (this one included) detected drift.

    Never on a window whose data failed quality, never inside the cooldown after a trigger, and
    never beyond the daily cap. `history` holds earlier windows (any order); `previous_triggers`
    the window ends of earlier triggered decisions, excluding this window's own.
    """
    recent = sorted([w for w in history if w.window_end <= current.window_start], key=lambda w: w.window_end)
    recent = [*recent[-(policy.lookback_intervals - 1):], current] if policy.lookback_intervals > 1 else [current]
    detected = [w for w in recent if w.drift_status == "drift_detected" and w.dq_state != "failed"]
    evidence = {
        "window": [current.window_start.isoformat(), current.window_end.isoformat()],
        "considered": [[w.window_end.isoformat(), w.drift_status, w.dq_state] for w in recent],
        "detected": len(detected),
        "required": policy.min_detected,
    }
    features = sorted({f for w in detected for f in w.drifted_features})
    if not policy.enabled:
        return Decision(False, ["retraining is disabled for this endpoint"], evidence)
    if current.dq_state == "failed":
        return Decision(False, ["this window's data failed quality checks: drift on it never triggers retraining"],
                        evidence)
    if current.drift_status != "drift_detected":
        return Decision(False, [f"this window's drift status is {current.drift_status or 'unknown'}"], evidence)
    if len(detected) < policy.min_detected:
        return Decision(False, [f"drift detected in {len(detected)} of the last {len(recent)} window(s); "
                                f"{policy.min_detected} needed"], evidence, features)
    earlier = sorted(t for t in previous_triggers if t < current.window_end)
    if earlier and current.window_end - earlier[-1] < policy.cooldown:
        return Decision(False, [f"cooldown: last retraining was triggered for the window ending "
                                f"{earlier[-1].isoformat()}, less than {policy.cooldown} ago"], evidence, features)
    in_day = [t for t in earlier if current.window_end - t < timedelta(days=1)]
    if len(in_day) >= policy.daily_cap:
        return Decision(False, [f"daily cap of {policy.daily_cap} retraining run(s) reached"], evidence, features)
    return Decision(True, [f"drift detected in {len(detected)} of the last {len(recent)} window(s) "
                           f"(>= {policy.min_detected}); drifted features: {', '.join(features) or 'none named'}"],
                    evidence, features)
