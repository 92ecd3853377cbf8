"""The counts scan: every column's histogram, null and invalid counts from one hashed scan of the window.

Every column's fine bucket is hashed by `GROUPING SETS` (one set per column). A numeric column's fine
buckets are `width_bucket` over a refined copy of the stored edges: every reference bin split into
sub-bins (more where the reference had more rows), geometric steps beyond the outer edges, and the band
limits and the last edge as extra edges. Every fine bucket therefore lies in one histogram slot and on
one side of the band, so histogram and outside-band counts are exact sums of fine counts, and the
quantile scan (`quantiles`) finds each order statistic's bucket in their cumulative counts. NULL, NaN
and ±Infinity get sentinel buckets (null and invalid counts, and the `SpecialCount`s an `AggregatePlan`
takes from them instead of a FILTER per row, `CountAnswers`); a categorical column's bucket is its
position among the stored categories, compared as text in the form `category_counts` stores them.
"""

from __future__ import annotations

import bisect
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from monitoring_lib.compute.database.aggregates import (
    INF,
    MISSING,
    NAN,
    NULL,
    AggregatePlan,
    Derivable,
    NotInCount,
    OutsideCount,
    SpecialCount,
)
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import CategoricalProfile, ColumnProfile, NumericProfile
from monitoring_lib.sql_common import NUMBER_TYPES, Params, as_float, category_key, window_rows

# Fine buckets of a numeric column: sub-bins spread over the reference bins by their share of rows
# (at least _MIN_SUB each), and geometric steps beyond the outer edges so a shifted interval still
# lands in small buckets.
_FINE_SUBBINS = 256
_MIN_SUB = 4
_OUTER_STEPS = 32
# The sentinel buckets of NULL, ±Infinity and NaN in a column's counts.
NULL_BUCKET, INF_BUCKET, NAN_BUCKET = -1, -2, -3
# The counts scan's Gather cost per row (PostgreSQL's default is 0.1): low enough that its keys are computed in
# the workers whatever the planner thinks they cost.
_PARALLEL_TUPLE_COST = "0.001"


@dataclass(frozen=True)
class Fine:
    """A numeric column's fine bucket edges and, per `width_bucket` result, its histogram slot and band side."""

    edges: tuple[float, ...]
    slots: tuple[int, ...]
    outside: tuple[bool, ...]

    def bounds(self, b: int) -> tuple[float, float]:
        """[lo, hi) of bucket b, with lo/hi chosen so the finite values are exactly those inside."""
        lo = self.edges[b - 1] if b > 0 else -sys.float_info.max
        hi = self.edges[b] if b < len(self.edges) else math.inf
        return lo, hi


def fine_buckets(col: NumericProfile, band_k: float, cuts: Sequence[float] = ()) -> Fine:
    """Edges refining the stored ones; every resulting bucket sits in one histogram slot and one band side,
    and on one side of each of the `cuts` (the limits of `OutsideCount`s)."""
    e = list(col.edges)
    inner = col.counts[1:len(e)]
    total = sum(inner)
    points = set(e)
    for i in range(len(e) - 1):
        a, b = e[i], e[i + 1]
        k = max(_MIN_SUB, round(_FINE_SUBBINS * inner[i] / total)) if total else _MIN_SUB
        points.update(a + (b - a) * j / k for j in range(1, k))
    width = e[-1] - e[0]
    step = width / 64 if width > 0 else max(abs(e[0]) * 1e-6, 1e-9)
    for s in range(_OUTER_STEPS):
        points.update((e[0] - step * 2.0 ** s, e[-1] + step * 2.0 ** s))
    low, high = col.mean - band_k * col.std, col.mean + band_k * col.std
    # x == edges[-1] belongs to the last inner bin and x == high is inside the band: both get a bucket of their own
    points.update((low, high, math.nextafter(high, math.inf), math.nextafter(e[-1], math.inf), *cuts))
    edges = tuple(sorted(x for x in points if math.isfinite(x)))
    slots, outside = [0], [edges[0] <= low]
    for b in range(1, len(edges) + 1):
        lo = edges[b - 1]
        hi = edges[b] if b < len(edges) else math.inf
        slots.append(len(e) - 1 if lo == e[-1] else bisect.bisect_right(e, lo))
        outside.append(hi <= low or lo > high)
    return Fine(edges, tuple(slots), tuple(outside))


