"""Validate one interval's DataFrame against the suite and summarise it as a pass/warning/fail outcome.

Great Expectations evaluates every check except column dtypes, which pandas answers directly (GX's
type-list expectation misreads pandas 3 string columns). A check that raises inside GX, for example on a
missing column, becomes a failed result with the error in its details: a broken interval is a quality
failure to report, not a crash that hides the other results.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal

import numpy as np
import pandas as pd

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.quality.suite import ExpectationSpec, build_expectations

log = logging.getLogger(__name__)

State = Literal["passed", "warning", "failed"]
_RESULT_KEYS = ("element_count", "missing_count", "missing_percent", "partial_unexpected_list")


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


# --- column dtypes, answered by pandas ---------------------------------------------------------------

def _is_booleanish(s: pd.Series) -> bool:
    """bool/boolean dtypes; numbers holding only 0/1; object columns holding only booleans (Arrow's
    conversion of a nullable boolean)."""
    if pd.api.types.is_bool_dtype(s):
        return True
    if pd.api.types.is_numeric_dtype(s):
        return bool(s.dropna().isin([0, 1]).all())
    if s.dtype == object:
        return pd.api.types.infer_dtype(s, skipna=True) in ("boolean", "empty")
    return False


def _local_check(df: pd.DataFrame, spec: ExpectationSpec) -> QualityResult:
    if spec.column not in df.columns:
        return error_result(spec, f"column '{spec.column}' is missing")
    s = df[spec.column]
    if spec.local_check == "numeric_dtype":
        ok = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    elif spec.local_check == "datetime_dtype":
        ok = pd.api.types.is_datetime64_any_dtype(s)
    else:
        ok = _is_booleanish(s)
    return make_result(spec, bool(ok), observed=str(s.dtype))


# --- everything else, answered by Great Expectations -------------------------------------------------

def _gx_context() -> Any:
    """A throwaway in-memory context: no files, no analytics calls, no progress bars in task logs."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    _skip_batch_fingerprint()
    return gx.get_context(mode="ephemeral", project_config=config)


def _skip_batch_fingerprint() -> None:
    """GX fingerprints every in-memory batch under 1 GB by hashing all of it (0.5 s per 1,000,000 rows,
    a quarter of the validation). The fingerprint only labels the batch in GX's own metadata, which is
    never stored here: a window identifies the batch. A threshold of 0 turns the hashing off."""
    from great_expectations.execution_engine import pandas_execution_engine

    if getattr(pandas_execution_engine, "HASH_THRESHOLD", 0):
        pandas_execution_engine.HASH_THRESHOLD = 0


def _exception_message(info: Any) -> str | None:
    """GX reports either one {raised_exception, exception_message} or one such dict per failed metric."""
    if not isinstance(info, dict):
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [
        str(e.get("exception_message") or "exception in Great Expectations")
        for e in entries
        if e.get("raised_exception") not in (None, False, "False", "false")
    ]
    return "; ".join(dict.fromkeys(messages)) or None


def _from_gx(spec: ExpectationSpec, gx_result: Any) -> QualityResult:
    res = dict(gx_result.result or {})
    error = _exception_message(gx_result.exception_info)
    details: dict[str, Any] = {k: res[k] for k in _RESULT_KEYS if k in res}
    if isinstance(res.get("details"), dict):
        details |= res["details"]
    if error:
        details["error"] = error
    count = res.get("unexpected_count")
    percent = res.get("unexpected_percent")
    return make_result(
        spec,
        bool(gx_result.success) and error is None,
        observed=res.get("observed_value"),
        details=details,
        unexpected_count=int(count) if count is not None else None,
        unexpected_percent=float(percent) if percent is not None and math.isfinite(percent) else None,
    )


def _run_gx(df: pd.DataFrame, specs: list[ExpectationSpec]) -> dict[str, QualityResult]:
    import great_expectations as gx

    out: dict[str, QualityResult] = {}
    expectations = []
    for spec in specs:
        cls = getattr(gx.expectations, spec.expectation_type, None)
        if cls is None:
            out[spec.id] = error_result(spec, f"unknown expectation type '{spec.expectation_type}'")
            continue
        kwargs = dict(spec.kwargs)
        meta = {**kwargs.pop("meta", {}), "expectation_id": spec.id}
        try:
            expectations.append(cls(**kwargs, meta=meta))
        except Exception as exc:  # invalid kwargs for this data: report on the check, keep the others
            out[spec.id] = error_result(spec, f"cannot build expectation: {' '.join(str(exc).split())}")
    if not expectations:
        return out
    try:
        context = _gx_context()
        batch = (
            context.data_sources.add_pandas("interval")
            .add_dataframe_asset("rows")
            .add_batch_definition_whole_dataframe("whole")
        )
        suite = context.suites.add(gx.ExpectationSuite(name="interval_quality", expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name="interval_quality", data=batch, suite=suite)
        )
        validation = definition.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
    except Exception as exc:  # GX itself failed: every pending check is reported failed with the reason
        log.exception("Great Expectations validation failed")
        message = f"validation failed: {type(exc).__name__}: {exc}"
        return out | {s.id: error_result(s, message) for s in specs if s.id not in out}
    # Results come back in GX's own order: match them to specs by the id carried in meta.
    by_id = {(r.expectation_config.meta or {}).get("expectation_id"): r for r in validation.results}
    for spec in specs:
        if spec.id in out:
            continue
        gx_result = by_id.get(spec.id)
        out[spec.id] = (
            _from_gx(spec, gx_result) if gx_result is not None
            else error_result(spec, "Great Expectations returned no result for this expectation")
        )
    return out


