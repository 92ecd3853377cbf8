"""The pandas form of the per-segment counts (`segments`): the rows ordered by segment once, then each
feature's values binned per segment over that segment's own reference columns.

Only counts are needed (a segment's drift is judged on its histograms), so no segment's values are
sorted: one gather of each column in segment order, then a binary search per value against the
segment's edges (or one category code per row), and a count per slice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import CategoricalProfile, NumericProfile, ReferenceProfile, SegmentProfile
from monitoring_lib.drift.segments import SegmentCounts, category_codes, segment_columns, segment_keys
from monitoring_lib.drift.summaries import ColumnSummary, bin_counts


def split_by_segment(df: pd.DataFrame, seg: SegmentProfile) -> list[pd.DataFrame]:
    """The frame's rows per segment value, in the profile's order (one stable sort, then slices)."""
    order, bounds = _order(df[seg.column], seg)
    ordered = df.iloc[order]
    return [ordered.iloc[bounds[i]:bounds[i + 1]] for i in range(len(seg.values))]


def _order(raw: pd.Series, seg: SegmentProfile) -> tuple[np.ndarray, np.ndarray]:
    keys = segment_keys(raw, seg)
    order = np.argsort(keys, kind="stable")
    return order, np.searchsorted(keys[order], np.arange(len(seg.values) + 1))


def frame_segment_counts(df: pd.DataFrame, profile: ReferenceProfile, cfg: EndpointConfig) -> list[SegmentCounts]:
    src = cfg.source
    out = []
    columns = _ColumnCache(df)  # each feature read once, whatever the number of segment columns
    for seg in profile.segments:
        if seg.column not in cfg.segments.columns:
            continue
        order, bounds = _order(df[seg.column], seg)
        slices = [slice(bounds[i], bounds[i + 1]) for i in range(len(seg.values))]
        own = [segment_columns(profile, seg, i) for i in range(len(seg.values))]
        per_feature = {name: _counts(columns, name, [o[name] for o in own], order, slices) for name in src.features}
        errors = latency = None
        if src.error_column and src.error_column in df:
            flags = df[src.error_column].to_numpy(dtype=bool)[order]
            errors = [int(flags[s].sum()) for s in slices]
        if src.latency_column and src.latency_column in df:
            lat = df[src.latency_column].to_numpy(dtype=float)[order]
            latency = [_finite_mean(lat[s]) for s in slices]
        for i, value in enumerate(seg.values):
            out.append(SegmentCounts(seg.column, value, int(slices[i].stop - slices[i].start),
                                     {name: per_feature[name][i] for name in src.features},
                                     errors[i] if errors is not None else None,
                                     latency[i] if latency is not None else None))
    return out


class _ColumnCache:
    """A feature's nulls, numbers and category codes, computed on first use and shared by the segment columns."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self._nulls: dict[str, np.ndarray] = {}
        self._numbers: dict[str, np.ndarray] = {}
        self._codes: dict[str, np.ndarray] = {}

    def nulls(self, name: str) -> np.ndarray:
        if name not in self._nulls:
            self._nulls[name] = self.df[name].isna().to_numpy()
        return self._nulls[name]

    def numbers(self, name: str) -> np.ndarray:
        if name not in self._numbers:
            raw = pd.to_numeric(self.df[name], errors="coerce")
            self._numbers[name] = raw.to_numpy(dtype=float, na_value=np.nan)
        return self._numbers[name]

    def codes(self, name: str, categories: tuple[str, ...]) -> np.ndarray:
        if name not in self._codes:  # every segment shares the profile's categories
            self._codes[name] = category_codes(self.df[name], categories)
        return self._codes[name]


def _counts(columns: _ColumnCache, name: str, cols: list, order: np.ndarray,
            slices: list[slice]) -> list[ColumnSummary]:
    """Per segment, the column's counts over that segment's own column (`_numeric_summary` and
    `_categorical_summary` place values the same way), with its null and invalid counts."""
    nulls = columns.nulls(name)[order]
    first = cols[0]
    if isinstance(first, NumericProfile):
        x = columns.numbers(name)[order]
        finite = np.isfinite(x)
        out = []
        for col, s in zip(cols, slices, strict=True):
            values = x[s][finite[s]]
            counts = bin_counts(values, col.edges)
            out.append(ColumnSummary(col.name, "numeric", tuple(int(c) for c in counts), int(values.size),
                                     int(nulls[s].sum()), int((~finite[s] & ~nulls[s]).sum())))
        return out
    assert isinstance(first, CategoricalProfile)
    codes = columns.codes(name, first.categories)[order]
    out = []
    for col, s in zip(cols, slices, strict=True):
        part = codes[s]
        counts = np.bincount(part[part >= 0], minlength=len(col.categories) + 1)
        out.append(ColumnSummary(col.name, "categorical", tuple(int(c) for c in counts), int(counts.sum()),
                                 int((part < 0).sum()), unseen_count=int(counts[-1])))
    return out


def _finite_mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None
