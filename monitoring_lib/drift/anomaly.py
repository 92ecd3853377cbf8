"""Rolling z-scores of summary metrics against their own recent history.

Thresholds say whether a value is bad in absolute terms; this says whether it is unusual for this
endpoint, which catches a sudden jump that is still below every drift threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitoring_lib.drift.stable import mean_std

MIN_HISTORY = 3


@dataclass(frozen=True)
class Anomaly:
    metric: str
    value: float
    mean: float | None
    std: float | None
    zscore: float | None
    is_anomaly: bool


def _wide(history: pd.DataFrame) -> pd.DataFrame:
    """Accept long rows (metric, value[, window_end]) as stored, or one column per metric in time order."""
    if {"metric", "value"} <= set(history.columns):
        long = history
        if "window_end" in history.columns:
            long = history.sort_values("window_end", kind="stable")
        long = long.assign(_seq=long.groupby("metric").cumcount())
        return long.pivot(index="_seq", columns="metric", values="value")
    return history


def rolling_zscores(history: pd.DataFrame, current: dict[str, float], window: int, z: float) -> list[Anomaly]:
    """z = (current − mean of the previous `window` values) / their std, per metric in `current`.

    Needs at least three prior points; a flat history (std 0) makes any change an anomaly.
    """
    wide = _wide(history)
    out: list[Anomaly] = []
    for metric, raw_value in current.items():
        value = float(raw_value)
        prior = np.array([], dtype=float)
        if metric in wide.columns:
            col = pd.to_numeric(wide[metric], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            prior = col[np.isfinite(col)][-window:]
        if prior.size < MIN_HISTORY or not math.isfinite(value):
            out.append(Anomaly(metric, value, None, None, None, False))
            continue
        mean, std = mean_std(prior)
        if std > 0:
            score = (value - mean) / std
        else:
            score = 0.0 if value == mean else math.copysign(math.inf, value - mean)
        out.append(Anomaly(metric, value, mean, std, score, abs(score) > z))
    return out
