"""Drift engine: tiers, endpoint rules, summary rows, anomalies, and large-sample behaviour."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitoring_lib.compute.memory.summaries import summarise_and_compute, summarise_frame
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.anomaly import rolling_zscores
from monitoring_lib.drift.engine import compute_drift
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.drift.tiers import (
    DRIFT_DETECTED,
    NO_DRIFT,
    POSSIBLE_DRIFT,
    FeatureScore,
    Thresholds,
    endpoint_verdict,
    feature_thresholds,
    worst,
)
from monitoring_lib.errors import ProfileNotFittedError
from monitoring_lib.reference.fit import fit_reference

NUMERIC = tuple(f"x{i:02d}" for i in range(20))
CATEGORICAL = ("region", "channel")


def make_cfg(numeric=NUMERIC, categorical=CATEGORICAL, **drift: Any) -> EndpointConfig:
    return EndpointConfig.model_validate({
        "endpoint_id": "claims", "project": "p", "model": {"name": "m"},
        "source": {"table": "t", "numeric_features": list(numeric),
                   "categorical_features": list(categorical)},
        "drift": drift,
    })


# ---------------------------------------------------------------- tiers (hand-made scores)

def score(feature: str, value: float | None, possible=0.1, detected=0.2) -> FeatureScore:
    return FeatureScore(feature, "hellinger", value, Thresholds(possible, detected, "constant"))


def test_tier_boundaries_are_inclusive_and_nan_is_not_a_status():
    t = Thresholds(0.1, 0.2, "constant")
    assert [t.tier(v) for v in (0.0999, 0.1, 0.1999, 0.2, 5.0)] == [
        NO_DRIFT, POSSIBLE_DRIFT, POSSIBLE_DRIFT, DRIFT_DETECTED, DRIFT_DETECTED]
    assert t.tier(float("nan")) is None and t.tier(None) is None
    assert worst([NO_DRIFT, None, DRIFT_DETECTED, POSSIBLE_DRIFT]) == DRIFT_DETECTED
    assert worst([]) == NO_DRIFT


def test_one_drifted_feature_among_many_is_not_diluted_by_worst_feature_rule():
    scores = [score(f"f{i}", 0.01) for i in range(49)] + [score("bad", 0.35)]
    verdict = endpoint_verdict(scores, general_drift=0.02, cfg=make_cfg(numeric=("f0",), categorical=()))
    assert verdict.status == DRIFT_DETECTED
    assert verdict.drifted_features == ["bad"]
    assert verdict.reasons == ["feature 'bad': hellinger 0.35 >= 0.2 (drift_detected threshold, constant)"]


def test_weighted_rule_uses_importance_and_worst_or_weighted_takes_the_worse():
    names = ("a", "b", "c")
    scores = [score("a", 0.3), score("b", 0.0), score("c", 0.0)]
    weighted = make_cfg(numeric=names, categorical=(), endpoint_rule="weighted",
                        feature_importance={"a": 0.2, "b": 0.4, "c": 0.4})
    v = endpoint_verdict(scores, 0.0, weighted)
    assert v.status == NO_DRIFT  # 0.2·0.3 = 0.06 < 0.1
    assert any("importance-weighted hellinger 0.06" in r for r in v.reasons)
    heavy = make_cfg(numeric=names, categorical=(), endpoint_rule="weighted",
                     feature_importance={"a": 0.8, "b": 0.1, "c": 0.1})
    assert endpoint_verdict(scores, 0.0, heavy).status == DRIFT_DETECTED  # 0.24 >= 0.2
    either = make_cfg(numeric=names, categorical=(), endpoint_rule="worst_or_weighted",
                      feature_importance={"a": 0.2, "b": 0.4, "c": 0.4})
    assert endpoint_verdict(scores, 0.0, either).status == DRIFT_DETECTED


def test_general_drift_alone_can_raise_the_endpoint_status():
    cfg = make_cfg(numeric=("a",), categorical=())
    v = endpoint_verdict([score("a", 0.05)], general_drift=0.55, cfg=cfg)
    assert v.status == POSSIBLE_DRIFT
    assert v.reasons[0] == "general_drift 0.55 >= 0.5 (possible_drift threshold)"
    assert endpoint_verdict([score("a", 0.05)], 0.7, cfg).status == DRIFT_DETECTED


def _profile_with_calibration(calibration: dict[str, Any]) -> ReferenceProfile:
    df = pd.DataFrame({"a": np.arange(50.0), "b": np.arange(50.0) % 7, "prediction": np.arange(50.0)})
    base = fit_reference(df, make_cfg(numeric=("a", "b"), categorical=()), source="unit")
    return replace(base, calibration=calibration)


def test_threshold_strategies_override_explicit_default_and_calibrated():
    profile = _profile_with_calibration({"a": {"hellinger": {"mean": 0.02, "std": 0.01, "chunks": 10},
                                               "tvd": {"mean": 0.0, "std": 0.0, "chunks": 10}}})
    override = make_cfg(numeric=("a", "b"), categorical=(),
                        feature={"overrides": {"a": {"possible": 0.3, "detected": 0.4}}})
    assert feature_thresholds("a", "hellinger", profile, override) == Thresholds(0.3, 0.4, "override")
    assert feature_thresholds("b", "hellinger", profile, override).source == "default"
    explicit = make_cfg(numeric=("a", "b"), categorical=(), feature={"metric": "psi", "possible": 0.05})
    assert feature_thresholds("a", "psi", profile, explicit) == Thresholds(0.05, 0.25, "constant")
    registry = make_cfg(numeric=("a", "b"), categorical=(), feature={"metric": "psi"})
    assert feature_thresholds("a", "psi", profile, registry) == Thresholds(0.1, 0.25, "default")
    calibrated = make_cfg(numeric=("a", "b"), categorical=(), feature={"mode": "calibrated"})
    t = feature_thresholds("a", "hellinger", profile, calibrated)
    assert (t.possible, t.detected, t.source) == (pytest.approx(0.05), pytest.approx(0.08), "calibrated")
    # a zero-variance chunk set is floored at a quarter of the metric's default band
    t = feature_thresholds("a", "tvd", profile, calibrated)
    assert (t.possible, t.detected) == (pytest.approx(0.025), pytest.approx(0.05))
    with pytest.raises(ProfileNotFittedError, match="feature 'b', metric 'hellinger'"):
        feature_thresholds("b", "hellinger", profile, calibrated)
    # a metric that is only reported falls back to its defaults; an override beats calibration
    assert feature_thresholds("b", "tvd", profile, calibrated).source == "default"
    both = make_cfg(numeric=("a", "b"), categorical=(),
                    feature={"mode": "calibrated", "overrides": {"b": {"possible": 0.3, "detected": 0.4}}})
    assert feature_thresholds("b", "hellinger", profile, both) == Thresholds(0.3, 0.4, "override")


# ---------------------------------------------------------------- engine on small frames

@pytest.fixture(scope="module")
def small() -> tuple[EndpointConfig, ReferenceProfile]:
    rng = np.random.default_rng(11)
    n = 4000
    cfg = make_cfg(numeric=("a", "b"), categorical=("c",), feature={"calibration_chunks": 4})
    df = pd.DataFrame({"a": rng.normal(10, 2, n), "b": rng.uniform(0, 1, n),
                       "c": rng.choice(["x", "y", "z"], n), "prediction": rng.normal(100, 5, n)})
    return cfg, fit_reference(df, cfg, source="unit")


def test_rows_cover_each_feature_and_applicable_metric(small):
    cfg, profile = small
    rng = np.random.default_rng(12)
    df = pd.DataFrame({"a": rng.normal(10, 2, 500), "b": rng.uniform(0, 1, 500),
                       "c": rng.choice(["x", "y", "z", "new"], 500), "prediction": rng.normal(105, 5, 500)})
    result = summarise_and_compute(df, profile, cfg)
    pairs = {(r["feature"], r["metric"]) for r in result.feature_rows}
    numeric_metrics = {"tvd", "hellinger", "kld", "psi", "jensen_shannon", "wasserstein", "ks"}
    categorical_metrics = {"tvd", "hellinger", "kld", "psi", "jensen_shannon", "chi_square"}
    assert pairs == ({("a", m) for m in numeric_metrics} | {("b", m) for m in numeric_metrics}
                     | {("c", m) for m in categorical_metrics})
    ks_row = next(r for r in result.feature_rows if r["feature"] == "a" and r["metric"] == "ks")
    assert 0 <= ks_row["p_value"] <= 1 and ks_row["threshold_detected"] == 0.2
    for key in ("tvd_sum", "tvd_mean", "hellinger_sum", "hellinger_mean", "kld_sum", "kld_mean",
                "general_drift", "drifted_feature_count", "prediction_mean", "training_prediction_mean",
                "prediction_mean_shift", "prediction_hellinger", "prediction_tvd"):
        assert key in result.summary, key
    assert result.summary["general_drift"] == pytest.approx(
        (result.summary["tvd_mean"] + result.summary["hellinger_mean"]) / 2)
    assert result.summary["prediction_mean_shift"] == pytest.approx(
        (df["prediction"].mean() - profile.prediction.mean) / profile.prediction.std)
    stats = {(r["feature"], r["metric"]): r["value"] for r in result.feature_stats_rows}
    assert stats[("c", "unseen_share")] == pytest.approx((df["c"] == "new").mean())
    assert stats[("a", "count")] == 500 and stats[("a", "ref_mean")] == profile.features["a"].mean
    assert stats[("a", "ref_band_high")] == pytest.approx(
        profile.features["a"].mean + 3 * profile.features["a"].std)
    assert ("prediction", "mean") in stats and ("prediction", "p95") in stats
    assert all(isinstance(r["value"], float) and math.isfinite(r["value"]) for r in result.feature_stats_rows)


def test_unfitted_feature_raises_a_clear_error(small):
    _, profile = small
    cfg = make_cfg(numeric=("a", "b", "late_addition"), categorical=("c",))
    with pytest.raises(ProfileNotFittedError, match=r"lacks configured feature\(s\) \['late_addition'\]"):
        compute_drift({}, profile, cfg)


def test_all_null_feature_is_reported_not_tiered(small):
    cfg, profile = small
    df = pd.DataFrame({"a": [np.nan] * 10, "b": np.linspace(0, 1, 10), "c": ["x"] * 10,
                       "prediction": np.full(10, 100.0)})
    result = summarise_and_compute(df, profile, cfg)
    a_rows = [r for r in result.feature_rows if r["feature"] == "a"]
    assert a_rows and all(r["value"] is None and r["status"] is None for r in a_rows)
    assert any("not computed" in r and "'a'" in r for r in result.reasons)


# ---------------------------------------------------------------- anomalies

def test_rolling_zscores_on_long_history():
    history = pd.DataFrame({
        "window_end": pd.date_range("2026-01-01", periods=6, freq="h").tolist() * 2,
        "metric": ["general_drift"] * 6 + ["tvd_mean"] * 6,
        "value": [0.10, 0.12, 0.11, 0.09, 0.10, 0.11] + [0.2] * 6,
    })
    found = {a.metric: a for a in rolling_zscores(history, {"general_drift": 0.30, "tvd_mean": 0.2,
                                                            "new_metric": 1.0}, window=4, z=3.0)}
    prior = np.array([0.11, 0.09, 0.10, 0.11])
    g = found["general_drift"]
    assert g.mean == pytest.approx(prior.mean()) and g.std == pytest.approx(prior.std(ddof=1))
    assert g.zscore == pytest.approx((0.30 - prior.mean()) / prior.std(ddof=1)) and g.is_anomaly
    assert found["tvd_mean"].zscore == 0.0 and not found["tvd_mean"].is_anomaly
    assert found["new_metric"].zscore is None and not found["new_metric"].is_anomaly


def test_rolling_zscores_needs_three_points_and_flags_jumps_off_a_flat_history():
    assert rolling_zscores(pd.DataFrame(), {"a": 2.0}, window=5, z=3.0)[0].zscore is None
    wide = pd.DataFrame({"a": [1.0, 1.0], "b": [0.0, 0.0]})
    assert not rolling_zscores(wide, {"a": 9.0}, window=5, z=3.0)[0].is_anomaly
    wide = pd.DataFrame({"b": [0.0, 0.0, 0.0]})
    (b,) = rolling_zscores(wide, {"b": 1.0}, window=5, z=3.0)
    assert b.is_anomaly and b.zscore == math.inf


# ---------------------------------------------------------------- large samples

def population(n: int, seed: int) -> pd.DataFrame:
    """20 numeric features of assorted shapes, 2 categoricals and a prediction, fixed seeds."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        if i % 4 == 3:
            cols[name] = rng.lognormal(0.0, 0.5, n)
        elif i % 4 == 2:
            cols[name] = rng.exponential(2.0 + i, n)
        else:
            cols[name] = rng.normal(i, 1.0 + i / 10, n)
    cols["region"] = rng.choice(np.array(["north", "south", "east", "west", "centre"]), n,
                                p=[0.35, 0.25, 0.2, 0.15, 0.05])
    cols["channel"] = rng.choice(np.array(["web", "broker", "phone"]), n, p=[0.6, 0.3, 0.1])
    cols["prediction"] = cols["x00"] * 2 + cols["x01"]
    return pd.DataFrame(cols)


