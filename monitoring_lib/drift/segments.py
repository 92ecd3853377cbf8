"""Per-segment drift: each segment of a window against the same segment of the reference.

A segment is one value of a categorical column (`segments`), the named values plus `other`. The
reference profile keeps each segment's own fitted columns (its own bins: a region whose amounts span a
tenth of the population's range still gets every bin), so a segment's window counts, summarised
against them in either compute mode, are compared with its own reference by the same metrics,
thresholds and endpoint rule as the whole population: a shift inside one region that the
population's mix hides is found and named. Evidently's GroupBy compares a
group with the whole reference; here the reference is split too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.engine import DriftResult, column_metric, compute_drift
from monitoring_lib.drift.profile import OTHER_SEGMENT, ColumnProfile, ReferenceProfile, SegmentProfile
from monitoring_lib.drift.summaries import ColumnSummary
from monitoring_lib.drift.tiers import feature_thresholds

TOO_SMALL = "too_small"
_DRAWS = 200  # samples per noise floor: its 99th percentile rests on the largest few


@dataclass(frozen=True)
class SegmentCounts:
    """What both compute modes give per segment: the features' summaries and the operational counts."""

    column: str
    value: str
    rows: int
    summaries: Mapping[str, ColumnSummary]
    errors: int | None
    latency_avg: float | None


@dataclass(frozen=True)
class SegmentResult:
    column: str
    value: str
    rows: int
    reference_rows: int
    status: str  # no_drift | possible_drift | drift_detected | too_small
    drift: DriftResult | None
    missing: int  # null or non-finite feature values in the segment's rows
    errors: int | None
    latency_avg: float | None

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"

    def details(self) -> dict[str, Any]:
        drift = self.drift
        return {"column": self.column, "value": self.value, "rows": self.rows, "reference_rows": self.reference_rows,
                "drifted_features": list(drift.drifted_features) if drift else [],
                "reasons": list(drift.reasons) if drift else [], "missing_values": self.missing,
                "errors": self.errors, "latency_avg": self.latency_avg}


def category_codes(raw: pd.Series, categories: tuple[str, ...]) -> np.ndarray:
    """Each value's position among `categories` by its text (as `category_counts` keys it: a whole float as an
    integer), `len(categories)` for any other value, -1 for a null. Text columns are matched without a
    Python call per row; text held by Arrow (how the window is read) is matched by Arrow itself, about 20 times
    faster than building a pandas Categorical from it."""
    nulls = raw.isna().to_numpy()
    if raw.dtype != object and pd.api.types.is_string_dtype(raw.dtype):
        found = pc.index_in(pa.array(raw.array), value_set=pa.array(list(categories), type=pa.string()))
        codes = found.fill_null(len(categories)).to_numpy(zero_copy_only=False).astype(np.int64)
        codes[nulls] = -1
        return codes
    if raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype):
        text = raw.astype("string") if raw.dtype != object else raw.where(~nulls, None).map(
            lambda v: v if v is None or isinstance(v, str) else _key(v))
    else:
        text = raw.map(lambda v: None if pd.isna(v) else _key(v))
    codes = pd.Categorical(text, categories=list(categories)).codes.astype(np.int64)
    codes[codes < 0] = len(categories)
    codes[nulls] = -1
    return codes


def _key(v: object) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def segment_keys(raw: pd.Series, seg: SegmentProfile) -> np.ndarray:
    """Each row's segment index: its value's text (as `category_counts` keys it) among the named values, else
    `other` (unnamed values and nulls)."""
    codes = category_codes(raw, seg.values[:-1])
    codes[codes < 0] = len(seg.values) - 1
    return codes


def choose_values(raw: pd.Series, column: str, explicit: Mapping[str, tuple[str, ...]], top_k: int) -> tuple[str, ...]:
    """The named values of a segment column: the configured ones, else the `top_k` most frequent; `other` last."""
    if column in explicit:
        return (*explicit[column], OTHER_SEGMENT)
    keys = raw.dropna().map(_key)
    counts = keys.value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return (*(k for k, _ in ordered[:top_k] if k != OTHER_SEGMENT), OTHER_SEGMENT)


def segment_columns(profile: ReferenceProfile, seg: SegmentProfile, i: int) -> dict[str, ColumnProfile]:
    """Segment `i`'s own fitted columns, the profile's where the segment had no usable reference value (such a
    segment is never judged; its counts still say how many values it had)."""
    return {name: seg.features[name][i] or col for name, col in profile.features.items()}


