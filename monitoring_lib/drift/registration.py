"""How a drift metric is registered by name: adding one is one function plus the `register` decorator.

Every metric is a pure function `(ref, cur, **params) -> MetricResult` over two aligned count or
probability vectors (the reference profile's bins and the interval's counts against the same edges).
Metric modules (`drift.metrics`) import this one; readers look metrics up through `drift.registry`, which
loads the built-ins first, so no lookup can miss them and neither module imports the other back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class MetricResult:
    value: float
    p_value: float | None = None


MetricFn = Callable[..., MetricResult]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: MetricFn
    kinds: frozenset[str]
    possible: float
    detected: float
    higher_is_worse: bool = True
    # 'distribution': fn(ref_probs, cur_probs); 'counts': fn(ref_counts, cur_counts, **context)
    inputs: Literal["distribution", "counts"] = "distribution"

    def compute(self, ref_counts: np.ndarray, cur_counts: np.ndarray, **context: object) -> MetricResult:
        if self.inputs == "counts":
            return self.fn(np.asarray(ref_counts, float), np.asarray(cur_counts, float), **context)
        return self.fn(_normalise(ref_counts), _normalise(cur_counts))


METRICS: dict[str, MetricSpec] = {}


def register(
    name: str,
    *,
    kinds: tuple[FeatureKind, ...] = ("numeric", "categorical"),
    possible: float,
    detected: float,
    higher_is_worse: bool = True,
    inputs: Literal["distribution", "counts"] = "distribution",
) -> Callable[[MetricFn], MetricFn]:
    def decorate(fn: MetricFn) -> MetricFn:
        if name in METRICS:
            raise ValueError(f"drift metric '{name}' is already registered")
        METRICS[name] = MetricSpec(name, fn, frozenset(kinds), possible, detected, higher_is_worse, inputs)
        return fn

    return decorate


def _normalise(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    total = arr.sum()
    return arr / total if total > 0 else arr
