"""Per-interval column summaries: everything drift and the feature-stats table need, nothing row-level.

A `ColumnSummary` holds a column's histogram counts on the profile's stored edges (or categories),
null, invalid, unseen and outside-band counts, the sum and sum of squares of (x - shift), min/max and
exact quantiles. This module builds it in memory from a DataFrame (one sort of each numeric column's
finite values); `compute.database.scan.summaries_in_database` builds the same values inside PostgreSQL,
so drift reads one type whichever mode computed it. Moments are kept relative to `shift` (the reference
mean) so the variance does not lose precision to cancellation when values are large. Two summaries of
one column merge (`merge`): counts, moments and extremes exactly, quantiles only approximately.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from monitoring_lib.drift.profile import (
    QUANTILES,
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    ReferenceProfile,
)
from monitoring_lib.errors import ProfileNotFittedError, SourceError


def quantile_key(q: float) -> str:
    """0.05 -> 'p05': the names quantiles carry in profiles, summaries and feature_stats."""
    return f"p{round(q * 100):02d}"


QUANTILE_KEYS = tuple(quantile_key(q) for q in QUANTILES)


@dataclass(frozen=True)
class ColumnSummary:
    """Additive aggregates of one column in one interval, aligned with the profile's slots."""

    name: str
    kind: Literal["numeric", "categorical"]
    counts: tuple[int, ...]
    n: int
    null_count: int
    invalid_count: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0
    min: float | None = None
    max: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    outside_band: int = 0
    unseen_count: int = 0
    # `sum` and `sum_sq` are of (x - shift); shift 0 means raw moments.
    shift: float = 0.0

    @property
    def total(self) -> int:
        """Rows seen, valid or not."""
        return self.n + self.null_count + self.invalid_count

    @property
    def mean(self) -> float | None:
        return self.shift + self.sum / self.n if self.n else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1), as pandas reports it."""
        if self.n < 2:
            return None
        var = (self.sum_sq - self.sum * self.sum / self.n) / (self.n - 1)
        return float(np.sqrt(max(var, 0.0)))


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts in len(edges)+1 slots: below, inner bins (left-closed, last one closed), above."""
    e = np.asarray(edges, dtype=float)
    idx = np.searchsorted(e, values, side="right")
    idx[values == e[-1]] = len(e) - 1
    return np.bincount(idx, minlength=len(e) + 1)


def histogram_quantiles(
    counts: Sequence[int], edges: Sequence[float], lo: float, hi: float
) -> dict[str, float]:
    """Quantiles interpolated linearly inside bins; the outer bins span [lo, edges[0]] and [edges[-1], hi].

    Approximate by construction (within one bin width inside the reference range): used after
    merging summaries and wherever only a histogram is available.
    """
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    if total <= 0:
        return {}
    e = np.asarray(edges, dtype=float)
    bounds = np.concatenate(([min(lo, e[0])], e, [max(hi, e[-1])]))
    cum = np.cumsum(c)
    out: dict[str, float] = {}
    for q, key in zip(QUANTILES, QUANTILE_KEYS, strict=True):
        target = q * total
        slot = int(min(np.searchsorted(cum, target, side="left"), len(c) - 1))
        before = cum[slot] - c[slot]
        frac = (target - before) / c[slot] if c[slot] else 0.0
        value = bounds[slot] + frac * (bounds[slot + 1] - bounds[slot])
        out[key] = float(min(max(value, lo), hi))
    return out


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


def _reshift(s: ColumnSummary, shift: float) -> tuple[float, float]:
    """Moments of (x - shift) from moments of (x - s.shift)."""
    delta = s.shift - shift
    return s.sum + s.n * delta, s.sum_sq + 2 * delta * s.sum + s.n * delta * delta


def _opt(fn: Callable[[list[float]], float], a: float | None, b: float | None) -> float | None:
    vals = [v for v in (a, b) if v is not None]
    return fn(vals) if vals else None


def merge(a: ColumnSummary, b: ColumnSummary, *, edges: Sequence[float] | None = None) -> ColumnSummary:
    """Combine two summaries of the same column (e.g. two partitions of one interval).

    Counts, moments, min/max and band counts merge exactly. Quantiles cannot: with `edges` they are
    interpolated from the merged histogram (see `histogram_quantiles`); without, they are the
    count-weighted average of both sides' quantiles, a rougher approximation.
    """
    if (a.name, a.kind, len(a.counts)) != (b.name, b.kind, len(b.counts)):
        raise ValueError(f"cannot merge summaries of different columns or bins: '{a.name}' and '{b.name}'")
    counts = tuple(x + y for x, y in zip(a.counts, b.counts, strict=True))
    n = a.n + b.n
    shift = a.shift
    (sa, qa), (sb, qb) = _reshift(a, shift), _reshift(b, shift)
    lo, hi = _opt(min, a.min, b.min), _opt(max, a.max, b.max)
    quantiles: dict[str, float] = {}
    if a.kind == "numeric" and n:
        if edges is not None and lo is not None and hi is not None:
            quantiles = histogram_quantiles(counts, edges, lo, hi)
        elif not a.n or not b.n:
            quantiles = dict(a.quantiles if a.n else b.quantiles)
        else:
            quantiles = {k: (a.quantiles[k] * a.n + b.quantiles[k] * b.n) / n
                         for k in a.quantiles if k in b.quantiles}
    return ColumnSummary(
        name=a.name,
        kind=a.kind,
        counts=counts,
        n=n,
        null_count=a.null_count + b.null_count,
        invalid_count=a.invalid_count + b.invalid_count,
        sum=sa + sb,
        sum_sq=qa + qb,
        min=lo,
        max=hi,
        quantiles=quantiles,
        outside_band=a.outside_band + b.outside_band,
        unseen_count=a.unseen_count + b.unseen_count,
        shift=shift,
    )
