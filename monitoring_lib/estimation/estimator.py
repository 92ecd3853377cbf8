"""The fitted estimator stored with the reference profile, and one window's estimate with its band.

The band is sampling error, measured rather than assumed: the realised metric's spread over chunks of
the labelled reference, scaled by sqrt(chunk rows / window rows), times `band_k`: where the realised
value should land once the labels do. A window's estimate is judged on the configured metric against
the reference's realised value: past a relative threshold, and further than sampling moves the estimate
itself (its own spread over the same chunks, scaled the same way).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from monitoring_lib.estimation.cbpe import (
    CLASSIFICATION_METRICS,
    THRESHOLD,
    Calibration,
    estimated_metrics,
    fit_calibration,
)
from monitoring_lib.estimation.dle import REGRESSION_METRICS, fit_loss_models
from monitoring_lib.estimation.trees import TreeEnsemble

LOWER_IS_BETTER = frozenset(REGRESSION_METRICS)
DEFAULT_METRIC = {"classification": "roc_auc", "regression": "mae"}


class EstimationUnavailable(ValueError):
    """The training data cannot support an estimator (no labels, no predictions, not a binary score)."""


@dataclass(frozen=True)
class PerformanceEstimator:
    method: Literal["cbpe", "dle"]
    prediction: str
    numeric: tuple[str, ...]  # the loss models' inputs: numeric features, categorical codes, the prediction
    categories: dict[str, tuple[str, ...]]
    reference: dict[str, float]  # each metric realised on the whole reference
    chunk_std: dict[str, float]  # its standard deviation over chunks of `chunk_rows`: the band
    chunk_rows: int
    rows: int
    calibration: Calibration | None = None
    losses: dict[str, TreeEnsemble] = field(default_factory=dict)
    # each estimated metric's standard deviation over the same chunks: how far sampling alone moves an estimate
    estimate_std: dict[str, float] = field(default_factory=dict)

    @property
    def metrics(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.method == "cbpe" else REGRESSION_METRICS

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerformanceEstimator:
        return cls(
            method=d["method"], prediction=d["prediction"], numeric=tuple(d["numeric"]),
            categories={k: tuple(v) for k, v in d["categories"].items()},
            reference={k: float(v) for k, v in d["reference"].items()},
            chunk_std={k: float(v) for k, v in d["chunk_std"].items()}, chunk_rows=int(d["chunk_rows"]),
            rows=int(d["rows"]), calibration=Calibration.from_dict(d["calibration"]) if d.get("calibration") else None,
            losses={k: TreeEnsemble.from_dict(v) for k, v in (d.get("losses") or {}).items()},
            estimate_std={k: float(v) for k, v in (d.get("estimate_std") or {}).items()},
        )


@dataclass(frozen=True)
class EstimatedMetric:
    metric: str
    value: float | None
    lower: float | None
    upper: float | None
    reference: float | None


@dataclass(frozen=True)
class Estimate:
    method: str
    rows: int
    metrics: tuple[EstimatedMetric, ...]
    metric: str  # the judged one
    status: str  # no_drop | possible_drop | drop_detected | not_judged
    reason: str
    segments: tuple[tuple[str, Estimate], ...] = ()  # ('column=value', its estimate), with `segments`

    def judged(self) -> EstimatedMetric | None:
        return next((m for m in self.metrics if m.metric == self.metric), None)

    def details(self) -> dict[str, Any]:
        judged = self.judged()
        return {"method": self.method, "metric": self.metric, "rows": self.rows, "reason": self.reason,
                "lower": judged.lower if judged else None, "upper": judged.upper if judged else None,
                "reference": judged.reference if judged else None}


def realised(method: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The metrics the estimator estimates, from labels: the reference's values and its chunks' spread."""
    if method == "dle":
        err = pred - y
        return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}
    positive = pred >= THRESHOLD
    tp, fp = float(np.sum(positive & (y == 1))), float(np.sum(positive & (y == 0)))
    fn, tn = float(np.sum(~positive & (y == 1))), float(np.sum(~positive & (y == 0)))
    out = {"accuracy": (tp + tn) / len(y), "precision": tp / (tp + fp) if tp + fp else 0.0,
           "recall": tp / (tp + fn) if tp + fn else 0.0, "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0}
    if 0 < y.sum() < len(y):
        from sklearn.metrics import roc_auc_score  # scikit-learn loads only where a reference is fitted

        out["roc_auc"] = float(roc_auc_score(y, pred))
    return out


def loss_inputs(frame: pd.DataFrame, numeric: Sequence[str], categories: Mapping[str, Sequence[str]],
                prediction: str) -> np.ndarray:
    """Numeric features (non-finite as missing), each categorical as its reference code (unseen: missing),
    then the prediction: the columns the loss models split on."""
    cols = [pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan) for c in numeric]
    for name, known in categories.items():
        codes = pd.Categorical(frame[name].astype("string"), categories=list(known)).codes.astype(float)
        cols.append(np.where(codes < 0, np.nan, codes))
    cols.append(pd.to_numeric(frame[prediction], errors="coerce").to_numpy(dtype=float, na_value=np.nan))
    x = np.column_stack(cols) if cols else np.empty((len(frame), 0))
    x[~np.isfinite(x)] = np.nan
    return x


