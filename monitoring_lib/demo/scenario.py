"""What happens during the simulated period, written down as data.

A scenario is a tuple of phases, each starting at an offset (in hours) from the start of the period.
The simulator reads it; tests and the demo's narration read the same object, so "the incident was at
hour 26" is stated once. Effects of drift and shift phases persist to the end of the period unless
the phase says otherwise; incidents and spikes last their `hours`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

MIN_DEFAULT_HOURS = 8


@dataclass(frozen=True, kw_only=True)
class Phase:
    """A stretch of the period: hours [start_hour, start_hour + hours); `hours=None` runs to the end."""

    name: str
    start_hour: int
    hours: int | None = None

    def __post_init__(self) -> None:
        if self.start_hour < 0:
            raise ValueError(f"phase '{self.name}': start_hour must be >= 0")
        if self.hours is not None and self.hours < 1:
            raise ValueError(f"phase '{self.name}': hours must be >= 1")

    def covers(self, hour: int) -> bool:
        return hour >= self.start_hour and (self.hours is None or hour < self.start_hour + self.hours)

    def end_hour(self, period_hours: int) -> int:
        return period_hours if self.hours is None else min(self.start_hour + self.hours, period_hours)


@dataclass(frozen=True, kw_only=True)
class Quiet(Phase):
    """Traffic from the training population: the baseline every later phase is compared with."""


@dataclass(frozen=True, kw_only=True)
class GradualDrift(Phase):
    """The mean of `feature` rises linearly over `ramp_hours` by `shift_std` reference standard deviations,
    then holds. Values are scaled (claims inflation), so they stay positive and keep their shape."""

    feature: str = "claimed_amount"
    shift_std: float = 1.2
    ramp_hours: int = 12

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ramp_hours < 1:
            raise ValueError(f"phase '{self.name}': ramp_hours must be >= 1")


@dataclass(frozen=True)
class FeatureShift:
    """new = old * scale + add."""

    feature: str
    scale: float = 1.0
    add: float = 0.0


@dataclass(frozen=True, kw_only=True)
class SuddenShift(Phase):
    """From one hour to the next the population changes (e.g. a new partner selling to older cars)."""

    shifts: tuple[FeatureShift, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SegmentShift(Phase):
    """The population of one segment changes while the others do not (a partner in one region brings in
    long-standing customers): visible against that region's own reference, hidden in the population's mix."""

    column: str = "region"
    value: str = "west"
    shifts: tuple[FeatureShift, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RelationBreak(Phase):
    """An upstream join pairs rows wrongly: `feature`'s values are shuffled among the phase's rows, so its
    distribution is unchanged while its relation to every other feature is gone (multivariate drift)."""

    feature: str = "claimed_amount"


@dataclass(frozen=True, kw_only=True)
class QualityIncident(Phase):
    """An upstream bug: the logged rows carry nulls, infinities, impossible values, retried requests
    logged twice, an unknown region code and clock-skewed (negative) latencies."""

    null_features: tuple[str, ...] = ("repair_estimate", "policy_tenure")
    null_share: float = 0.08
    inf_feature: str = "market_value"
    inf_share: float = 0.02
    out_of_range: tuple[FeatureShift, ...] = (
        FeatureShift("vehicle_age", scale=0.0, add=250.0),
        FeatureShift("claimed_amount", scale=-1.0),
    )
    out_of_range_share: float = 0.03
    duplicate_share: float = 0.04
    unseen_feature: str = "region"
    unseen_category: str = "offshore"
    unseen_share: float = 0.10
    negative_latency_share: float = 0.02


@dataclass(frozen=True, kw_only=True)
class LatencySpike(Phase):
    """The serving backend degrades: latency multiplies and a share of requests time out with an error."""

    latency_factor: float = 6.0
    error_rate: float = 0.08
    timeout_ms: float = 3_000.0


@dataclass(frozen=True)
class Scenario:
    """The phases plus the shape of normal traffic (daily cycle, latency, error rate, label delay)."""

    phases: tuple[Phase, ...]
    daily_amplitude: float = 0.35
    peak_hour_utc: int = 14
    base_latency_ms: float = 45.0
    latency_sigma: float = 0.35
    base_error_rate: float = 0.002
    label_delay_hours: tuple[float, float] = (2.0, 6.0)
    name: str = field(default="insurance-claims demo")

    def __post_init__(self) -> None:
        low, high = self.label_delay_hours
        if not 0 <= low <= high:
            raise ValueError("label_delay_hours must be (low, high) with 0 <= low <= high")
        if not 0 <= self.daily_amplitude < 1:
            raise ValueError("daily_amplitude must be in [0, 1)")

    def active(self, hour: int, kind: type[Phase] = Phase) -> list[Phase]:
        """Phases of `kind` in effect at hour offset `hour`."""
        return [p for p in self.phases if isinstance(p, kind) and p.covers(hour)]

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(f"no phase named '{name}' in scenario '{self.name}'")


def current_hour(now: datetime | None = None) -> datetime:
    """The start of the current UTC hour: the default end of the simulated period."""
    return to_hour(now or datetime.now(UTC))


def to_hour(moment: datetime) -> datetime:
    """`moment` in UTC, truncated to the hour; a naive datetime is taken to be UTC."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def period(end: datetime, hours: int) -> tuple[datetime, datetime]:
    """[start, end) of a period of `hours` hours ending at the hour `end` is truncated to."""
    if hours < 1:
        raise ValueError("hours must be >= 1")
    end = to_hour(end)
    return end - timedelta(hours=hours), end


