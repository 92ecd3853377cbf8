"""The quantile scan: exact order statistics of each numeric column, read from a few fine buckets only.

The fine cumulative counts of the counts scan (`histograms`) say which bucket holds the k-th and
(k+1)-th smallest finite value (k = floor(q * (n - 1)), NumPy's linear interpolation), and one
`array_agg` per column over those buckets only is sorted and indexed, with the min and max read the
same way. Quantiles therefore equal `np.quantile` to floating-point rounding. A column whose target
buckets hold more values than the caller's limit (an interval far outside the reference) uses
`percentile_cont`. The moments of a column holding NaN or ±Infinity are computed again in this scan
over its finite values.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime

from psycopg import sql

from monitoring_lib.compute.database.histograms import Fine
from monitoring_lib.compute.database.moments import moments
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import QUANTILES, NumericProfile
from monitoring_lib.drift.summaries import QUANTILE_KEYS
from monitoring_lib.sql_common import Params, as_float, finite, window_rows


def _virtual_index(n: int, q: float) -> tuple[int, int, float]:
    """(k, k + 1, fraction) as `np.quantile`'s default method computes them, clipped to the sample."""
    h = n * q + (1 - q) - 1
    if h >= n - 1:
        return n - 1, n - 1, 0.0
    if h < 0:
        return 0, 0, 0.0
    k = math.floor(h)
    return k, k + 1, h - k


def _lerp(a: float, b: float, t: float) -> float:
    """NumPy's `_lerp`: the same arithmetic, so results agree to the last digit where the inputs do."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


@dataclass
class QuantilePlan:
    """Where one numeric column's order statistics are: which fine buckets to read, and at which positions."""

    ranks: list[tuple[int, int, float]]
    wanted: dict[int, tuple[int, int]]  # rank -> (bucket, position inside it)
    counts: dict[int, int]  # target bucket -> its row count
    values: dict[int, float] = field(default_factory=dict)  # rank -> value, once read

    @property
    def target_count(self) -> int:
        return sum(self.counts.values())

    def ranges(self, fine: Fine) -> tuple[list[float], dict[int, int]]:
        """Sorted, merged [lo, hi) edges of the target buckets and each rank's 1-based position in their values."""
        flat: list[float] = []
        offset: dict[int, int] = {}
        seen = 0
        for b in sorted(self.counts):
            lo, hi = fine.bounds(b)
            if flat and flat[-1] == lo:
                flat[-1] = hi
            else:
                flat += [lo, hi]
            offset[b] = seen
            seen += self.counts[b]
        return flat, {rank: offset[b] + r + 1 for rank, (b, r) in self.wanted.items()}

    def quantiles(self) -> dict[str, float]:
        out = []
        for k, k1, t in self.ranks:
            a = self.values[k]
            out.append(_lerp(a, self.values[k1], t) if t else a)
        return dict(zip(QUANTILE_KEYS, out, strict=True))

    def extremes(self) -> tuple[float, float]:
        """min and max: the first and last order statistics, read with the quantiles' (no aggregate per row)."""
        return self.values[0], self.values[max(self.values)]


def plan_quantiles(buckets: dict[int, int], n: int) -> QuantilePlan:
    """Locate the order statistics `np.quantile` interpolates between, and the min and max, in the fine
    cumulative counts."""
    order = sorted(buckets)
    cum = list(itertools.accumulate(buckets[b] for b in order))
    ranks = [_virtual_index(n, q) for q in QUANTILES]
    plan = QuantilePlan(ranks, {}, {})
    for rank in sorted({0, n - 1, *(r for k, k1, t in ranks for r in ((k, k1) if t else (k,)))}):
        i = bisect.bisect_right(cum, rank)
        b = order[i]
        plan.wanted[rank] = (b, rank - (cum[i] - buckets[b]))
        plan.counts[b] = buckets[b]
    return plan



def quantiles_query(
    cfg: EndpointConfig, numeric: list[NumericProfile], types: dict[str, str], plans: dict[str, QuantilePlan],
    fine: dict[str, Fine], start: datetime, end: datetime, p: Params, redo: set[str], max_fetch: int,
    exact: bool = False,
) -> sql.Composed:
    """One scan: the order statistics of each planned column, and the finite `moments` of the `redo` columns.

    Order statistics come from one `array_agg` over the column's target buckets only, sorted afterwards
    and indexed at the planned positions; a column whose targets hold more than `max_fetch` values gets
    `percentile_cont` instead (with 0 and 1 for min and max). Per column in `numeric` order: two moments if
    it is in `redo`, then an order-statistics array if it has a plan.
    """
    inner: list[sql.Composable] = []
    outer: list[sql.Composable] = []
    names: list[str] = []
    for i, c in enumerate(numeric):
        v = as_float(c.name, types[c.name])
        if c.name in redo:
            inner.append(moments(c, types[c.name], p, filtered=True, exact=exact))
            names += [f"m{i}.{j}" for j in range(2)]
            outer += [sql.SQL("t.{}").format(sql.Identifier(f"m{i}.{j}")) for j in range(2)]
        plan = plans.get(c.name)
        if plan is None:
            continue
        alias = sql.Identifier(f"a{i}")
        names.append(f"a{i}")
        if plan.target_count > max_fetch:
            inner.append(sql.SQL("percentile_cont({q}) WITHIN GROUP (ORDER BY {v}) FILTER (WHERE {f})").format(
                q=p([0.0, *QUANTILES, 1.0], "::float8[]"), v=v, f=finite(v)))
            outer.append(sql.SQL("t.{}").format(alias))
        else:
            flat, positions = plan.ranges(fine[c.name])
            inner.append(sql.SQL("array_agg({v}) FILTER (WHERE mod(width_bucket({v}, {edges}), 2) = 1)").format(
                v=v, edges=p(flat, "::float8[]")))
            # sorted after aggregating: an ORDER BY inside the aggregate would sort the whole window (PostgreSQL
            # 16 presorts the input for ordered aggregates) and rule out a parallel plan
            outer.append(sql.SQL("(SELECT ARRAY[{items}]::float8[] FROM (SELECT array_agg(x ORDER BY x) AS s"
                                 " FROM unnest(t.{a}) AS u(x)) AS o)").format(a=alias, items=sql.SQL(", ").join(
                sql.SQL("o.s[{}]").format(p(positions[r], "::int")) for r in sorted(positions))))
    # positional names keep the inner select list compact: t(m0.0, ..., a0, ...) below
    return sql.SQL("SELECT {outer} FROM (SELECT {inner} FROM {window}) AS t({names})").format(
        outer=sql.SQL(", ").join(outer), inner=sql.SQL(", ").join(inner),
        window=window_rows(cfg, p, start, end),
        names=sql.SQL(", ").join(map(sql.Identifier, names)))

