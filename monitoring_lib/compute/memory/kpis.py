"""The pandas form of the business KPIs: each KPI over the finite values of its column in the frame.

`compute.database.kpis.KpiPlan` is the SQL form; both follow the rules of `applications` (`kpi_problem`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from monitoring_lib.applications import AppResult, kpi_problem, kpi_reads_type
from monitoring_lib.config import EndpointConfig


def _kpi_values(series: pd.Series, pgtype: str | None) -> np.ndarray:
    """The finite numbers a KPI aggregates, from the column as `normalise_frame` leaves it."""
    if pgtype == "bool" and not pd.api.types.is_bool_dtype(series):  # a categorical's text, 'True'/'False'
        series = series.astype("string").map({"True": 1.0, "False": 0.0})
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return values[np.isfinite(values)]


def compute_kpis(
    df: pd.DataFrame, cfg: EndpointConfig, types: Mapping[str, str], kpi_only: pd.DataFrame | None = None
) -> list[AppResult]:
    """Each KPI over the finite values of its column in the window: NULL, NaN and ±Infinity are left out,
    as SQL aggregates leave out NULL. `types` (SQL type per column) is needed only where `kpi_reads_type`;
    `kpi_only` holds the `kpi_only_columns`."""
    results = []
    for kpi in cfg.kpis:
        frame = kpi_only if kpi_only is not None and kpi.column in kpi_only else df
        problem = kpi_problem(cfg, kpi.column, types)
        if problem is None and kpi.column not in frame:
            problem = f"column '{kpi.column}' is not in the source"
        if problem is not None:
            results.append(AppResult("kpi", kpi.name, "business_kpi", "error", None, {"error": problem}))
            continue
        values = _kpi_values(frame[kpi.column], types.get(kpi.column) if kpi_reads_type(cfg, kpi.column) else None)
        if kpi.agg == "count":
            value = float(len(values))
        elif kpi.agg == "sum":
            value = float(values.sum())
        else:
            value = float(getattr(values, kpi.agg)()) if len(values) else math.nan
        results.append(AppResult("kpi", kpi.name, "business_kpi", "ok", value, {"column": kpi.column, "agg": kpi.agg}))
    return results