def default_scenario(hours: int = 36) -> Scenario:
    """The demo story laid out over `hours` (proportionally to the 36-hour original):

    quiet hours 0-9 (but for hours 2-4, where the west region's policy tenures rise by 3.5 years while
    every other region's stay put, and hour 6, where claimed amounts are paired with the wrong claims:
    each feature's distribution unchanged, their relation broken), claims inflation ramping over hours
    10-21, older cheaper vehicles from hour 22, a data-quality incident at hour 26 and a latency spike
    with errors at hour 30; labels land 2-6 hours after each prediction, so the final hours have none yet.
    """
    if hours < MIN_DEFAULT_HOURS:
        raise ValueError(f"the default scenario needs at least {MIN_DEFAULT_HOURS} hours, got {hours}")

    def at(hour_of_36: float) -> int:
        return int(round(hour_of_36 * hours / 36))

    drift_start = max(at(10), 2)
    shift_start = max(at(22), drift_start + 2)
    incident = max(at(26), shift_start + 1)
    spike = max(at(30), incident + 1)
    if spike >= hours - 1:
        spike, incident = hours - 2, hours - 3
    # one hour, after a quiet one and two quiet hours before the drift: a lone drifted window the
    # retraining policy (2 of the last 3) never counts with the drift's; a shorter period has no break
    relation_break = min(at(6), drift_start - 3)
    breaks = (RelationBreak(name="mismatched_claims", start_hour=relation_break, hours=1, feature="claimed_amount"),
              ) if relation_break >= 1 else ()
    # quiet hours in which one region's policy tenures rise: before the relation break, never next to it
    tenure_start = at(2)
    regional = (SegmentShift(name="west_long_tenures", start_hour=tenure_start, hours=max(at(3), 1), column="region",
                             value="west", shifts=(FeatureShift("policy_tenure", add=3.5),)),
                ) if relation_break >= 1 and tenure_start + max(at(3), 1) < relation_break else ()
    return Scenario(
        phases=(
            Quiet(name="quiet", start_hour=0, hours=drift_start),
            *regional,
            *breaks,
            GradualDrift(
                name="claims_inflation",
                start_hour=drift_start,
                feature="claimed_amount",
                shift_std=1.2,
                ramp_hours=max(shift_start - drift_start, 2),
            ),
            SuddenShift(
                name="older_fleet",
                start_hour=shift_start,
                shifts=(FeatureShift("vehicle_age", add=5.0), FeatureShift("market_value", scale=0.55)),
            ),
            QualityIncident(name="data_quality_incident", start_hour=incident, hours=1),
            LatencySpike(name="latency_spike", start_hour=spike, hours=1),
        )
    )