CONFIGS = {
    "hellinger_constant": make_cfg(),
    "wasserstein_constant": make_cfg(feature={"metric": "wasserstein"}),
    "hellinger_calibrated": make_cfg(feature={"mode": "calibrated"}),
}


@pytest.fixture(scope="module")
def large() -> dict[str, Any]:
    reference = population(100_000, seed=1)
    current = population(1_000_000, seed=2)
    profile = fit_reference(reference, CONFIGS["hellinger_constant"], source="unit")
    columns = [*NUMERIC, *CATEGORICAL, "prediction"]
    return {"profile": profile, "current": current,
            "summaries": summarise_frame(current, profile, columns, band_k=3.0)}


def _with_column(large: dict[str, Any], name: str, values: np.ndarray) -> dict:
    """Summaries for an interval that differs from `current` in one column only."""
    changed = summarise_frame(pd.DataFrame({name: values}), large["profile"], [name], band_k=3.0)
    return {**large["summaries"], **changed}


def test_large_same_distribution_is_no_drift_in_every_threshold_mode(large):
    profile = large["profile"]
    end_to_end = summarise_and_compute(large["current"], profile, CONFIGS["hellinger_constant"])
    assert end_to_end.status == NO_DRIFT and end_to_end.drifted_features == []
    assert end_to_end.summary["general_drift"] < 0.05
    for name, cfg in CONFIGS.items():
        result = compute_drift(large["summaries"], profile, cfg)
        assert result.status == NO_DRIFT, (name, result.reasons)
        deciding = [r for r in result.feature_rows if r["metric"] == cfg.drift.feature.metric]
        assert len(deciding) == (20 if name.startswith("wasserstein") else 22)
        assert all(r["status"] == NO_DRIFT for r in deciding)