def segment_reference(profile: ReferenceProfile, seg: SegmentProfile, i: int) -> ReferenceProfile | None:
    """The profile of segment `i` alone: each feature fitted on the segment's reference rows (None when a
    feature had no usable value there)."""
    features = {name: seg.features[name][i] for name in profile.features}
    if any(col is None for col in features.values()):
        return None
    return replace(profile, features=features, prediction=None, multivariate=None,  # type: ignore[arg-type]
                   reference_sample=None, calibration={}, segments=())


def segment_config(cfg: EndpointConfig) -> EndpointConfig:
    """The endpoint's drift rules for one segment: the whole-row methods stay with the whole window, and
    thresholds learned from the whole reference's chunks give way to the configured ones."""
    data = cfg.model_dump(by_alias=True)
    data["drift"] = {**data["drift"], "multivariate": {"enabled": False}, "domain_classifier": {"enabled": False}}
    if data["drift"]["feature"].get("mode") == "calibrated":  # chunks of the whole reference: not a segment's noise
        data["drift"]["feature"] = {**data["drift"]["feature"], "mode": "constant"}
    return EndpointConfig.model_validate({**data, "source_file": cfg.source_file})


def noise_floor(col: ColumnProfile, metric: str, rows: int, seed: int) -> float | None:
    """The 99th percentile of `metric` between the segment's reference and samples of `rows` rows drawn from
    it: what sampling alone gives at the segment's size (a small segment's histogram is noisy)."""
    probabilities = col.probabilities
    if rows <= 0 or probabilities.sum() <= 0:
        return None
    draws = np.random.default_rng(seed).multinomial(rows, probabilities, size=_DRAWS)
    shares = draws / rows
    if metric == "hellinger":  # the registered formulas, on all draws at once (these two are most deciding)
        values = np.sqrt(np.clip(0.5 * np.square(np.sqrt(shares) - np.sqrt(probabilities)).sum(axis=1), 0.0, 1.0))
    elif metric == "tvd":
        values = 0.5 * np.abs(shares - probabilities).sum(axis=1)
    else:
        values = np.array([r.value for r in (column_metric(metric, col, d) for d in draws) if r is not None])
    values = values[np.isfinite(values)]
    return float(np.quantile(values, 0.99)) if values.size else None


def noise_aware(rules: EndpointConfig, own: ReferenceProfile, summaries: Mapping[str, ColumnSummary],
                seed: int) -> EndpointConfig:
    """`rules` with each feature's thresholds on the deciding metric raised to at least its noise floor at the
    segment's size (`noise_floor`), the gap between the tiers kept: a segment drifts only beyond its noise."""
    metric = rules.drift.feature.metric
    overrides = {}
    for i, (name, col) in enumerate(own.features.items()):
        thresholds = feature_thresholds(name, metric, own, rules)
        observed = column_metric(metric, col, summaries[name].counts)
        if not thresholds.higher_is_worse or observed is None or not observed.value >= thresholds.possible:
            continue  # below its thresholds: a higher floor changes nothing, and the draws are the cost
        floor = noise_floor(col, metric, summaries[name].n, seed + i)
        if floor is None or floor <= thresholds.possible:
            continue
        overrides[name] = {"possible": floor, "detected": floor + thresholds.detected - thresholds.possible}
    if not overrides:
        return rules
    data = rules.model_dump(by_alias=True)
    feature = data["drift"]["feature"]
    data["drift"]["feature"] = {**feature, "overrides": {**feature.get("overrides", {}), **overrides}}
    return EndpointConfig.model_validate({**data, "source_file": rules.source_file})


def judge_segments(counts: list[SegmentCounts], profile: ReferenceProfile, cfg: EndpointConfig) -> tuple[
        SegmentResult, ...]:
    """Each segment's drift against its own reference, beyond its noise; a segment with too few rows on either
    side is `too_small`."""
    by_column = {seg.column: seg for seg in profile.segments}
    rules = segment_config(cfg)
    out = []
    for c in counts:
        seg = by_column[c.column]
        i = seg.values.index(c.value)
        reference_rows = seg.rows[i]
        if reference_rows == 0 and c.rows == 0:  # `other` when the named values are all there are
            continue
        missing = sum(s.null_count + s.invalid_count for s in c.summaries.values())
        drift = None
        own = segment_reference(profile, seg, i)
        if own is not None and c.rows >= cfg.segments.min_rows and reference_rows >= cfg.segments.min_rows:
            seed = 1_000 * (list(by_column).index(c.column) + 1) + 100 * i
            drift = compute_drift(dict(c.summaries), own, noise_aware(rules, own, c.summaries, seed))
        out.append(SegmentResult(c.column, c.value, c.rows, reference_rows, drift.status if drift else TOO_SMALL,
                                 drift, missing, c.errors, c.latency_avg))
    return tuple(out)
