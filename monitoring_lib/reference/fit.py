"""Fit a reference profile once per model version; every interval is then compared with it.

Numeric columns get equal-width bins over the reference [min, max], cut at Tukey's far-out fences,
plus two open outer bins, so later values beyond that range are counted rather than dropped: one
outlier in the training data would otherwise stretch the bins until the bulk of the data sits in one.
Categorical columns keep their category frequencies plus an unseen bucket. Calibration measures
how much each metric moves between chunks of the reference itself, which calibrated thresholds build on.
With `drift.multivariate`, the profile also holds the PCA of the standardised numeric features; with
`performance.estimation`, the estimator fitted on the labelled rows (`estimation.estimator`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from monitoring_lib.compute.memory.multivariate import feature_matrix
from monitoring_lib.compute.memory.segments import split_by_segment
from monitoring_lib.compute.memory.summaries import category_counts, summarise_frame
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.domain import reference_sample
from monitoring_lib.drift.engine import column_metric
from monitoring_lib.drift.multivariate import fit_multivariate
from monitoring_lib.drift.profile import (
    QUANTILES,
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    ReferenceProfile,
    SegmentProfile,
)
from monitoring_lib.drift.segments import choose_values
from monitoring_lib.drift.stable import mean_std
from monitoring_lib.drift.summaries import QUANTILE_KEYS, bin_counts
from monitoring_lib.errors import SourceError
from monitoring_lib.estimation.estimator import EstimationUnavailable, PerformanceEstimator, fit_estimator


def finite_values(raw: pd.Series) -> np.ndarray:
    """Numeric values with NaN, ±inf and non-numeric entries removed (they count as nulls here)."""
    x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return x[np.isfinite(x)]


# Tukey's "far out" fences: beyond 3 interquartile ranges from the quartiles
_FENCE = 3.0


def numeric_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """Equal-width edges over [lo, hi]; a constant column gets a narrow band around its value."""
    if hi > lo:
        if math.isfinite(hi - lo):
            return np.linspace(lo, hi, bins + 1)
        return np.linspace(lo / 2, hi / 2, bins + 1) * 2  # halving is exact and keeps the step finite
    pad = max(abs(lo) * 1e-6, 1e-9)
    return np.linspace(lo - pad, hi + pad, bins + 1)


def inner_range(lo: float, hi: float, quantiles: dict[str, float]) -> tuple[float, float]:
    """The span of the inner bins: [lo, hi] (the column's min and max) cut at 3 interquartile ranges
    beyond the quartiles, from the column's fitted `quantiles`.

    A column whose quartiles coincide (mostly one value) is fenced by its 1st and 99th percentiles
    instead, and one with no spread there either keeps [min, max], so two distinct values never
    share a bin. Values beyond the fences are counted in the outer bins.
    """
    for a, b in ((quantiles["p25"], quantiles["p75"]), (quantiles["p01"], quantiles["p99"])):
        spread = b - a
        if spread > 0 and math.isfinite(spread):
            return max(lo, a - _FENCE * spread), min(hi, b + _FENCE * spread)
    return lo, hi


def fit_numeric(name: str, raw: pd.Series, bins: int) -> NumericProfile:
    v = finite_values(raw)
    if v.size == 0:
        raise SourceError(f"cannot fit a reference for numeric column '{name}': it has no finite values")
    lo, hi = float(v.min()), float(v.max())
    quantiles = dict(zip(QUANTILE_KEYS, (float(q) for q in np.quantile(v, QUANTILES)), strict=True))
    edges = numeric_edges(*inner_range(lo, hi, quantiles), bins)
    mean, std = mean_std(v)
    profile = NumericProfile(
        name=name,
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in bin_counts(v, edges)),
        count=int(v.size),
        null_count=int(len(raw) - v.size),
        mean=mean,
        std=std,
        min=lo,
        max=hi,
        quantiles=quantiles,
    )
    _check_finite(profile)
    return profile


def _check_finite(col: NumericProfile) -> None:
    """A statistic that overflows float8 cannot be stored (JSON has no Infinity) nor compared against."""
    stats = {"mean": col.mean, "std": col.std, "edges": max(map(abs, col.edges)), **col.quantiles}
    bad = [k for k, x in stats.items() if not math.isfinite(x)]
    if bad:
        raise SourceError(
            f"cannot fit a reference for numeric column '{col.name}': its values span beyond what a"
            f" float8 can describe ({', '.join(bad)} overflow; values from {col.min!r} to {col.max!r});"
            " remove the sentinel values or list the column as categorical"
        )


def fit_categorical(name: str, raw: pd.Series) -> CategoricalProfile:
    freq = category_counts(raw)
    if not freq:
        raise SourceError(f"cannot fit a reference for categorical column '{name}': it has no values")
    ordered = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
    return CategoricalProfile(
        name=name,
        categories=tuple(k for k, _ in ordered),
        counts=(*(c for _, c in ordered), 0),
        count=sum(freq.values()),
        null_count=int(raw.isna().sum()),
    )


def fit_inferred(name: str, raw: pd.Series, bins: int) -> ColumnProfile:
    """Predictions and labels: numeric dtype gets a histogram, anything else (classes) frequencies."""
    if is_numeric_dtype(raw.dtype) and not is_bool_dtype(raw.dtype):
        return fit_numeric(name, raw, bins)
    return fit_categorical(name, raw)


def calibrate(
    df: pd.DataFrame, profile: ReferenceProfile, cfg: EndpointConfig
) -> dict[str, dict[str, dict[str, float]]]:
    """Each metric's mean/std over reference chunks compared with the whole reference.

    Chunks are contiguous (a time-ordered reference keeps its temporal variation). Their size is
    len(reference)/chunks; metric noise shrinks with sample size, so chunks near the interval size
    give the most faithful thresholds.
    """
    chunks = min(cfg.drift.feature.calibration_chunks, len(df))
    if chunks < 2:
        return {}
    names = list(dict.fromkeys((*cfg.drift.metrics, cfg.drift.feature.metric)))
    features = list(profile.features)
    values: dict[str, dict[str, list[float]]] = {f: {m: [] for m in names} for f in features}
    for idx in np.array_split(np.arange(len(df)), chunks):
        summaries = summarise_frame(df.iloc[idx], profile, features, cfg.drift.band_k)
        for feature in features:
            col = profile.features[feature]
            for name in names:
                result = column_metric(name, col, summaries[feature].counts)
                if result is not None and np.isfinite(result.value):
                    values[feature][name].append(result.value)
    return {
        feature: {
            name: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                   "chunks": float(len(v))}
            for name, v in per_metric.items() if v
        }
        for feature, per_metric in values.items()
    }


def fit_reference(
    df: pd.DataFrame, cfg: EndpointConfig, *, source: str, label: pd.Series | None = None
) -> ReferenceProfile:
    """Learn the reference profile (bins, moments, frequencies, null rates, calibration) once."""
    src = cfg.source
    missing = [c for c in src.features if c not in df.columns]
    if missing:
        raise SourceError(f"reference data for '{cfg.endpoint_id}' lacks configured columns: {missing}")
    if df.empty:
        raise SourceError(f"reference data for '{cfg.endpoint_id}' has no rows")
    bins = cfg.drift.bins
    features: dict[str, ColumnProfile] = {}
    for name in src.numeric_features:
        features[name] = fit_numeric(name, df[name], bins)
    for name in src.categorical_features:
        features[name] = fit_categorical(name, df[name])
    # Training sets often hold no predictions; then prediction drift is not computed for this profile.
    prediction = (fit_inferred(src.prediction_column, df[src.prediction_column], bins)
                  if src.prediction_column in df.columns else None)
    label_profile = None
    if label is not None:
        label_name = cfg.labels.label_column if cfg.labels else (label.name or "label")
        label_profile = fit_inferred(str(label_name), label, bins)
    rows = len(df)
    fitted = [*features.values(), *([prediction] if prediction is not None else [])]
    null_rates = {c.name: c.null_count / rows for c in fitted}
    if label_profile is not None and len(label):
        null_rates[label_profile.name] = label_profile.null_count / len(label)
    profile = ReferenceProfile(
        endpoint_id=cfg.endpoint_id,
        model_version=cfg.model.version,
        features=features,
        prediction=prediction,
        label=label_profile,
        row_count=rows,
        source=source,
        null_rates=null_rates,
    )
    multivariate = None
    mv = cfg.drift.multivariate
    if mv.enabled:
        covered = mv.features or src.numeric_features
        multivariate = fit_multivariate(feature_matrix(df, tuple(covered)), tuple(covered), mv.variance_share,
                                        cfg.drift.feature.calibration_chunks)
    sample = None
    if cfg.drift.domain_classifier.enabled:
        sample = reference_sample(df, list(src.numeric_features), list(src.categorical_features),
                                  cfg.drift.domain_classifier.sample_rows)
    return replace(profile, calibration=calibrate(df, profile, cfg), multivariate=multivariate,
                   reference_sample=sample, estimator=_estimator(df, label, cfg),
                   segments=fit_segments(df, profile, cfg))


def fit_segments(df: pd.DataFrame, profile: ReferenceProfile, cfg: EndpointConfig) -> tuple[SegmentProfile, ...]:
    """Each segment column's values (configured, or the `top_k` most frequent, then `other`) and each value's own
    fitted columns: a numeric feature binned over the segment's own values, a categorical one over the
    profile's categories. The reference a window's segment is compared with."""
    out = []
    bins = cfg.drift.bins
    for column in cfg.segments.columns:
        values = choose_values(df[column], column, cfg.segments.values, cfg.segments.top_k)
        parts = split_by_segment(df, SegmentProfile(column, values, (), {}))
        fitted: dict[str, list[ColumnProfile | None]] = {f: [] for f in profile.features}
        for part in parts:
            for name, col in profile.features.items():
                fitted[name].append(_segment_column(name, part[name], col, bins))
        out.append(SegmentProfile(column, values, tuple(len(p) for p in parts),
                                  {f: tuple(c) for f, c in fitted.items()}))
    return tuple(out)


def _segment_column(name: str, raw: pd.Series, col: ColumnProfile, bins: int) -> ColumnProfile | None:
    if isinstance(col, NumericProfile):
        if finite_values(raw).size == 0:
            return None
        return fit_numeric(name, raw, bins)
    seen = category_counts(raw)
    known = [seen.pop(c, 0) for c in col.categories]
    return replace(col, counts=(*known, sum(seen.values())), count=sum(known) + sum(seen.values()),
                   null_count=int(raw.isna().sum()))


def _estimator(df: pd.DataFrame, label: pd.Series | None, cfg: EndpointConfig) -> PerformanceEstimator | None:
    """The performance estimator, when `performance.estimation` is on; training data that cannot support
    one is an error naming why, not a profile that silently estimates nothing."""
    if not cfg.performance.estimation.enabled:
        return None
    src = cfg.source
    if label is None:
        raise SourceError(f"{cfg.endpoint_id}: performance.estimation: the training data has no label column"
                          f" '{cfg.labels.label_column if cfg.labels else '?'}' to fit the estimator on")
    try:
        return fit_estimator(df, label, cfg.model.task, src.prediction_column, src.numeric_features,
                             src.categorical_features, cfg.drift.feature.calibration_chunks)
    except EstimationUnavailable as exc:
        raise SourceError(f"{cfg.endpoint_id}: performance.estimation: {exc}") from exc
