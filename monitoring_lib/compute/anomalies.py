"""This window's feature means and KPIs as rolling z-scores against the preceding windows' stored values.

Computed after the window's own results, from the history `results.window.metric_history` reads, and
stored with them as `anomaly` applications.
"""

from __future__ import annotations

import math

import pandas as pd

from monitoring_lib.applications import AppResult
from monitoring_lib.compute.window_results import WindowResults
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.anomaly import rolling_zscores


def anomaly_inputs(results: WindowResults) -> dict[str, float]:
    """The window's values that have a history: feature means (`feature_mean:X`) and KPIs (`kpi:X`)."""
    current: dict[str, float] = {}
    if results.drift is not None:
        for row in results.drift.feature_stats_rows:
            if row["metric"] == "mean" and row["value"] is not None and math.isfinite(row["value"]):
                current[f"feature_mean:{row['feature']}"] = float(row["value"])
    for app in results.apps:
        if app.application == "kpi" and app.value is not None and math.isfinite(app.value):
            current[f"kpi:{app.metric}"] = float(app.value)
    return current


def anomaly_results(history: pd.DataFrame, current: dict[str, float], cfg: EndpointConfig) -> list[AppResult]:
    z = cfg.drift.anomaly_z
    found = rolling_zscores(history, current, window=cfg.drift.anomaly_window, z=z)
    return [
        AppResult("anomaly", a.metric, "anomaly", "anomaly" if a.is_anomaly else "normal", a.zscore,
                  {"value": a.value, "mean": a.mean, "std": a.std,
                   "band_low": None if a.std is None else a.mean - z * a.std,
                   "band_high": None if a.std is None else a.mean + z * a.std})
        for a in found
    ]
