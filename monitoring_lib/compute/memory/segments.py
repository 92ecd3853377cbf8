"""The pandas form of the per-segment counts (`segments`): each feature's values binned per segment over
that segment's own reference columns.

Only counts are needed (a segment's drift is judged on its histograms), and every segment's edges are
among the union of all of them: so each value is placed once among the union's edges (and whether it
lies on one), one count per segment column gives every segment's counts over those fine cells, and each
segment's histogram is a sum of its fine cells. No row is gathered or sorted by segment, and the result is
what binning each segment's values over its own edges gives, value for value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import (
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    ReferenceProfile,
    SegmentProfile,
)
from monitoring_lib.drift.segments import SegmentCounts, category_codes, segment_columns, segment_keys
from monitoring_lib.drift.summaries import ColumnSummary, edge_slots


def split_by_segment(df: pd.DataFrame, seg: SegmentProfile) -> list[pd.DataFrame]:
    """The frame's rows per segment value, in the profile's order."""
    return [df.iloc[rows] for rows in segment_positions(df[seg.column], seg)]


def segment_positions(raw: pd.Series, seg: SegmentProfile) -> list[np.ndarray]:
    """The positions of each segment value's rows, in the profile's order (one stable sort, then slices): for
    arrays aligned with the frame."""
    keys = segment_keys(raw, seg)
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(len(seg.values) + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(len(seg.values))]


def frame_segment_counts(df: pd.DataFrame, profile: ReferenceProfile, cfg: EndpointConfig) -> list[SegmentCounts]:
    src = cfg.source
    segs = [seg for seg in profile.segments if seg.column in cfg.segments.columns]
    keys = [segment_keys(df[seg.column], seg) for seg in segs]
    own = [[segment_columns(profile, seg, i) for i in range(len(seg.values))] for seg in segs]
    per_feature = {name: _feature_counts(df[name], [[o[name] for o in cols] for cols in own], keys)
                   for name in src.features}
    out = []
    for j, (seg, key) in enumerate(zip(segs, keys, strict=True)):
        m = len(seg.values)
        rows = np.bincount(key, minlength=m)
        errors = latency = None
        if src.error_column and src.error_column in df:
            errors = np.bincount(key, weights=df[src.error_column].to_numpy(dtype=bool), minlength=m)
        if src.latency_column and src.latency_column in df:
            latency = _finite_means(df[src.latency_column].to_numpy(dtype=float), key, m)
        for i, value in enumerate(seg.values):
            out.append(SegmentCounts(seg.column, value, int(rows[i]),
                                     {name: per_feature[name][j][i] for name in src.features},
                                     int(errors[i]) if errors is not None else None,
                                     latency[i] if latency is not None else None))
    return out


def _feature_counts(raw: pd.Series, cols: list[list[ColumnProfile]],
                    keys: list[np.ndarray]) -> list[list[ColumnSummary]]:
    """Per segment column, per segment: the feature's counts over that segment's own column `cols[j][i]`
    (placed as `_numeric_summary` and `_categorical_summary` place them), with its null and invalid counts."""
    if isinstance(cols[0][0], NumericProfile):
        return _numeric_counts(raw, cols, keys)  # type: ignore[arg-type]
    first = cols[0][0]
    assert isinstance(first, CategoricalProfile)
    width = len(first.categories) + 2  # null, every category, unseen: every segment shares the categories
    cells = category_codes(raw, first.categories) + 1
    out = []
    for seg_cols, key in zip(cols, keys, strict=True):
        grid = _per_segment(key, cells, width, len(seg_cols))
        out.append([ColumnSummary(col.name, "categorical", tuple(int(c) for c in grid[i, 1:]),
                                  int(grid[i, 1:].sum()), int(grid[i, 0]), unseen_count=int(grid[i, -1]))
                    for i, col in enumerate(seg_cols)])
    return out


def _numeric_counts(raw: pd.Series, cols: list[list[NumericProfile]],
                    keys: list[np.ndarray]) -> list[list[ColumnSummary]]:
    """Fine cells over the union `u` of every segment's edges: cell 2k+1 holds values strictly between
    u[k-1] and u[k] (2*0+1: below u[0]), cell 2k values equal to u[k-1]; then one cell for invalid values
    (not finite, not null) and one for nulls. A segment's slot of each fine cell is fixed by its edges."""
    x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    nulls = raw.isna().to_numpy()
    finite = np.isfinite(x)
    union = np.unique(np.concatenate([np.asarray(c.edges, dtype=float) for seg in cols for c in seg]))
    fine = 2 * (len(union) + 1)
    placed = np.where(finite, x, union[0])
    slot = edge_slots(placed, union)
    on_edge = placed == union.take(np.maximum(slot - 1, 0))  # below u[0]: compared with u[0], never equal
    cells = slot * 2 + 1
    cells -= on_edge
    cells[~finite] = fine
    cells[nulls] = fine + 1
    # each fine cell's lower bound u[k-1] and whether it is that bound exactly; cell 0 never fills
    bound = np.concatenate([[-np.inf], union]).repeat(2)
    exact = np.zeros(fine, dtype=bool)
    exact[2::2] = True
    out = []
    for seg_cols, key in zip(cols, keys, strict=True):
        grid = _per_segment(key, cells, fine + 2, len(seg_cols))
        summaries = []
        for i, col in enumerate(seg_cols):
            e = np.asarray(col.edges, dtype=float)
            to_slot = np.searchsorted(e, bound, side="right")
            to_slot[exact & (bound == e[-1])] = len(e) - 1  # the last edge closes the last inner bin
            counts = np.bincount(to_slot, weights=grid[i, :fine], minlength=len(e) + 1)
            summaries.append(ColumnSummary(col.name, "numeric", tuple(int(c) for c in counts),
                                           int(grid[i, :fine].sum()), int(grid[i, fine + 1]), int(grid[i, fine])))
        out.append(summaries)
    return out


def _per_segment(key: np.ndarray, cells: np.ndarray, width: int, segments: int) -> np.ndarray:
    """Rows per (segment, cell): one count over the combined index."""
    return np.bincount(key * width + cells, minlength=segments * width).reshape(segments, width)


def _finite_means(values: np.ndarray, key: np.ndarray, segments: int) -> list[float | None]:
    finite = np.isfinite(values)
    n = np.bincount(key[finite], minlength=segments)
    total = np.bincount(key[finite], weights=values[finite], minlength=segments)
    return [float(total[i] / n[i]) if n[i] else None for i in range(segments)]
