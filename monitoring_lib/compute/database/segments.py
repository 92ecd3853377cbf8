"""The SQL form of the per-segment counts (`segments`): one hashed scan, the segment one more grouping key.

An inner query reads each row's segment (its value's text, as the memory mode keys it, mapped to the
segment's index) and its feature values. A numeric feature's key is one `width_bucket` over the union
of every segment's own edges (each segment's last edge also split off, as it closes the last inner
bin), so every fine bucket lies in one slot of each segment's counts; a categorical feature's key is
its position among the profile's categories, which every segment shares. The key is packed with the
segment into one integer, one per (segment column, feature) `GROUPING SETS` entry, plus one per
segment column for its rows, errors and latency: the planner hashes every set in one pass, and the
client receives at most segments x buckets rows, whatever the window's size.
"""

from __future__ import annotations

import bisect
import math
import sys
from datetime import datetime

import psycopg
from psycopg import sql

from monitoring_lib.compute.database.histograms import count_buckets
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import (
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    ReferenceProfile,
    SegmentProfile,
)
from monitoring_lib.drift.segments import SegmentCounts, segment_columns
from monitoring_lib.drift.summaries import ColumnSummary
from monitoring_lib.sql_common import Params, as_float, category_key, error_flag, finite, window_rows

_NULL, _INVALID = -1, -2  # slots of a missing value and of NaN or ±Infinity
_BASE = 1 << 24  # a key is segment * _BASE + bucket code


def segments_in_database(conn: psycopg.Connection, cfg: EndpointConfig, profile: ReferenceProfile,
                         types: dict[str, str], start: datetime, end: datetime) -> list[SegmentCounts]:
    segs = [s for s in profile.segments if s.column in cfg.segments.columns]
    if not segs:
        return []
    src = cfg.source
    features = list(src.features)
    own = [[segment_columns(profile, seg, i) for i in range(len(seg.values))] for seg in segs]
    p = Params()
    inner = [sql.SQL("{} AS {}").format(_segment_index(seg, types[seg.column], p), sql.Identifier(f"s{j}"))
             for j, seg in enumerate(segs)]
    inner += [sql.SQL("{} AS {}").format(_value(profile.features[f], types[f]), sql.Identifier(f"v{i}"))
              for i, f in enumerate(features)]
    inner.append(sql.SQL("{} AS e").format(error_flag(src.error_column, types[src.error_column])
                                           if src.error_column else sql.SQL("NULL::boolean")))
    lat = as_float(src.latency_column, types[src.latency_column]) if src.latency_column else None
    inner.append(sql.SQL("CASE WHEN {f} THEN {v} END AS lat").format(f=finite(lat), v=lat) if lat is not None
                 else sql.SQL("NULL::float8 AS lat"))
    outer = [sql.Identifier(f"s{j}") for j in range(len(segs))]
    buckets = {j: {f: _Buckets.of([o[f] for o in own[j]]) for f in features} for j in range(len(segs))}
    keys, key_names = [], []
    for j in range(len(segs)):
        for i, f in enumerate(features):
            name = sql.Identifier(f"k{j}_{i}")
            keys.append(sql.SQL("{s} * {base} + {code} AS {k}").format(
                s=sql.Identifier(f"s{j}"), base=sql.Literal(_BASE), k=name,
                code=buckets[j][f].code(sql.Identifier(f"v{i}"), p)))
            key_names.append(name)
    sets = [sql.SQL("({})").format(k) for k in [*key_names, *outer]]
    everything = [*outer, *key_names]
    # every key is non-null, so a row's set is the one column that is not: two numbers per row reach the client
    query = sql.SQL(
        "SELECT array_position(ARRAY[{present}], true) - 1, coalesce({names}), count(*), count(*) FILTER (WHERE e),"
        " sum(lat), count(lat)"
        " FROM (SELECT {outer}, {keys}, e, lat FROM (SELECT {inner} FROM {window} OFFSET 0) AS read OFFSET 0)"
        " AS keyed GROUP BY GROUPING SETS ({sets})"
    ).format(present=sql.SQL(", ").join(sql.SQL("{} IS NOT NULL").format(n) for n in everything),
             names=sql.SQL(", ").join(everything), outer=sql.SQL(", ").join(outer), keys=sql.SQL(", ").join(keys),
             inner=sql.SQL(", ").join(inner), window=window_rows(cfg, p, start, end), sets=sql.SQL(", ").join(sets))
    rows = count_buckets(conn, query, p.values)
    slots: dict[tuple[int, int], list[dict[int, int]]] = {}
    totals: dict[tuple[int, int], tuple[int, int, float, int]] = {}
    for g, key, count, errors, lat_sum, lat_n in rows:
        if g < len(segs):  # a segment column's totals
            totals[(g, int(key))] = (int(count), int(errors), float(lat_sum or 0.0), int(lat_n))
            continue
        j, k = divmod(g - len(segs), len(features))
        segment, code = divmod(int(key), _BASE)
        slot = buckets[j][features[k]].slot(segment, code)
        per = slots.setdefault((j, segment), [{} for _ in features])
        per[k][slot] = per[k].get(slot, 0) + int(count)
    out = []
    for j, seg in enumerate(segs):
        for v, value in enumerate(seg.values):
            n, e, total, c = totals.get((j, v), (0, 0, 0.0, 0))
            per = slots.get((j, v), [{} for _ in features])
            summaries = {f: _summary(own[j][v][f], per[i]) for i, f in enumerate(features)}
            out.append(SegmentCounts(seg.column, value, n, summaries, e if src.error_column else None,
                                     total / c if c else None))
    return out


