"""Confidence-based performance estimation (CBPE) for a binary classifier's scores.

A calibrated score is the probability that the row's label is 1, so each row contributes its expected
share to the confusion matrix: a predicted positive (score >= 0.5) with calibrated probability p is
p of a true positive and 1 - p of a false positive. Summed over a window, these give expected accuracy,
precision, recall and F1; the expected ROC curve, from the scores sorted, gives ROC AUC. The estimate
holds while the relation between score and label stays as in the reference (covariate shift); a change
in that relation (concept drift) is what the realised metrics, once labels land, reveal.

The calibration map is stored as knots of a piecewise-linear function on [0, 1]: isotonic regression
is one already; Platt scaling is sampled on a fine grid. Which one is chosen by the Brier score of a
5-fold cross-validation on the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

THRESHOLD = 0.5
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
_PLATT_GRID = 201
_FOLDS = 5


@dataclass(frozen=True)
class Calibration:
    method: str  # isotonic | platt
    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return np.clip(np.interp(scores, self.x, self.y), 0.0, 1.0)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(str(d["method"]), tuple(map(float, d["x"])), tuple(map(float, d["y"])))


def _isotonic(scores: np.ndarray, labels: np.ndarray) -> Calibration:
    from sklearn.isotonic import IsotonicRegression  # scikit-learn loads only where a reference is fitted

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)
    x, y = np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float)
    # the ends continue flat, as `out_of_bounds="clip"` does; 0.5 becomes a knot so the cut is exact
    grid = np.unique(np.concatenate([[0.0, THRESHOLD, 1.0], x]))
    return Calibration("isotonic", tuple(grid.tolist()), tuple(np.interp(grid, x, y).tolist()))


def _platt(scores: np.ndarray, labels: np.ndarray) -> Calibration:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(scores)[:, None], labels)
    grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, _PLATT_GRID), np.quantile(scores, np.linspace(0, 1, 101))]))
    return Calibration("platt", tuple(grid.tolist()), tuple(lr.predict_proba(_logit(grid)[:, None])[:, 1].tolist()))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_calibration(scores: np.ndarray, labels: np.ndarray) -> Calibration:
    """The calibration map with the lower cross-validated Brier score on the reference."""
    order = np.random.default_rng(0).permutation(len(scores))
    folds = np.array_split(order, _FOLDS)
    brier = {"isotonic": 0.0, "platt": 0.0}
    for i, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != i])
        if len(np.unique(labels[train])) < 2:
            continue
        for name, fit in (("isotonic", _isotonic), ("platt", _platt)):
            brier[name] += float(np.sum((fit(scores[train], labels[train])(scores[test]) - labels[test]) ** 2))
    best = min(brier, key=lambda k: (brier[k], k != "isotonic"))
    return (_isotonic if best == "isotonic" else _platt)(scores, labels)


def estimated_metrics(calibration: Calibration, scores: np.ndarray) -> dict[str, float]:
    """Expected accuracy, precision, recall, F1 and ROC AUC of `scores` (in [0, 1]) from calibration alone."""
    p = calibration(scores)
    positive = scores >= THRESHOLD
    tp, fp = float(p[positive].sum()), float((1 - p[positive]).sum())
    fn, tn = float(p[~positive].sum()), float((1 - p[~positive]).sum())
    n = len(scores)
    out = {"accuracy": (tp + tn) / n if n else float("nan"),
           "precision": tp / (tp + fp) if tp + fp > 0 else 0.0,
           "recall": tp / (tp + fn) if tp + fn > 0 else 0.0,
           "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0}
    out["roc_auc"] = _expected_auc(scores, p)
    return out


def _expected_auc(scores: np.ndarray, p: np.ndarray) -> float:
    """Area under the expected ROC curve: rows by falling score, ties as one step, trapezoids between."""
    positives, negatives = float(p.sum()), float((1 - p).sum())
    if positives <= 0 or negatives <= 0:
        return float("nan")
    values, inverse = np.unique(-scores, return_inverse=True)
    tp = np.concatenate([[0.0], np.cumsum(np.bincount(inverse, weights=p, minlength=len(values)))]) / positives
    fp = np.concatenate([[0.0], np.cumsum(np.bincount(inverse, weights=1 - p, minlength=len(values)))]) / negatives
    return float(np.trapezoid(tp, fp))
