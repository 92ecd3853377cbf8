"""Per-interval column summaries: everything drift and the feature-stats table need, nothing row-level.

A `ColumnSummary` holds a column's histogram counts on the profile's stored edges (or categories),
null, invalid, unseen and outside-band counts, the sum and sum of squares of (x - shift), min/max and
exact quantiles. `compute.memory.summaries` builds it from a DataFrame and
`compute.database.scan.summaries_in_database` inside PostgreSQL, so drift reads one type whichever mode
computed it. Moments are kept relative to `shift` (the reference
mean) so the variance does not lose precision to cancellation when values are large. Two summaries of
one column merge (`merge`): counts, moments and extremes exactly, quantiles only approximately.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from monitoring_lib.drift.profile import (
    QUANTILES,
)


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
    idx = edge_slots(values, e)
    idx[values == e[-1]] = len(e) - 1
    return np.bincount(idx, minlength=len(e) + 1)


# A binary search per value costs about 20 ns; a lookup in a fine equal-width grid over the edges costs a
# few. Worth it from this many values on.
_GRID_FROM = 20_000
_GRID_CELLS = 1 << 16


def edge_slots(values: np.ndarray, e: np.ndarray) -> np.ndarray:
    """`np.searchsorted(e, values, side="right")`, exactly.

    A value whose grid cell and both neighbours hold no edge takes the cell's slot (a rounding error in the
    cell is at most one cell, which has the same slot); the others, near an edge, are searched. Edges whose
    span is too fine for the grid in floating point, and NaN values, are searched as they are."""
    span = e[-1] - e[0] if e.size > 1 else 0.0
    coarse = np.isfinite(span) and span > 0 and np.spacing(max(abs(e[0]), abs(e[-1]))) * 4 * _GRID_CELLS < span
    if values.size < _GRID_FROM or not coarse:
        return np.searchsorted(e, values, side="right")
    scale = _GRID_CELLS / span
    with np.errstate(over="ignore", invalid="ignore"):  # far outside the edges: clipped below, then searched
        cell = values - e[0]
        cell *= scale
    if np.isnan(cell).any():
        return np.searchsorted(e, values, side="right")
    np.clip(cell, -2, _GRID_CELLS + 1, out=cell)
    c = np.floor(cell, out=cell).astype(np.int32)
    c += 2  # cells -2..cells+1 -> 0..cells+3: below the first edge and above the last get cells of their own
    starts = e[0] + (np.arange(-2, _GRID_CELLS + 2) / scale)
    lut = np.searchsorted(e, starts, side="right").astype(np.int32)  # the slot where each cell begins
    holds_edge = np.zeros(_GRID_CELLS + 4, dtype=bool)
    holds_edge[1:] = lut[1:] != lut[:-1]  # a cell whose start has a higher slot than the one before it
    holds_edge[:-1] |= holds_edge[1:]  # an edge between two cell starts: both cells unsafe
    unsafe = holds_edge.copy()
    unsafe[1:] |= holds_edge[:-1]
    unsafe[:-1] |= holds_edge[1:]
    unsafe[[0, 1, -2, -1]] = True  # the clipped ends
    idx = lut.take(c)
    near = unsafe.take(c)
    if near.any():
        idx[near] = np.searchsorted(e, values[near], side="right")
    return idx.astype(np.int64)


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
