"""The pandas form of the per-interval column summaries: one sort of each numeric column's finite values.

`compute.database.scan.summaries_in_database` is the SQL form of the same `ColumnSummary` values; the
type itself, its merge and the helpers both forms share live in `drift.summaries`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.domain import DomainResult
from monitoring_lib.drift.engine import DriftResult, check_profile, compute_drift, prediction_columns
from monitoring_lib.drift.multivariate import WindowError
from monitoring_lib.drift.profile import (
    QUANTILES,
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    ReferenceProfile,
)
from monitoring_lib.drift.summaries import QUANTILE_KEYS, ColumnSummary, bin_counts
from monitoring_lib.errors import ProfileNotFittedError, SourceError


def sorted_bin_counts(ordered: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """`bin_counts` of values already sorted: a binary search per edge instead of one per value."""
    e = np.asarray(edges, dtype=float)
    below = np.searchsorted(ordered, e, side="left")  # values under each edge
    counts = np.diff(below, prepend=0, append=ordered.size)
    at_last = int(np.searchsorted(ordered, e[-1], side="right") - below[-1])
    counts[-2] += at_last  # the last inner bin is closed: it holds edges[-1] itself
    counts[-1] -= at_last
    return counts


def _numeric_summary(raw: pd.Series, col: NumericProfile, band_k: float) -> ColumnSummary:
    """One sort of the finite values answers the histogram, quantiles, extremes and band counts.

    Sorting a million floats costs about half of what a quantile selection plus a per-value bin search
    cost, and everything after it is a handful of binary searches; the moments are summed in row order.
    """
    nulls = raw.isna().to_numpy()
    x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(x)
    invalid = int(np.count_nonzero(~finite & ~nulls))
    v = x[finite]
    n = int(v.size)
    if n == 0:
        return ColumnSummary(col.name, "numeric", tuple(int(c) for c in bin_counts(v, col.edges)), 0,
                             int(nulls.sum()), invalid, shift=col.mean)
    ordered = np.sort(v)
    d = v - col.mean
    with np.errstate(over="ignore"):  # a finite sentinel such as 1e300 squares to Infinity: the intended sum
        total, sum_sq = float(d.sum()), float(np.dot(d, d))
    low, high = col.mean - band_k * col.std, col.mean + band_k * col.std
    if np.isfinite(low) and np.isfinite(high):
        outside = int(np.searchsorted(ordered, low, side="left") + n - np.searchsorted(ordered, high, side="right"))
    else:
        outside = int(np.count_nonzero((v < low) | (v > high)))
    return ColumnSummary(
        name=col.name,
        kind="numeric",
        counts=tuple(int(c) for c in sorted_bin_counts(ordered, col.edges)),
        n=n,
        null_count=int(nulls.sum()),
        invalid_count=invalid,
        sum=total,
        sum_sq=sum_sq,
        min=float(ordered[0]),
        max=float(ordered[-1]),
        quantiles=dict(zip(QUANTILE_KEYS, (float(a) for a in np.quantile(ordered, QUANTILES)), strict=True)),
        outside_band=outside,
        shift=col.mean,
    )


def category_counts(raw: pd.Series) -> dict[str, int]:
    """Non-null value frequencies keyed by the value's text, the form categories are stored in.

    Whole floats are written as integers, so a code column that gained a null (and became float)
    still matches the categories fitted from the clean one.
    """
    counts: dict[str, int] = {}
    for value, count in raw.value_counts(dropna=True, sort=False).items():
        key = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        counts[key] = counts.get(key, 0) + int(count)
    return counts


def _categorical_summary(raw: pd.Series, col: CategoricalProfile) -> ColumnSummary:
    seen = category_counts(raw)
    known = [seen.pop(c, 0) for c in col.categories]
    unseen = sum(seen.values())
    return ColumnSummary(
        name=col.name,
        kind="categorical",
        counts=(*known, unseen),
        n=sum(known) + unseen,
        null_count=int(raw.isna().sum()),
        unseen_count=unseen,
    )


def summarise_column(raw: pd.Series, col: ColumnProfile, band_k: float) -> ColumnSummary:
    if isinstance(col, NumericProfile):
        return _numeric_summary(raw, col, band_k)
    return _categorical_summary(raw, col)


def summarise_frame(
    df: pd.DataFrame, profile: ReferenceProfile, columns: Iterable[str], band_k: float, *, threads: int = 2
) -> dict[str, ColumnSummary]:
    """Summaries of `columns` against the profile's stored edges/categories, in one pass per column.

    Columns are summarised on `threads` threads: the work is NumPy sorting, searching and reductions,
    which release the GIL, so a wide interval uses every core it is given.
    """
    wanted: list[tuple[str, ColumnProfile]] = []
    for name in columns:
        try:
            col = profile.column(name)
        except KeyError:
            raise ProfileNotFittedError(
                f"reference profile for '{profile.endpoint_id}' (model {profile.model_version}) has no "
                f"column '{name}'; refit the profile after changing the feature list"
            ) from None
        if name not in df.columns:
            raise SourceError(f"column '{name}' is missing from the interval data")
        wanted.append((name, col))
    if threads <= 1 or len(wanted) < 2:
        return {name: summarise_column(df[name], col, band_k) for name, col in wanted}
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mlmon-summaries") as pool:
        done = pool.map(lambda item: summarise_column(df[item[0]], item[1], band_k), wanted)
        return {name: summary for (name, _), summary in zip(wanted, done, strict=True)}


def summarise_and_compute(df: pd.DataFrame, profile: ReferenceProfile, cfg: EndpointConfig,
                          multivariate: WindowError | None = None, domain: DomainResult | None = None) -> DriftResult:
    """Summarise the interval's features and prediction in memory, then compute drift."""
    check_profile(profile, cfg)
    columns = [*cfg.source.features, *prediction_columns(profile, cfg)]
    return compute_drift(summarise_frame(df, profile, columns, cfg.drift.band_k), profile, cfg, multivariate, domain)
