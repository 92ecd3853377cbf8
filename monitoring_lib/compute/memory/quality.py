"""Validate one interval's DataFrame against the suite and summarise it as a pass/warning/fail outcome.

Column dtypes are answered by pandas (GX's type-list expectation misreads pandas 3 string columns); the
built-in map and table checks by vectorised pandas with GX's semantics (`native`, unless
`quality.native_checks` is off); every other check by Great Expectations. A check that raises inside
GX, for example on a missing column, becomes a failed result with the error in its details: a broken
interval is a quality failure to report, not a crash that hides the other results.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from monitoring_lib.compute.memory import quality_native as native
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.quality.results import (
    QualityOutcome,
    QualityResult,
    error_result,
    make_result,
    overall_state,
)
from monitoring_lib.quality.suite import ExpectationSpec, build_expectations

log = logging.getLogger(__name__)
_RESULT_KEYS = ("element_count", "missing_count", "missing_percent", "partial_unexpected_list")

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
    import great_expectations as gx  # 5 s to import: paid where checks run on a frame, never by the database mode
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
    import great_expectations as gx  # 5 s to import: paid where checks run on a frame, never by the database mode

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

def _failed_rows(df: pd.DataFrame, specs: list[ExpectationSpec], results: dict[str, QualityResult],
                 flagged: dict[str, np.ndarray]) -> int:
    """Distinct rows flagged by failed row-level checks (a check passing within `mostly` flags none).

    A check whose rows cannot be told (an expectation only GX evaluates) adds its unexpected count, an
    upper bound.
    """
    rows = np.zeros(len(df), dtype=bool)
    uncounted = 0
    for spec in specs:
        r = results[spec.id]
        if r.success or not spec.row_level or not r.unexpected_count:
            continue
        mask = flagged.get(spec.id)
        if mask is None:
            mask = native.unexpected_mask(df, spec)
        if mask is None:
            uncounted += r.unexpected_count
        else:
            rows |= mask
    return min(len(df), int(rows.sum()) + uncounted)


def _utc_timestamps(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Naive timestamps are UTC (the window bounds are aware); localise a copy so comparisons work."""
    if column in df.columns and pd.api.types.is_datetime64_dtype(df[column]) and df[column].dt.tz is None:
        return df.assign(**{column: df[column].dt.tz_localize("UTC")})
    return df


def _evaluate(df: pd.DataFrame, specs: list[ExpectationSpec], native_checks: bool,
              repeated: dict[str, np.ndarray] | None = None) -> tuple[dict[str, QualityResult], dict[str, np.ndarray]]:
    by_id = {s.id: _local_check(df, s) for s in specs if s.local_check}
    flagged: dict[str, np.ndarray] = {}
    if native_checks:
        answered, flagged = native.evaluate(df, specs, repeated)
        by_id |= answered
    return by_id | _run_gx(df, [s for s in specs if s.id not in by_id]), flagged


def evaluate_specs(df: pd.DataFrame, specs: list[ExpectationSpec], *, native_checks: bool = True
                   ) -> dict[str, QualityResult]:
    """Results by id for `specs` on `df` (timestamps already UTC): dtypes and the built-in checks by
    pandas, the rest by GX. Exposed so a feature-group task can evaluate just its columns' share of the suite.
    """
    return _evaluate(df, specs, native_checks)[0]


def run_quality(
    df: pd.DataFrame,
    cfg: EndpointConfig,
    profile: ReferenceProfile | None,
    window_start: datetime,
    window_end: datetime,
    now: datetime | None = None,
    repeated: dict[str, np.ndarray] | None = None,
) -> QualityOutcome:
    """Validate one interval [window_start, window_end); `now` bounds future timestamps (default: now).

    `repeated`: rows whose value in a column another row shares, already known (see `native.evaluate`).
    """
    started = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    specs = build_expectations(cfg, profile, window_start, window_end, now)
    df = _utc_timestamps(df, cfg.source.timestamp_column)
    by_id, flagged = _evaluate(df, specs, cfg.quality.native_checks, repeated)
    results = [by_id[s.id] for s in specs]
    return QualityOutcome(
        state=overall_state(results),
        results=results,
        failed_rows=_failed_rows(df, specs, by_id, flagged),
        duration_s=time.perf_counter() - started,
        row_count=len(df),
    )