# --- failed rows ---------------------------------------------------------------------------------------

def _unexpected_mask(df: pd.DataFrame, spec: ExpectationSpec) -> np.ndarray | None:
    """The rows a map expectation flags, with GX's semantics (nulls ignored except by the null check);
    None for types not mirrored here, whose unexpected count is then added as an upper bound."""
    kw = spec.kwargs
    s = df[kw["column"]]
    if spec.expectation_type == "ExpectColumnValuesToNotBeNull":
        mask = s.isna()
    elif spec.expectation_type == "ExpectColumnValuesToBeBetween":
        inside = pd.Series(True, index=s.index)
        if kw.get("min_value") is not None:
            inside &= s > kw["min_value"] if kw.get("strict_min") else s >= kw["min_value"]
        if kw.get("max_value") is not None:
            inside &= s < kw["max_value"] if kw.get("strict_max") else s <= kw["max_value"]
        mask = s.notna() & ~inside
    elif spec.expectation_type == "ExpectColumnValuesToBeInSet":
        mask = s.notna() & ~s.isin(kw["value_set"])
    elif spec.expectation_type == "ExpectColumnValuesToBeUnique":
        mask = s.notna() & s.duplicated(keep=False)
    else:
        return None
    if kw.get("row_condition"):
        mask &= df.eval(kw["row_condition"]).astype(bool)
    return mask.to_numpy(dtype=bool, na_value=False)


def _failed_rows(df: pd.DataFrame, specs: list[ExpectationSpec], results: dict[str, QualityResult]) -> int:
    """Distinct rows flagged by failed row-level checks (a check passing within `mostly` flags none)."""
    flagged = np.zeros(len(df), dtype=bool)
    uncounted = 0
    for spec in specs:
        r = results[spec.id]
        if r.success or not spec.row_level or not r.unexpected_count:
            continue
        try:
            mask = _unexpected_mask(df, spec)
        except (KeyError, TypeError, ValueError):
            mask = None  # e.g. incomparable types: fall back to the count GX gave
        if mask is None:
            uncounted += r.unexpected_count
        else:
            flagged |= mask
    return min(len(df), int(flagged.sum()) + uncounted)


def overall_state(results: list[QualityResult]) -> State:
    failed = {r.severity for r in results if not r.success}
    return "failed" if "critical" in failed else "warning" if failed else "passed"


def _utc_timestamps(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Naive timestamps are UTC (the window bounds are aware); localise a copy so comparisons work."""
    if column in df.columns and pd.api.types.is_datetime64_dtype(df[column]) and df[column].dt.tz is None:
        return df.assign(**{column: df[column].dt.tz_localize("UTC")})
    return df


def evaluate_specs(df: pd.DataFrame, specs: list[ExpectationSpec]) -> dict[str, QualityResult]:
    """Results by id for `specs` on `df` (timestamps already UTC): dtypes by pandas, the rest by GX.

    Exposed so a feature-group task can evaluate just its columns' share of the suite.
    """
    by_id = {s.id: _local_check(df, s) for s in specs if s.local_check}
    return by_id | _run_gx(df, [s for s in specs if not s.local_check])


def run_quality(
    df: pd.DataFrame,
    cfg: EndpointConfig,
    profile: ReferenceProfile | None,
    window_start: datetime,
    window_end: datetime,
    now: datetime | None = None,
) -> QualityOutcome:
    """Validate one interval [window_start, window_end); `now` bounds future timestamps (default: now)."""
    started = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    specs = build_expectations(cfg, profile, window_start, window_end, now)
    df = _utc_timestamps(df, cfg.source.timestamp_column)
    by_id = evaluate_specs(df, specs)
    results = [by_id[s.id] for s in specs]
    return QualityOutcome(
        state=overall_state(results),
        results=results,
        failed_rows=_failed_rows(df, specs, by_id),
        duration_s=time.perf_counter() - started,
        row_count=len(df),
    )
