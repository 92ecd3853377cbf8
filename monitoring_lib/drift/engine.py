"""Compare one interval's column summaries with the reference profile: metrics, tiers, summary rows.

The engine works on `ColumnSummary` values only, so the same code serves in-memory intervals and
summaries aggregated inside the database. Its output rows are shaped for the long/narrow tables
`feature_drift`, `drift_summary` and `feature_stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.domain import DomainResult
from monitoring_lib.drift.multivariate import MultivariateResult, WindowError, judge
from monitoring_lib.drift.profile import ColumnProfile, MultivariateProfile, NumericProfile, ReferenceProfile
from monitoring_lib.drift.registry import MetricResult, get_metric
from monitoring_lib.drift.summaries import ColumnSummary
from monitoring_lib.drift.tiers import (
    DRIFT_DETECTED,
    POSSIBLE_DRIFT,
    FeatureScore,
    endpoint_verdict,
    feature_thresholds,
    worst,
)
from monitoring_lib.errors import MonitoringError, ProfileNotFittedError

# Always computed for the summary (MLRun's general drift and the dashboards' sums/means).
SUMMARY_METRICS = ("tvd", "hellinger", "kld")


@dataclass(frozen=True)
class DriftResult:
    """One interval's drift outcome, already shaped as rows for the summary tables."""

    feature_rows: list[dict[str, Any]]
    summary: dict[str, float]
    status: str
    reasons: list[str] = field(default_factory=list)
    drifted_features: list[str] = field(default_factory=list)
    feature_stats_rows: list[dict[str, Any]] = field(default_factory=list)
    multivariate: MultivariateResult | None = None
    domain: DomainResult | None = None


def metric_context(col: ColumnProfile) -> dict[str, object]:
    """What count-based metrics need to know about the reference besides its counts."""
    if isinstance(col, NumericProfile):
        return {"edges": col.edges, "ref_std": col.std, "ref_min": col.min, "ref_max": col.max}
    return {}


def column_metric(
    metric: str, col: ColumnProfile, cur_counts: tuple[int, ...] | np.ndarray
) -> MetricResult | None:
    """One metric of one column against its reference, or None when the metric does not apply to its kind."""
    spec = get_metric(metric)
    if col.kind not in spec.kinds:
        return None
    if len(cur_counts) != len(col.counts):
        raise MonitoringError(
            f"column '{col.name}': interval counts have {len(cur_counts)} slots, the profile "
            f"{len(col.counts)}; the summary was built against a different profile"
        )
    return spec.compute(np.asarray(col.counts), np.asarray(cur_counts), **metric_context(col))


