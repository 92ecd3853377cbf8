"""Drift metrics by name, the built-ins loaded: what config, tiers and the engine look metrics up in.

Config names metrics; a lookup here sees every built-in (`drift.metrics`) because this module imports
them before anything can ask, and the registration mechanics live in `drift.registration`, which the
metric modules import, so the import graph has no circle.
"""

from __future__ import annotations

from monitoring_lib.drift import metrics as _builtins  # noqa: F401  (registers the built-in metrics)
from monitoring_lib.drift.registration import METRICS, MetricResult, MetricSpec, register

__all__ = ["METRICS", "MetricResult", "MetricSpec", "get_metric", "register"]


def get_metric(name: str) -> MetricSpec:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown drift metric '{name}'; known: {sorted(METRICS)}") from None
