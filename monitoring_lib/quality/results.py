"""A check's result: its shape, and Great Expectations' formulas for the checks evaluated without GX.

Three evaluators give these results: GX itself, vectorised pandas (`native`) and SQL (`in_database`).
The formulas live here once, so the three agree by construction and a stored row never says which
evaluator produced it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from monitoring_lib.quality.suite import ExpectationSpec

NOT_NULL = "ExpectColumnValuesToNotBeNull"
UNIQUE = "ExpectColumnValuesToBeUnique"
BETWEEN = "ExpectColumnValuesToBeBetween"
IN_SET = "ExpectColumnValuesToBeInSet"
COLUMNS_MATCH = "ExpectTableColumnsToMatchSet"
ROW_COUNT = "ExpectTableRowCountToBeBetween"

_GENERAL_KWARGS = {"meta", "notes", "description"}
# The expectation types, and their kwargs, evaluated without GX; any other kwarg sends a check to GX.
MODELLED_KWARGS: dict[str, set[str]] = {
    NOT_NULL: {"column", "mostly", "row_condition", "condition_parser"},
    UNIQUE: {"column", "mostly", "row_condition", "condition_parser"},
    BETWEEN: {"column", "mostly", "row_condition", "condition_parser", "min_value", "max_value", "strict_min",
              "strict_max"},
    IN_SET: {"column", "mostly", "row_condition", "condition_parser", "value_set"},
    COLUMNS_MATCH: {"column_set", "exact_match"},
    ROW_COUNT: {"min_value", "max_value", "strict_min", "strict_max"},
}
# GX's SUMMARY result format lists at most this many unexpected values.
PARTIAL_UNEXPECTED_COUNT = 20

State = Literal["passed", "warning", "failed"]


@dataclass(frozen=True)
class QualityResult:
    """One expectation's verdict, in the shape of a `monitoring.data_quality_results` row."""

    expectation_id: str
    expectation_type: str
    column: str | None
    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    observed_value: Any
    severity: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QualityOutcome:
    """The interval's verdict: `failed` if any critical check failed, `warning` if only warnings did."""

    state: State
    results: list[QualityResult]
    failed_rows: int
    duration_s: float
    row_count: int = 0

    @property
    def failed_results(self) -> list[QualityResult]:
        return [r for r in self.results if not r.success]

    def result(self, expectation_id: str) -> QualityResult:
        for r in self.results:
            if r.expectation_id == expectation_id:
                return r
        raise KeyError(f"no quality result with id '{expectation_id}'")

    def summary(self) -> dict[str, Any]:
        """A small JSON-ready digest for task return values, logs and Dynatrace."""
        failed = self.failed_results
        return {
            "state": self.state,
            "evaluated_expectations": len(self.results),
            "failed_expectations": len(failed),
            "failed_critical": sorted(r.expectation_id for r in failed if r.severity == "critical"),
            "failed_warning": sorted(r.expectation_id for r in failed if r.severity == "warning"),
            "failed_rows": self.failed_rows,
            "row_count": self.row_count,
            "duration_s": round(self.duration_s, 3),
        }


def to_jsonable(value: Any) -> Any:
    """Plain JSON types for jsonb: timestamps as ISO text, non-finite floats as 'inf'/'-inf'/'nan'."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        return [to_jsonable(v) for v in value]
    return str(value)


def make_result(spec: ExpectationSpec, success: bool, observed: Any = None, details: dict[str, Any] | None = None,
            unexpected_count: int | None = None, unexpected_percent: float | None = None) -> QualityResult:
    kwargs = {k: v for k, v in spec.kwargs.items() if k != "meta"}
    return QualityResult(
        expectation_id=spec.id,
        expectation_type=spec.expectation_type,
        column=spec.column,
        success=success,
        unexpected_count=unexpected_count,
        unexpected_percent=unexpected_percent,
        observed_value=to_jsonable(observed),
        severity=spec.severity,
        details={"kwargs": to_jsonable(kwargs), **to_jsonable(details or {})},
    )


def error_result(spec: ExpectationSpec, message: str) -> QualityResult:
    return make_result(spec, False, details={"error": message})



def overall_state(results: list[QualityResult]) -> State:
    failed = {r.severity for r in results if not r.success}
    return "failed" if "critical" in failed else "warning" if failed else "passed"


def unknown_kwargs(spec: ExpectationSpec) -> set[str]:
    """kwargs the GX-free forms of the spec's type do not model (any kwarg, for a type without one)."""
    return set(spec.kwargs) - MODELLED_KWARGS.get(spec.expectation_type, set()) - _GENERAL_KWARGS


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def map_result(spec: ExpectationSpec, mostly: float, element: int, nulls: int, unexpected: int,
               partial: list[Any] | None = None) -> QualityResult:
    """A map expectation's result from its counts, exactly as GX computes success and percentages.

    The null check is judged over every row it looks at (it has no missing values); the others over
    their non-null values. `partial` is GX's `partial_unexpected_list`, when the evaluator has values.
    """
    listed = {} if partial is None else {"partial_unexpected_list": partial}
    if spec.expectation_type == NOT_NULL:
        success = element == 0 or (element - unexpected) / element >= mostly
        percent = unexpected / element * 100 if element > 0 else None
        return make_result(spec, success, details={"element_count": element, **listed},
                           unexpected_count=unexpected, unexpected_percent=percent)
    nonnull = element - nulls
    success = nonnull == 0 or (nonnull - unexpected) / nonnull >= mostly
    percent = unexpected / nonnull * 100 if nonnull > 0 else None
    details = {"element_count": element, "missing_count": nulls,
               "missing_percent": nulls / element * 100 if element > 0 else None, **listed}
    return make_result(spec, success, details=details, unexpected_count=unexpected,
                       unexpected_percent=percent if percent is None or math.isfinite(percent) else None)


def columns_match_result(spec: ExpectationSpec, actual_columns: Iterable[str]) -> QualityResult:
    """`ExpectTableColumnsToMatchSet` as GX judges a frame with these columns."""
    actual = set(actual_columns)
    expected = set(spec.kwargs.get("column_set") or [])
    unexpected, missing = sorted(actual - expected), sorted(expected - actual)
    observed = sorted(actual)
    if not unexpected and not missing:
        return make_result(spec, True, observed=observed)
    mismatched = {k: v for k, v in (("unexpected", unexpected), ("missing", missing)) if v}
    exact = spec.kwargs.get("exact_match", True)
    return make_result(spec, not exact and not missing, observed=observed, details={"mismatched": mismatched})


def row_count_result(spec: ExpectationSpec, rows: int) -> QualityResult:
    kw = spec.kwargs
    lo, hi = kw.get("min_value"), kw.get("max_value")
    ok = lo is None or (rows > lo if kw.get("strict_min") else rows >= lo)
    ok = ok and (hi is None or (rows < hi if kw.get("strict_max") else rows <= hi))
    return make_result(spec, bool(ok), observed=rows)