def fit_estimator(frame: pd.DataFrame, label: pd.Series, task: str, prediction: str, numeric: Sequence[str],
                  categorical: Sequence[str], chunks: int) -> PerformanceEstimator:
    """CBPE's calibration or DLE's loss models, fitted on labelled rows the model did not learn from."""
    if prediction not in frame:
        raise EstimationUnavailable(f"the training data has no prediction column '{prediction}'")
    y = pd.to_numeric(label, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    pred = pd.to_numeric(frame[prediction], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    keep = np.isfinite(y) & np.isfinite(pred)
    if task == "classification":
        keep &= (pred >= 0) & (pred <= 1) & np.isin(y, (0.0, 1.0))
        method: Literal["cbpe", "dle"] = "cbpe"
    else:
        method = "dle"
    y, pred, rows = y[keep], pred[keep], frame.loc[keep]
    if len(y) < 2 * chunks or len(y) < 200:
        raise EstimationUnavailable(f"{len(y)} labelled rows with a usable prediction; at least"
                                    f" {max(200, 2 * chunks)} are needed")
    if method == "cbpe":
        if len(np.unique(y)) < 2 or np.all(pred == np.floor(pred)):
            raise EstimationUnavailable("CBPE needs scores in [0, 1] of a binary classifier and both classes"
                                        " among the labels")
        calibration, losses, categories = fit_calibration(pred, y), {}, {}
    else:
        categories = {c: tuple(pd.Series(rows[c]).dropna().astype(str).value_counts().index[:255])
                      for c in categorical}
        x = loss_inputs(rows, numeric, categories, prediction)
        calibration, losses = None, fit_loss_models(x, pred - y)
    chunk_values: dict[str, list[float]] = {}
    chunk_estimates: dict[str, list[float]] = {}
    losses_per_row = _row_losses(losses, loss_inputs(rows, numeric, categories, prediction)) if losses else {}
    for idx in np.array_split(np.arange(len(y)), chunks):
        for metric, value in realised(method, y[idx], pred[idx]).items():
            if math.isfinite(value):
                chunk_values.setdefault(metric, []).append(value)
        guessed = (estimated_metrics(calibration, pred[idx]) if calibration is not None
                   else _losses_of(losses_per_row, idx))
        for metric, value in guessed.items():
            if math.isfinite(value):
                chunk_estimates.setdefault(metric, []).append(value)
    return PerformanceEstimator(
        method=method, prediction=prediction, numeric=tuple(numeric), categories=categories,
        reference=realised(method, y, pred), chunk_std=_stds(chunk_values), chunk_rows=len(y) // chunks,
        rows=len(y), calibration=calibration, losses=losses, estimate_std=_stds(chunk_estimates))


def _stds(values: dict[str, list[float]]) -> dict[str, float]:
    return {m: float(np.std(v, ddof=1)) for m, v in values.items() if len(v) > 1}


def _row_losses(losses: dict[str, TreeEnsemble], x: np.ndarray) -> dict[str, np.ndarray]:
    return {metric: np.clip(model.predict(x), 0.0, None) for metric, model in losses.items()}


def _losses_of(per_row: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, float]:
    return {"mae": float(per_row["mae"][idx].mean()), "rmse": float(np.sqrt(per_row["rmse"][idx].mean()))}


def row_losses(estimator: PerformanceEstimator, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each row's predicted loss per metric (DLE), in the frame's order: computed once for a sample, then
    averaged over the whole and over each segment's rows, so the trees walk every row once."""
    return _row_losses(estimator.losses, loss_inputs(frame, estimator.numeric, estimator.categories,
                                                     estimator.prediction))


def estimate(estimator: PerformanceEstimator, frame: pd.DataFrame, metric: str, possible_drop: float,
             detected_drop: float, band_k: float, min_rows: int,
             losses: Mapping[str, np.ndarray] | None = None) -> Estimate:
    """The window's estimated metrics with their bands, and the verdict on `metric`.

    `losses`: DLE's `row_losses` of `frame`, when already computed for a larger sample it is part of."""
    pred = pd.to_numeric(frame[estimator.prediction], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    usable = np.isfinite(pred) & ((pred >= 0) & (pred <= 1) if estimator.method == "cbpe" else True)
    n = int(usable.sum())
    if n < min_rows:
        empty = tuple(EstimatedMetric(m, None, None, None, estimator.reference.get(m)) for m in estimator.metrics)
        return Estimate(estimator.method, n, empty, metric, "not_judged",
                        f"{n} usable predictions, fewer than the {min_rows} an estimate needs")
    if estimator.method == "cbpe":
        assert estimator.calibration is not None
        values = estimated_metrics(estimator.calibration, pred[usable])
    else:
        per_row = losses if losses is not None else row_losses(estimator, frame)
        values = _losses_of(per_row, np.flatnonzero(usable))
    scale = math.sqrt(estimator.chunk_rows / n)
    metrics = []
    for name in estimator.metrics:
        value = values.get(name)
        value = value if value is not None and math.isfinite(value) else None
        half = band_k * estimator.chunk_std[name] * scale if name in estimator.chunk_std else None
        lower = value - half if value is not None and half is not None else None
        upper = value + half if value is not None and half is not None else None
        metrics.append(EstimatedMetric(name, value, lower, upper, estimator.reference.get(name)))
    noise = band_k * estimator.estimate_std.get(metric, 0.0) * scale
    status, reason = judge(next(m for m in metrics if m.metric == metric), possible_drop, detected_drop, noise)
    return Estimate(estimator.method, n, tuple(metrics), metric, status, reason)


def judge(m: EstimatedMetric, possible_drop: float, detected_drop: float, noise: float) -> tuple[str, str]:
    """A relative fall from the reference (a rise, for an error metric) past a threshold, and by more than
    `noise`, how far sampling alone moves an estimate over as many rows: a change the rows made."""
    if m.value is None or m.reference is None or m.reference == 0:
        return "not_judged", f"estimated {m.metric} has no value or its reference is zero"
    worse = (m.value - m.reference) if m.metric in LOWER_IS_BETTER else (m.reference - m.value)
    drop = worse / abs(m.reference)
    clear = worse > noise
    text = (f"estimated {m.metric} {m.value:.4g} (realised expected in {_fmt(m.lower)} to {_fmt(m.upper)})"
            f" against {m.reference:.4g} on the reference: {'worse' if worse > 0 else 'better'} by {abs(drop):.1%}")
    if clear and drop >= detected_drop:
        return "drop_detected", text
    if clear and drop >= possible_drop:
        return "possible_drop", text
    return "no_drop", text


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.4g}"
