"""Domain-classifier drift: can a model tell the window's rows from the reference's?

A gradient-boosted classifier (scikit-learn's HistGradientBoostingClassifier, categoricals native)
learns "reference or window" on a bounded sample of each, and the out-of-fold ROC AUC says how
separable they are: 0.5 when the window could have come from the reference, towards 1 as it departs
in any way the features can show, joint changes included. It costs a few seconds whatever the
window's size, which is why it is off by default. Both compute modes classify the same samples
(`source.sample_window` takes them in SQL), so they store the same AUC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitoring_lib.drift.tiers import DRIFT_DETECTED, NO_DRIFT, POSSIBLE_DRIFT

# HistGradientBoosting takes at most 255 categories per feature; the rarest beyond this share one code
_MAX_CATEGORIES = 250


@dataclass(frozen=True)
class DomainResult:
    value: float | None  # the AUC; None when the window had too few rows
    status: str | None
    possible: float
    detected: float
    reference_rows: int
    window_rows: int

    def reason(self) -> str | None:
        if self.value is None or self.status in (None, NO_DRIFT):
            return None
        bound = self.detected if self.status == DRIFT_DETECTED else self.possible
        return (f"domain classifier AUC {self.value:.3f} >= {bound:.3g} ({self.status}): a classifier tells "
                f"{self.window_rows} of the window's rows from {self.reference_rows} of the reference's")

    def details(self) -> dict[str, Any]:
        return {"possible": self.possible, "detected": self.detected, "reference_rows": self.reference_rows,
                "window_rows": self.window_rows}


def reference_sample(df: pd.DataFrame, numeric: list[str], categorical: list[str], rows: int) -> dict[str, list[Any]]:
    """Up to `rows` rows of the reference, drawn with a fixed seed, as JSON-ready columns (None: missing)."""
    picked = df.sample(n=min(rows, len(df)), random_state=0)
    out: dict[str, list[Any]] = {}
    for name in numeric:
        x = pd.to_numeric(picked[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        out[name] = [float(v) if np.isfinite(v) else None for v in x]
    for name in categorical:
        out[name] = [None if pd.isna(v) else str(v) for v in picked[name]]
    return out


def _matrix(frames: list[pd.DataFrame], numeric: list[str], categorical: list[str]) -> np.ndarray:
    """Numeric columns as float (non-finite as missing), categoricals as codes shared by both frames."""
    both = pd.concat(frames, ignore_index=True)
    columns = []
    for name in numeric:
        x = pd.to_numeric(both[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        columns.append(np.where(np.isfinite(x), x, np.nan))
    for name in categorical:
        text = both[name].astype("string")
        common = text.value_counts().index[:_MAX_CATEGORIES]
        codes = pd.Categorical(text, categories=sorted(common)).codes.astype(float)
        codes[(codes < 0) & text.notna().to_numpy()] = _MAX_CATEGORIES  # a rare category
        codes[text.isna().to_numpy()] = np.nan
        columns.append(codes)
    return np.column_stack(columns)


def domain_auc(reference: pd.DataFrame, window: pd.DataFrame, numeric: list[str], categorical: list[str],
               folds: int) -> float:
    """Out-of-fold ROC AUC of a classifier separating `window` (1) from `reference` (0)."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # seconds of import, only when enabled
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = _matrix([reference, window], numeric, categorical)
    y = np.r_[np.zeros(len(reference)), np.ones(len(window))]
    mask = [False] * len(numeric) + [True] * len(categorical)
    classifier = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, learning_rate=0.1,
                                                categorical_features=mask, early_stopping=False, random_state=0)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    scores = cross_val_predict(classifier, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def judge_domain(auc: float | None, possible: float, detected: float, reference_rows: int,
                 window_rows: int) -> DomainResult:
    status = None if auc is None else (
        DRIFT_DETECTED if auc >= detected else POSSIBLE_DRIFT if auc >= possible else NO_DRIFT)
    return DomainResult(auc, status, possible, detected, reference_rows, window_rows)