class _Buckets:
    """One feature's bucket code for every segment at once, and each code's slot in each segment's counts."""

    def __init__(self, cols: list[ColumnProfile], edges: list[float]) -> None:
        self.cols, self.edges = cols, edges

    @classmethod
    def of(cls, cols: list[ColumnProfile]) -> _Buckets:
        if not isinstance(cols[0], NumericProfile):
            return cls(cols, [])
        points: set[float] = set()
        for col in cols:
            assert isinstance(col, NumericProfile)
            points.update(col.edges)
            points.add(math.nextafter(col.edges[-1], math.inf))  # x == the last edge sits in a bucket of its own
        return cls(cols, sorted(x for x in points if math.isfinite(x)))

    def code(self, v: sql.Composable, p: Params) -> sql.Composed:
        """0 for NULL; a numeric value's `width_bucket` over -float max, the edges, +Infinity and NaN, plus 1
        (1 for -Infinity, then the finite buckets, +Infinity, NaN); a category's position among the
        categories plus 1, one more for an unseen value."""
        if self.edges:
            framed = [-sys.float_info.max, *self.edges, math.inf, math.nan]
            return sql.SQL("coalesce(width_bucket({v}, {e}) + 1, 0)").format(v=v, e=p(framed, "::float8[]"))
        cats = self.cols[0].categories  # type: ignore[union-attr]
        return sql.SQL("CASE WHEN {v} IS NULL THEN 0 ELSE coalesce(array_position({c}, {v}), {unseen}) END").format(
            v=v, c=p(list(cats), "::text[]"), unseen=sql.Literal(len(cats) + 1))

    def slot(self, segment: int, code: int) -> int:
        if code == 0:
            return _NULL
        col = self.cols[segment]
        if not self.edges:
            return code - 1  # the category's slot; the unseen slot is the last
        assert isinstance(col, NumericProfile)
        bucket = code - 1  # width_bucket's value
        last_finite = len(self.edges) + 1
        if bucket == 0 or bucket > last_finite:
            return _INVALID  # -Infinity, +Infinity, NaN
        if bucket == 1:
            return 0  # below every edge
        low = self.edges[bucket - 2]  # the fine bucket [low, next edge)
        return len(col.edges) - 1 if low == col.edges[-1] else bisect.bisect_right(col.edges, low)


def _segment_index(seg: SegmentProfile, pgtype: str, p: Params) -> sql.Composed:
    """The row's segment: the position of its value's text among the named values, else `other` (nulls too)."""
    return sql.SQL("coalesce(array_position({named}, {key}) - 1, {other})").format(
        named=p(list(seg.values[:-1]), "::text[]"), key=category_key(seg.column, pgtype),
        other=sql.Literal(len(seg.values) - 1))


def _value(col: ColumnProfile, pgtype: str) -> sql.Composed:
    if isinstance(col, NumericProfile):
        return as_float(col.name, pgtype)
    return category_key(col.name, pgtype)


def _summary(col: ColumnProfile, slots: dict[int, int]) -> ColumnSummary:
    counts = [0] * len(col.counts)
    for slot, n in slots.items():
        if slot >= 0:
            counts[slot] += n
    kind = "numeric" if isinstance(col, NumericProfile) else "categorical"
    assert kind == "numeric" or isinstance(col, CategoricalProfile)
    return ColumnSummary(col.name, kind, tuple(counts), n=sum(counts), null_count=slots.get(_NULL, 0),
                         invalid_count=slots.get(_INVALID, 0), unseen_count=counts[-1] if kind == "categorical" else 0)
