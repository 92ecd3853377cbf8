"""Drift tiers: thresholds as strategies (constant or calibrated) and the endpoint decision rule.

Only metric values decide a tier; p-values are reported alongside but never used, because with
large intervals they flag differences far too small to matter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.drift.registry import get_metric
from monitoring_lib.errors import ProfileNotFittedError

NO_DRIFT = "no_drift"
POSSIBLE_DRIFT = "possible_drift"
DRIFT_DETECTED = "drift_detected"
STATUSES = (NO_DRIFT, POSSIBLE_DRIFT, DRIFT_DETECTED)
_RANK = {s: i for i, s in enumerate(STATUSES)}
# Calibrated thresholds never drop below this share of the metric's default thresholds, so a
# reference whose chunks agree perfectly does not turn sampling noise into drift.
CALIBRATION_FLOOR_SHARE = 0.25


def worst(statuses: Iterable[str | None]) -> str:
    """The most severe status; None entries (not computed) are ignored."""
    ranked = [s for s in statuses if s is not None]
    return max(ranked, key=_RANK.__getitem__) if ranked else NO_DRIFT


@dataclass(frozen=True)
class Thresholds:
    possible: float
    detected: float
    source: str  # default | constant | override | calibrated
    higher_is_worse: bool = True

    def tier(self, value: float | None) -> str | None:
        """Status for a value; None when the value could not be computed."""
        if value is None or not math.isfinite(value):
            return None
        if self.higher_is_worse:
            if value >= self.detected:
                return DRIFT_DETECTED
            return POSSIBLE_DRIFT if value >= self.possible else NO_DRIFT
        if value <= self.detected:
            return DRIFT_DETECTED
        return POSSIBLE_DRIFT if value <= self.possible else NO_DRIFT

    def bound(self, status: str) -> float:
        return self.detected if status == DRIFT_DETECTED else self.possible


def feature_thresholds(
    feature: str, metric: str, profile: ReferenceProfile, cfg: EndpointConfig
) -> Thresholds:
    """Thresholds for one feature and metric under the configured strategy.

    For the deciding metric a per-feature override always wins (explicit intent beats a learned
    band). Constant mode: else the configured band when it was set explicitly, else the metric's
    registered defaults. Calibrated mode: mean + k·std (possible) and mean + 2k·std (detected) of the
    metric across reference chunks, floored; reported-only metrics without calibration use defaults.
    """
    spec = get_metric(metric)
    fcfg = cfg.drift.feature
    deciding = metric == fcfg.metric
    if deciding and feature in fcfg.overrides:
        band = fcfg.overrides[feature]
        return Thresholds(band.possible, band.detected, "override", spec.higher_is_worse)
    if fcfg.mode == "calibrated":
        stats = profile.calibration.get(feature, {}).get(metric)
        if stats is not None:
            return _calibrated(stats, fcfg.calibration_k, spec.possible, spec.detected, spec.higher_is_worse)
        if deciding:
            raise ProfileNotFittedError(
                f"calibrated thresholds need calibration for feature '{feature}', metric '{metric}' in the "
                f"reference profile of '{profile.endpoint_id}'; refit the profile with this metric configured"
            )
    elif deciding and (fcfg.possible is not None or fcfg.detected is not None):
        possible = spec.possible if fcfg.possible is None else fcfg.possible
        detected = spec.detected if fcfg.detected is None else fcfg.detected
        return Thresholds(possible, detected, "constant", spec.higher_is_worse)
    return Thresholds(spec.possible, spec.detected, "default", spec.higher_is_worse)


def _calibrated(
    stats: dict[str, float], k: float, default_possible: float, default_detected: float, higher_is_worse: bool
) -> Thresholds:
    mean, std = stats["mean"], stats["std"]
    if not higher_is_worse:
        return Thresholds(mean - k * std, mean - 2 * k * std, "calibrated", False)
    possible = max(mean + k * std, CALIBRATION_FLOOR_SHARE * default_possible)
    detected = max(mean + 2 * k * std, CALIBRATION_FLOOR_SHARE * default_detected, possible)
    return Thresholds(possible, detected, "calibrated")


@dataclass(frozen=True)
class FeatureScore:
    """The deciding metric's value for one feature, with the thresholds it was judged against."""

    feature: str
    metric: str
    value: float | None
    thresholds: Thresholds

    @property
    def status(self) -> str | None:
        return self.thresholds.tier(self.value)