def test_large_tiny_shift_has_tiny_p_value_but_p_values_do_not_decide(large):
    profile = large["profile"]
    ref = profile.features["x05"]
    nudged = large["current"]["x05"].to_numpy() + 0.03 * ref.std
    summaries = _with_column(large, "x05", nudged)
    for name, cfg in CONFIGS.items():
        result = compute_drift(summaries, profile, cfg)
        ks = next(r for r in result.feature_rows if r["feature"] == "x05" and r["metric"] == "ks")
        assert ks["p_value"] < 1e-6 and ks["status"] == NO_DRIFT
        assert result.status == NO_DRIFT, (name, result.reasons)


def test_large_half_std_shift_in_one_feature_is_detected_and_named(large):
    profile = large["profile"]
    ref = profile.features["x04"]
    shifted = large["current"]["x04"].to_numpy() + 0.5 * ref.std
    summaries = _with_column(large, "x04", shifted)
    for name in CONFIGS:  # the default config (hellinger, constant) included
        result = compute_drift(summaries, profile, CONFIGS[name])
        assert result.status == DRIFT_DETECTED, (name, result.reasons)
        assert result.drifted_features == ["x04"]
        assert result.reasons[0].startswith(f"feature 'x04': {CONFIGS[name].drift.feature.metric} ")
        assert result.summary["general_drift"] < 0.5  # the average alone would have hidden it
        assert result.summary["drifted_feature_count"] == 1
    # Hellinger of a 0.5-std shift is about 0.17, above the default detected threshold of 0.15
    hellinger = next(r for r in compute_drift(summaries, profile, CONFIGS["hellinger_constant"]).feature_rows
                     if r["feature"] == "x04" and r["metric"] == "hellinger")
    assert 0.15 < hellinger["value"] < 0.2


def test_large_out_of_range_values_and_unseen_categories_are_counted(large):
    profile = large["profile"]
    ref = profile.features["x00"]
    values = large["current"]["x00"].to_numpy().copy()
    values[:50_000] = ref.max + 10.0
    summaries = _with_column(large, "x00", values)
    region = large["current"]["region"].to_numpy().copy()
    region[:20_000] = "atlantis"
    summaries.update(summarise_frame(pd.DataFrame({"region": region}), profile, ["region"], band_k=3.0))
    assert summaries["x00"].counts[-1] >= 50_000 and summaries["x00"].n == 1_000_000
    assert summaries["region"].unseen_count == 20_000 and summaries["region"].n == 1_000_000
    result = compute_drift(summaries, profile, CONFIGS["hellinger_constant"])
    stats = {(r["feature"], r["metric"]): r["value"] for r in result.feature_stats_rows}
    assert stats[("region", "unseen_share")] == pytest.approx(0.02)
    assert stats[("x00", "outside_band_share")] >= 0.05