def _num(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def check_profile(profile: ReferenceProfile, cfg: EndpointConfig) -> None:
    missing = [f for f in cfg.source.features if f not in profile.features]
    if missing:
        raise ProfileNotFittedError(
            f"reference profile for '{profile.endpoint_id}' (model {profile.model_version}, version "
            f"{profile.version}) lacks configured feature(s) {missing}; refit it with the current config"
        )
    kinds = {**{f: "numeric" for f in cfg.source.numeric_features},
             **{f: "categorical" for f in cfg.source.categorical_features}}
    wrong = [f for f, k in kinds.items() if profile.features[f].kind != k]
    if wrong:
        raise ProfileNotFittedError(
            f"reference profile for '{profile.endpoint_id}' has a different kind for {wrong} than the "
            "config; refit it"
        )


def _stats_rows(s: ColumnSummary, col: ColumnProfile, band_k: float) -> list[dict[str, Any]]:
    """Expected-vs-actual numbers for one column; values that cannot be computed are left out."""
    total = s.total
    values: dict[str, float | None] = {
        "count": float(s.n),
        "null_count": float(s.null_count),
        "invalid_count": float(s.invalid_count),
        "null_share": s.null_count / total if total else None,
    }
    if isinstance(col, NumericProfile):
        values.update(mean=s.mean, std=s.std, min=s.min, max=s.max, **s.quantiles)
        values["outside_band_share"] = s.outside_band / s.n if s.n else None
        values.update(ref_mean=col.mean, ref_std=col.std, ref_min=col.min, ref_max=col.max,
                      ref_band_low=col.mean - band_k * col.std, ref_band_high=col.mean + band_k * col.std)
        values.update({f"ref_{k}": v for k, v in col.quantiles.items()})
    else:
        values["unseen_share"] = s.unseen_count / s.n if s.n else None
        values["ref_categories"] = float(len(col.categories))
    return [{"feature": s.name, "metric": k, "value": _num(v)}
            for k, v in values.items() if _num(v) is not None]


def compute_drift(
    summaries: dict[str, ColumnSummary], profile: ReferenceProfile, cfg: EndpointConfig,
    multivariate_error: WindowError | None = None, domain: DomainResult | None = None,
) -> DriftResult:
    """Per-feature metrics and tiers, summary metrics and the endpoint status for one interval.

    `multivariate_error`: the window's reconstruction error for `drift.multivariate`; `domain`: the
    domain classifier's verdict for `drift.domain_classifier`."""
    check_profile(profile, cfg)
    deciding = cfg.drift.feature.metric
    metrics = list(dict.fromkeys((*cfg.drift.metrics, deciding)))
    feature_rows: list[dict[str, Any]] = []
    per_metric: dict[str, list[float]] = {m: [] for m in (*metrics, *SUMMARY_METRICS)}
    scores: list[FeatureScore] = []
    stats_rows: list[dict[str, Any]] = []
    for feature in cfg.source.features:
        if feature not in summaries:
            raise MonitoringError(f"no interval summary for configured feature '{feature}'")
        col, summary = profile.features[feature], summaries[feature]
        results: dict[str, MetricResult] = {}
        for metric in dict.fromkeys((*metrics, *SUMMARY_METRICS)):
            result = column_metric(metric, col, summary.counts)
            if result is None:
                continue
            results[metric] = result
            if math.isfinite(result.value):
                per_metric[metric].append(result.value)
        for metric in metrics:
            if metric not in results:
                continue
            result = results[metric]
            thresholds = feature_thresholds(feature, metric, profile, cfg)
            value = _num(result.value)
            feature_rows.append({
                "feature": feature, "metric": metric, "value": value, "p_value": _num(result.p_value),
                "threshold_possible": thresholds.possible, "threshold_detected": thresholds.detected,
                "status": thresholds.tier(value),
            })
            if metric == deciding:
                scores.append(FeatureScore(feature, metric, value, thresholds))
        stats_rows += _stats_rows(summary, col, cfg.drift.band_k)

    summary_values: dict[str, float | None] = {}
    for metric, values in per_metric.items():
        if metric in SUMMARY_METRICS:
            summary_values[f"{metric}_sum"] = float(np.sum(values)) if values else None
        summary_values[f"{metric}_mean"] = float(np.mean(values)) if values else None
    tvd_mean, hel_mean = summary_values["tvd_mean"], summary_values["hellinger_mean"]
    general = (tvd_mean + hel_mean) / 2 if tvd_mean is not None and hel_mean is not None else None
    summary_values["general_drift"] = general
    verdict = endpoint_verdict(scores, general, cfg)
    summary_values["drifted_feature_count"] = float(sum(s.status == DRIFT_DETECTED for s in scores))
    summary_values["possible_drift_feature_count"] = float(sum(s.status == POSSIBLE_DRIFT for s in scores))
    summary_values.update(_prediction_summary(summaries, profile, cfg))
    pred = _prediction_column(summaries, profile, cfg)
    if pred is not None:
        stats_rows += _stats_rows(summaries[pred.name], pred, cfg.drift.band_k)
    status, reasons = verdict.status, verdict.reasons
    multivariate, note = _multivariate(profile, cfg, multivariate_error)
    if multivariate is not None and multivariate.value is not None:
        summary_values["reconstruction_error"] = multivariate.value
        summary_values["reconstruction_error_lower"] = multivariate.lower_detected
        summary_values["reconstruction_error_upper"] = multivariate.upper_detected
        # the documented rule: the endpoint's status is the worse of the univariate verdict and this tier
        status = worst((status, multivariate.status))
    if note:
        reasons = [note, *reasons]
    domain_note = _domain_note(profile, cfg, domain)
    if domain is not None and domain.value is not None:
        summary_values["domain_classifier_auc"] = domain.value
        status = worst((status, domain.status))  # the same rule as the multivariate tier
    if domain_note:
        reasons = [domain_note, *reasons]
    return DriftResult(
        feature_rows=feature_rows,
        summary={k: v for k, v in summary_values.items() if _num(v) is not None},  # type: ignore[misc]
        status=status,
        reasons=reasons,
        drifted_features=verdict.drifted_features,
        feature_stats_rows=stats_rows,
        multivariate=multivariate,
        domain=domain if domain is not None and domain.value is not None else None,
    )


def multivariate_model(profile: ReferenceProfile | None, cfg: EndpointConfig) -> MultivariateProfile | None:
    """The fitted model a compute mode computes the window's error for, when `drift.multivariate` applies."""
    mv = cfg.drift.multivariate
    if not mv.enabled or profile is None or profile.multivariate is None:
        return None
    covered = tuple(mv.features or cfg.source.numeric_features)
    return profile.multivariate if profile.multivariate.features == covered else None


def _multivariate(
    profile: ReferenceProfile, cfg: EndpointConfig, error: WindowError | None
) -> tuple[MultivariateResult | None, str | None]:
    """The multivariate tier and the reason to report (a drift, or why it was not computed)."""
    mv = cfg.drift.multivariate
    if not mv.enabled:
        return None, None
    model = multivariate_model(profile, cfg)
    if model is None:
        return None, ("multivariate drift not computed: the reference profile was fitted without "
                      "drift.multivariate or for other features; refit it (mlmon fit-reference)")
    if error is None:
        return None, "multivariate drift not computed for this window"
    result = judge(model, error, mv.possible_k, mv.detected_k)
    return result, result.reason()


def _domain_note(profile: ReferenceProfile, cfg: EndpointConfig, domain: DomainResult | None) -> str | None:
    dc = cfg.drift.domain_classifier
    if not dc.enabled:
        return None
    if domain is None:
        if profile.reference_sample is None or set(profile.reference_sample) != set(cfg.source.features):
            return ("domain classifier not computed: the reference profile holds no sample of the configured"
                    " features; refit it (mlmon fit-reference)")
        return "domain classifier not computed for this window"
    if domain.value is None:
        return (f"domain classifier not judged: {min(domain.window_rows, domain.reference_rows)} rows in a sample,"
                f" fewer than drift.domain_classifier.min_rows ({dc.min_rows})")
    return domain.reason()


def _prediction_column(
    summaries: dict[str, ColumnSummary], profile: ReferenceProfile, cfg: EndpointConfig
) -> ColumnProfile | None:
    name = cfg.source.prediction_column
    if profile.prediction is None or profile.prediction.name != name or name not in summaries:
        return None
    return profile.prediction


def _prediction_summary(
    summaries: dict[str, ColumnSummary], profile: ReferenceProfile, cfg: EndpointConfig
) -> dict[str, float | None]:
    """How far the model's output moved: mean shift in reference std units and two distances."""
    col = _prediction_column(summaries, profile, cfg)
    if col is None:
        return {}
    s = summaries[col.name]
    out: dict[str, float | None] = {}
    for metric in ("hellinger", "tvd"):
        result = column_metric(metric, col, s.counts)
        out[f"prediction_{metric}"] = result.value if result is not None else None
    if isinstance(col, NumericProfile):
        out["prediction_mean"] = s.mean
        out["training_prediction_mean"] = col.mean
        if s.mean is not None and col.std > 0:
            out["prediction_mean_shift"] = (s.mean - col.mean) / col.std
    return out


def prediction_columns(profile: ReferenceProfile, cfg: EndpointConfig) -> list[str]:
    """The prediction column when the profile holds its reference distribution, else nothing."""
    pred = cfg.source.prediction_column
    return [pred] if profile.prediction is not None and profile.prediction.name == pred else []
