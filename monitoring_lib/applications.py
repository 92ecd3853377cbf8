"""Monitoring applications: business KPIs and user functions named in config, all landing in `app_results`.

A user application is `module:function` receiving (data, profile, params) and returning results; one
that raises is recorded as an `error` result and never stops the others or the built-in drift.
"""

from __future__ import annotations

import importlib
import math
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.sql_common import NUMBER_OR_BOOL_TYPES


@dataclass(frozen=True)
class AppResult:
    application: str
    metric: str
    kind: str
    status: str
    value: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> tuple[str, str, str, str, float | None, dict[str, Any]]:
        value = None if self.value is None or not math.isfinite(self.value) else float(self.value)
        return (self.application, self.metric, self.kind, self.status, value, self.extra)


def load_callable(path: str) -> Callable[..., Any]:
    """Import `package.module:function`; errors say which part could not be found."""
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module '{module_name}' has no attribute '{attr}'") from None


def kpi_reads_type(cfg: EndpointConfig, column: str) -> bool:
    """Whether a KPI over `column` depends on its SQL type: the numeric columns are numbers in any valid
    config, and the error column is aggregated as its flag (1 for a failed request, 0 otherwise)."""
    src = cfg.source
    return column not in {*src.numeric_features, src.prediction_column, src.latency_column, src.error_column}


def kpi_only_columns(cfg: EndpointConfig) -> list[str]:
    """Columns only KPIs read (business figures such as savings): read with the window and aggregated, but
    kept out of the checks, which judge the monitored columns."""
    monitored = set(cfg.source.columns())
    return list(dict.fromkeys(kpi.column for kpi in cfg.kpis if kpi.column not in monitored))


def kpi_problem(cfg: EndpointConfig, column: str, types: Mapping[str, str]) -> str | None:
    """Why a KPI over `column` has no value (its result is an error naming the column), or None."""
    if not kpi_reads_type(cfg, column):
        return None
    if column not in types:
        return f"column '{column}' is not in the source"
    if types[column] not in NUMBER_OR_BOOL_TYPES:
        return f"column '{column}' is {types[column]}, not numeric"
    return None


def _coerce(app: str, item: Any) -> AppResult:
    if isinstance(item, AppResult):
        return item
    if isinstance(item, dict):
        return AppResult(
            application=app,
            metric=str(item["name"]),
            kind=str(item.get("kind", "custom")),
            status=str(item.get("status", "ok")),
            value=None if item.get("value") is None else float(item["value"]),
            extra=dict(item.get("extra", {})),
        )
    raise TypeError(f"expected a dict with name/kind/status/value or an AppResult, got {type(item).__name__}")


def run_user_applications(
    df: pd.DataFrame, profile: ReferenceProfile | None, cfg: EndpointConfig
) -> list[AppResult]:
    results: list[AppResult] = []
    for app in cfg.applications:
        try:
            fn = load_callable(app.callable)
            produced = fn(df, profile, **app.params) or []
            results += [_coerce(app.name, item) for item in produced]
        except Exception as exc:  # a user's bug is recorded as a result, never hidden and never fatal
            results.append(AppResult(app.name, "application_error", "error", "error", None, {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=5),
            }))
    return results
