"""Estimated performance on data with a known answer: covariate shift where the true performance is known.

The tolerance stated and held: under each shift, the realised metric of the window lies inside the
estimate's band (`band_k` 3 times the sampling error from the reference's chunks), and the estimate
moves the way the realised metric does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from monitoring_lib.estimation.estimator import (
    EstimationUnavailable,
    PerformanceEstimator,
    estimate,
    fit_estimator,
    realised,
)
from monitoring_lib.estimation.trees import TreeEnsemble


def _classifier_data(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    x = rng.normal(shift, 1.0, n)
    truth = 1 / (1 + np.exp(-2.0 * x))  # P(y=1 | x)
    score = 1 / (1 + np.exp(-1.0 * x))  # the model's score: right order, under-confident (needs calibration)
    return pd.DataFrame({"x": x, "prediction": score, "label": (rng.random(n) < truth).astype(int)})


def _regression_data(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    x = rng.normal(shift, 1.0, n)
    region = rng.choice(["north", "south"], n)
    noise = (0.5 + np.abs(x)) * np.where(region == "south", 2.0, 1.0)  # errors grow away from 0, and in the south
    target = 3 * x + rng.normal(0, 1, n) * noise
    return pd.DataFrame({"x": x, "region": region, "prediction": 3 * x, "label": target})


def _estimate(est: PerformanceEstimator, df: pd.DataFrame, metric: str):
    return estimate(est, df, metric, possible_drop=0.05, detected_drop=0.1, band_k=3.0, min_rows=100)


@pytest.mark.parametrize("shift", [0.0, 1.0, 2.0])
def test_cbpe_tracks_realised_classification_metrics_under_covariate_shift(shift: float) -> None:
    rng = np.random.default_rng(7)
    ref = _classifier_data(rng, 20_000, 0.0)
    est = fit_estimator(ref, ref["label"], "classification", "prediction", ["x"], [], chunks=10)
    assert est.method == "cbpe" and est.calibration is not None
    window = _classifier_data(rng, 5_000, shift)
    truth = realised("cbpe", window["label"].to_numpy(float), window["prediction"].to_numpy(float))
    result = _estimate(est, window, "roc_auc")
    for m in result.metrics:
        assert m.lower is not None and m.upper is not None
        assert m.lower <= truth[m.metric] <= m.upper, (m, truth[m.metric])
    # the shift moves the rows to where the classes separate better: accuracy rises, and the estimate says so
    if shift >= 2.0:
        acc = next(m for m in result.metrics if m.metric == "accuracy")
        assert acc.value > est.reference["accuracy"] + 0.05


def test_dle_sees_errors_rise_before_labels_land() -> None:
    rng = np.random.default_rng(3)
    ref = _regression_data(rng, 20_000, 0.0)
    est = fit_estimator(ref, ref["label"], "regression", "prediction", ["x"], ["region"], chunks=10)
    assert est.method == "dle" and set(est.losses) == {"mae", "rmse"}
    same = _estimate(est, _regression_data(rng, 5_000, 0.0), "mae")
    assert same.status == "no_drop", same.reason
    shifted = _regression_data(rng, 5_000, 1.5)
    truth = realised("dle", shifted["label"].to_numpy(float), shifted["prediction"].to_numpy(float))
    result = _estimate(est, shifted, "mae")
    for m in result.metrics:
        assert m.lower <= truth[m.metric] <= m.upper, (m, truth[m.metric])
    assert truth["mae"] > 1.4 * est.reference["mae"]
    assert result.status == "drop_detected" and "mae" in result.reason


def test_a_window_with_few_rows_is_not_judged() -> None:
    rng = np.random.default_rng(1)
    ref = _regression_data(rng, 5_000, 0.0)
    est = fit_estimator(ref, ref["label"], "regression", "prediction", ["x"], ["region"], chunks=10)
    result = _estimate(est, ref.head(50), "mae")
    assert result.status == "not_judged" and "50 usable predictions" in result.reason
    assert all(m.value is None for m in result.metrics)


def test_the_estimator_survives_its_json_round_trip() -> None:
    import json
    from dataclasses import asdict

    rng = np.random.default_rng(2)
    ref = _regression_data(rng, 5_000, 0.0)
    est = fit_estimator(ref, ref["label"], "regression", "prediction", ["x"], ["region"], chunks=10)
    back = PerformanceEstimator.from_dict(json.loads(json.dumps(asdict(est))))
    window = _regression_data(rng, 2_000, 1.0)
    assert _estimate(back, window, "mae") == _estimate(est, window, "mae")


def test_class_ids_are_refused_by_cbpe() -> None:
    rng = np.random.default_rng(4)
    ref = _classifier_data(rng, 2_000, 0.0)
    ref["prediction"] = (ref["prediction"] >= 0.5).astype(int)
    with pytest.raises(EstimationUnavailable, match="scores in \\[0, 1\\]"):
        fit_estimator(ref, ref["label"], "classification", "prediction", ["x"], [], chunks=10)


def test_exported_trees_predict_what_scikit_learn_predicts() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5_000, 4))
    x[::7, 1] = np.nan
    y = x[:, 0] ** 2 + np.nan_to_num(x[:, 1]) + rng.normal(size=5_000)
    model = HistGradientBoostingRegressor(max_iter=30, max_depth=5, random_state=0).fit(x, y)
    probe = rng.normal(size=(3_000, 4))
    probe[::3, 1] = np.nan
    probe[::5, 2] = np.inf
    np.testing.assert_allclose(TreeEnsemble.from_model(model).predict(probe), model.predict(probe), rtol=0, atol=1e-9)