def bucket_key(col: ColumnProfile, fine: dict[str, Fine], pgtype: str, p: Params) -> sql.Composed:
    """The counts scan's key of a column: one function call per row, decoded by `decode_bucket`.

    A numeric value's `width_bucket` over the fine edges framed by -float max, +Infinity and NaN
    (PostgreSQL orders NaN above every number): 0 for -Infinity, 1 + the fine bucket for a finite
    value, then +Infinity, then NaN; NULL stays NULL. A category's position in the stored categories
    followed by NULL (`array_position` finds NULL too); an unseen value has none. A CASE per value
    would cost a third more CPU per row.
    """
    if isinstance(col, NumericProfile):
        edges = [-sys.float_info.max, *fine[col.name].edges, math.inf, math.nan]
        return sql.SQL("width_bucket({v}, {edges})").format(v=as_float(col.name, pgtype), edges=p(edges, "::float8[]"))
    return sql.SQL("array_position({cats}, {k})").format(
        cats=p([*col.categories, None], "::text[]"), k=category_key(col.name, pgtype))


def decode_bucket(col: ColumnProfile, fine: dict[str, Fine], key: int | None) -> int:
    """A `bucket_key` as the column's fine bucket or category slot, or a sentinel (`NULL_BUCKET`, ...)."""
    if isinstance(col, NumericProfile):
        if key is None:
            return NULL_BUCKET
        last = len(fine[col.name].edges) + 1  # the key of the top finite bucket
        if key == 0 or key == last + 1:
            return INF_BUCKET
        return NAN_BUCKET if key == last + 2 else key - 1
    if key is None:
        return len(col.categories)  # unseen
    return NULL_BUCKET if key == len(col.categories) + 1 else key - 1


def counts_query(
    cfg: EndpointConfig, cols: list[ColumnProfile], fine: dict[str, Fine], types: dict[str, str],
    start: datetime, end: datetime,
) -> tuple[sql.Composed, dict[str, Any]]:
    """One scan: row counts per (column, bucket) from hashed GROUPING SETS, one set per column.

    `OFFSET 0` keeps the bucket expressions in a subquery, so the planner estimates a default number
    of groups per set and hashes them all in one pass; seen through, it would estimate the raw
    columns' distinct counts and fall back to one sort per column.
    """
    p = Params()
    names = [sql.Identifier(f"k{i}") for i in range(len(cols))]
    keys = [sql.SQL("{} AS {}").format(bucket_key(c, fine, types[c.name], p), n)
            for c, n in zip(cols, names, strict=True)]
    query = sql.SQL(
        "SELECT {grouping}, {names}, count(*) FROM (SELECT {keys} FROM {window} OFFSET 0) AS keys"
        " GROUP BY GROUPING SETS ({sets})"
    ).format(
        grouping=sql.SQL(", ").join(sql.SQL("GROUPING({})").format(n) for n in names),
        names=sql.SQL(", ").join(names), keys=sql.SQL(", ").join(keys),
        window=window_rows(cfg, p, start, end),
        sets=sql.SQL(", ").join(sql.SQL("({})").format(n) for n in names),
    )
    return query, p.values


def count_buckets(conn: psycopg.Connection, query: sql.Composed, params: dict[str, Any]) -> list[tuple]:
    """Run the counts query with the bucket keys computed in parallel workers, which leaves the leader only
    the hashing: the planner, which costs the keys as cheap, would otherwise compute them in the leader too."""
    previous = conn.execute("SELECT current_setting('parallel_tuple_cost')").fetchone()[0]
    conn.execute("SELECT set_config('parallel_tuple_cost', %s, true)", (_PARALLEL_TUPLE_COST,))
    try:
        return conn.execute(query, params).fetchall()
    finally:
        if conn.info.transaction_status == TransactionStatus.INTRANS:  # a failed one rolls the setting back itself
            conn.execute("SELECT set_config('parallel_tuple_cost', %s, true)", (previous,))