@dataclass(frozen=True)
class Verdict:
    status: str
    reasons: list[str]
    drifted_features: list[str]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _feature_reason(s: FeatureScore) -> str:
    status = s.status or NO_DRIFT
    op = ">=" if s.thresholds.higher_is_worse else "<="
    bound = _fmt(s.thresholds.bound(status))
    return (f"feature '{s.feature}': {s.metric} {_fmt(s.value or 0.0)} {op} {bound} "
            f"({status} threshold, {s.thresholds.source})")


def _closeness(s: FeatureScore) -> float:
    """Value as a share of its possible-drift threshold, for naming the feature nearest to drifting."""
    value, bound = s.value or 0.0, s.thresholds.possible
    if not bound:
        return 0.0
    return value / bound if s.thresholds.higher_is_worse else bound / value if value else math.inf


def _weighted(scores: Sequence[FeatureScore], cfg: EndpointConfig) -> tuple[str, str] | None:
    """Importance-weighted mean of the deciding metric against the weighted mean thresholds.

    Features missing from `feature_importance` weigh nothing (when it is empty all weigh the same);
    the worst_feature rule still sees every feature.
    """
    importance = cfg.drift.feature_importance
    usable = [s for s in scores if s.status is not None]
    weights = [float(importance.get(s.feature, 0.0)) if importance else 1.0 for s in usable]
    total = sum(weights)
    if not usable:
        return None
    if total <= 0:
        weights, total = [1.0] * len(usable), float(len(usable))
    value = sum(w * (s.value or 0.0) for w, s in zip(weights, usable, strict=True)) / total
    band = Thresholds(
        sum(w * s.thresholds.possible for w, s in zip(weights, usable, strict=True)) / total,
        sum(w * s.thresholds.detected for w, s in zip(weights, usable, strict=True)) / total,
        "weighted",
        usable[0].thresholds.higher_is_worse,
    )
    status = band.tier(value) or NO_DRIFT
    op = ">=" if band.higher_is_worse else "<="
    relation = f"{op} {_fmt(band.bound(status))}" if status != NO_DRIFT else f"below {_fmt(band.possible)}"
    return status, (f"importance-weighted {usable[0].metric} {_fmt(value)} {relation} "
                    f"({status}, weighted thresholds)")


def endpoint_verdict(
    scores: Sequence[FeatureScore], general_drift: float | None, cfg: EndpointConfig
) -> Verdict:
    """Endpoint status = worse of the general-drift tier and the configured feature rule, with reasons."""
    reasons: list[str] = []
    general = Thresholds(cfg.drift.general.possible, cfg.drift.general.detected, "general")
    general_status = general.tier(general_drift) or NO_DRIFT
    if general_status != NO_DRIFT and general_drift is not None:
        reasons.append(f"general_drift {_fmt(general_drift)} >= {_fmt(general.bound(general_status))} "
                       f"({general_status} threshold)")
    ranked = sorted(
        (s for s in scores if s.status is not None),
        key=lambda s: (-_RANK[s.status or NO_DRIFT], s.feature),
    )
    worst_status = worst(s.status for s in ranked)
    rule = cfg.drift.endpoint_rule
    rule_status = NO_DRIFT
    if rule in ("worst_feature", "worst_or_weighted"):
        rule_status = worst_status
        reasons += [_feature_reason(s) for s in ranked if s.status != NO_DRIFT]
    if rule in ("weighted", "worst_or_weighted"):
        weighted = _weighted(ranked, cfg)
        if weighted is not None:
            rule_status = worst((rule_status, weighted[0]))
            if weighted[0] != NO_DRIFT or rule == "weighted":
                reasons.append(weighted[1])
    if rule == "weighted":
        reasons += [_feature_reason(s) for s in ranked if s.status != NO_DRIFT]
    missing = sorted(s.feature for s in scores if s.status is None)
    if missing:
        reasons.append(f"drift not computed (no valid values in the interval) for: {missing}")
    status = worst((general_status, rule_status))
    if status == NO_DRIFT and ranked:
        top = max(ranked, key=_closeness)
        reasons.append(f"no feature reached its possible_drift threshold; closest: '{top.feature}' "
                       f"{top.metric} {_fmt(top.value or 0.0)} vs {_fmt(top.thresholds.possible)}")
    drifted = [s.feature for s in ranked if s.status == DRIFT_DETECTED]
    return Verdict(status, reasons, drifted)