def group_counts(rows: list[tuple], cols: list[ColumnProfile], fine: dict[str, Fine]) -> list[dict[int, int]]:
    """Per column, bucket -> row count, from the GROUPING SETS rows (the set's own GROUPING flag is 0)."""
    k = len(cols)
    out: list[dict[int, int]] = [{} for _ in range(k)]
    for row in rows:
        flags, keys, count = row[:k], row[k:2 * k], row[2 * k]
        i = flags.index(0)
        b = decode_bucket(cols[i], fine, keys[i])  # -Infinity and +Infinity share one sentinel
        out[i][b] = out[i].get(b, 0) + int(count)
    return out



def outside_cuts(cols: list[ColumnProfile], plan: AggregatePlan | None) -> dict[str, list[float]]:
    """Per numeric column, the finite limits of the plan's `OutsideCount`s: extra fine bucket edges."""
    out: dict[str, list[float]] = {c.name: [] for c in cols if isinstance(c, NumericProfile)}
    for d in plan.derivables if plan is not None and not plan.evaluated else []:
        if isinstance(d, OutsideCount) and d.column in out:
            out[d.column] += [x for x in d.cut_points() if x is not None and math.isfinite(x)]
    return out


_Rule = Callable[[dict[int, int]], int]


class CountAnswers:
    """Which of an `AggregatePlan`'s derivable counts the counts scan answers, known before it runs, and how."""

    def __init__(self, cols: list[ColumnProfile], fine: dict[str, Fine], types: dict[str, str]) -> None:
        self.cols = {c.name: c for c in cols}
        self.fine, self.types = fine, types

    def knows(self, d: Derivable) -> bool:
        return self._rule(d) is not None

    def counting(self, counts: list[dict[int, int]]) -> Callable[[Derivable], int]:
        """Each known count from the scan's buckets (`counts` in the order of the columns given)."""
        buckets = dict(zip(self.cols, counts, strict=True))

        def answer(d: Derivable) -> int:
            rule = self._rule(d)
            if rule is None:
                raise ValueError(f"the counts scan cannot answer {d}")
            return rule(buckets[d.column])
        return answer

    def _rule(self, d: Derivable) -> _Rule | None:
        col = self.cols.get(d.column)
        if isinstance(col, CategoricalProfile):
            if isinstance(d, SpecialCount) and d.kinds == {MISSING}:
                return lambda buckets: buckets.get(NULL_BUCKET, 0)
            if isinstance(d, NotInCount) and d.values <= set(col.categories):  # else unseen mixes both sides
                kept = {i for i, c in enumerate(col.categories) if c in d.values}
                return lambda buckets: sum(n for b, n in buckets.items() if b >= 0 and b not in kept)
            return None
        if not isinstance(col, NumericProfile) or self.types.get(d.column) not in NUMBER_TYPES:
            return None
        if isinstance(d, SpecialCount):
            codes = {NULL: NULL_BUCKET, NAN: NAN_BUCKET, INF: INF_BUCKET}
            if not d.kinds <= codes.keys():
                return None
            return lambda buckets: sum(buckets.get(codes[k], 0) for k in d.kinds)
        if isinstance(d, OutsideCount):
            return self._outside(d, self.fine[d.column])
        return None

    @staticmethod
    def _outside(d: OutsideCount, fine: Fine) -> _Rule | None:
        low, high = d.cut_points()
        if any(x is not None and x not in fine.edges for x in (low, high)):
            return None  # a limit that is not an edge (not finite): the FILTER decides
        if low is not None and high is not None and low > high:
            return None  # crossed limits: a value may be on both sides

        def beyond(b: int) -> bool:
            lo, hi = fine.bounds(b)
            return (low is not None and hi <= low) or (high is not None and lo >= high)
        return lambda buckets: sum(n for b, n in buckets.items() if b >= 0 and beyond(b))

