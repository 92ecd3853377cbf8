"""Interval summaries computed inside PostgreSQL: the same `ColumnSummary` values as `summarise_frame`.

Raw rows never leave the database. Four aggregate queries, each one scan of the window, return a few
thousand numbers whatever the interval size (`AggregatePlan` lets other modules add their own plain
aggregates to the moments scan, so bad rows, quality row checks and KPIs need no scan of their own).
The moments and operational scans need nothing from the counts scan, so with a second session on the
same snapshot (`snapshot.Beside`) they run while PostgreSQL hashes the counts on one core:

- counts: every column's fine bucket, hashed by `GROUPING SETS` (one set per column). A numeric
  column's fine buckets are `width_bucket` over a refined copy of the stored edges: every reference
  bin split into sub-bins (more where the reference had more rows), geometric steps beyond the outer
  edges, and the band limits and the last edge as extra edges. Every fine bucket therefore lies in
  one histogram slot and on one side of the band, so histogram and outside-band counts are exact sums
  of fine counts. NULL, NaN and ±Infinity get sentinel buckets (null and invalid counts, and the
  `SpecialCount`s an `AggregatePlan` takes from them instead of a FILTER per row); a
  categorical column's bucket is its position among the stored categories.
- moments: per numeric column mean and population variance of (x - shift) with shift = the reference
  mean (one shared transition per row; sum and sum of squares follow), and the plan's remaining
  aggregates. Where a finite value overflows float8 (1e300 squared), PostgreSQL raises rather than
  return Infinity, so the scan runs again with its sums in numeric (`overflow_safe`).
- quantiles: the order statistics each quantile needs, and the min and max: the fine cumulative counts
  say which bucket holds the k-th and (k+1)-th smallest finite value (k = floor(q * (n - 1)), NumPy's
  linear interpolation), and one `array_agg` per column over those buckets only is sorted and indexed.
  Quantiles therefore equal `np.quantile` to floating-point rounding. A column whose target buckets
  hold more than `_MAX_FETCH` values (an interval far outside the reference) uses `percentile_cont`.
  The moments of a column holding NaN or ±Infinity are computed again here over its finite values.
  Before PostgreSQL 16, where `array_agg` runs in one process, a twin session scans for half of the
  columns while this session scans for the other half.
- operational: the 5-minute buckets of `operational.bucket_metrics` (predictions, errors, latency
  avg/p50/p95/p99), aligned to the window start; their counts and min/max timestamps also give the
  window's row count and first/last timestamp.

Counts, null/invalid counts, min, max and quantiles are exact; sums may differ from NumPy in the last
digits because the summation order differs. Identifiers are quoted with `psycopg.sql`; edges,
categories, shifts, bucket bounds, positions and window bounds are bound parameters. All queries run
in one REPEATABLE READ snapshot when the connection is idle, so late-arriving rows cannot make the
parts disagree; inside a caller's transaction its isolation level decides.

Numeric columns must have a numeric SQL type (they are cast to float8). Categorical values are
compared as text in the form `category_counts` stores them: booleans as 'True'/'False', whole
floats as integers, NaN as null.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import QUANTILES, CategoricalProfile, ColumnProfile, NumericProfile, ReferenceProfile
from monitoring_lib.drift.summaries import QUANTILE_KEYS, ColumnSummary
from monitoring_lib.errors import DatabaseUnavailableError, ProfileNotFittedError, SourceError
from monitoring_lib.operational import BUCKET, LATENCY_QUANTILES
from monitoring_lib.snapshot import Beside
from monitoring_lib.source import (
    NUMBER_TYPES,
    ROUNDS_TO_ZERO,
    describe_source,
    numeric_as_float,
    source_relation,
)

_FLOAT_TYPES = {"float4", "float8"}
_FINITE = "({v} > '-Infinity'::float8 AND {v} < 'Infinity'::float8)"
# Fine buckets of a numeric column: sub-bins spread over the reference bins by their share of rows
# (at least _MIN_SUB each), and geometric steps beyond the outer edges so a shifted interval still
# lands in small buckets.
_FINE_SUBBINS = 256
_MIN_SUB = 4
_OUTER_STEPS = 32
_NULL, _INF, _NAN = -1, -2, -3
# Above this many values in a column's target buckets, its quantiles come from `percentile_cont`.
_MAX_FETCH = 2_000_000
# Hash aggregate and ordered-aggregate memory inside our own transaction (a few thousand groups; a third of
# the window's request ids per parallel worker when they are grouped).
_WORK_MEM = "64MB"
# The counts scan's Gather cost per row (PostgreSQL's default is 0.1): low enough that its keys are computed in
# the workers whatever the planner thinks they cost.
_PARALLEL_TUPLE_COST = "0.001"
# Below this magnitude a float8 difference cannot overflow (the numeric moments take it in float8).
_HALF_MAX = sys.float_info.max / 2


@dataclass(frozen=True)
class PushdownResult:
    """Everything an interval needs from its rows, computed in the database."""

    rows: int
    summaries: dict[str, ColumnSummary]
    operational: list[tuple[datetime, str, float]]
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    timings: dict[str, float] = field(default_factory=dict)


class Params:
    """Collects bound values under generated names while a query is composed (order-independent)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any, cast: str = "") -> sql.Composable:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.SQL("{}" + cast).format(sql.Placeholder(name))


# Kinds of value a column's counts scan tells apart from its finite values (`SpecialCount`).
NULL, NAN, INF, MISSING = "null", "nan", "inf", "missing"


@dataclass(frozen=True)
class SpecialCount:
    """Rows of the window whose `column` holds one of `kinds`, which the summaries' counts scan also counts.

    For a numeric column (a numeric SQL type, read as float8) the kinds are NULL, NAN and INF (either
    sign); for a categorical column MISSING, a value without a category key (NULL, or NaN in a float
    column). An aggregate planned with one is read from that scan when it covered the column.
    """

    column: str
    kinds: frozenset[str]


@dataclass(frozen=True)
class OutsideCount:
    """Rows whose numeric `column` holds a finite value below `low` or above `high` (at or beyond, where strict).

    The counts scan answers it when both limits are edges of the column's fine buckets, which
    `cut_points` makes them: x < low_cut below, x >= high_cut above.
    """

    column: str
    low: float | None
    high: float | None
    strict_low: bool = False
    strict_high: bool = False

    def cut_points(self) -> tuple[float | None, float | None]:
        low = None if self.low is None else math.nextafter(self.low, math.inf) if self.strict_low else self.low
        high = None if self.high is None else self.high if self.strict_high else math.nextafter(self.high, math.inf)
        return low, high


@dataclass(frozen=True)
class NotInCount:
    """Rows whose categorical `column` has a category key (not NULL) outside `values`."""

    column: str
    values: frozenset[str]


Derivable = SpecialCount | OutsideCount | NotInCount


class AggregatePlan:
    """Plain aggregates of one window that several modules need, evaluated together in one scan.

    Each module adds named aggregate expressions before the scan and reads their values back by name
    after it. `summaries_in_database` first leaves to its counts scan every aggregate that is a
    `Derivable` count of a column it groups (`defer`: a FILTER per row is the dominant cost of a scan),
    then folds the rest into its moments scan, which runs beside the counts scan on a second session;
    `execute` evaluates the plan alone when nothing else scanned the window. Expressions bind values
    through `params`, and every query composed with this plan's `window` or `params` must be executed
    with `params.values`.
    """

    def __init__(self, cfg: EndpointConfig, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self.params = Params()
        self.window = window_rows(cfg, self.params, start, end)
        self._items: dict[str, sql.Composable] = {}
        self._exact: dict[str, sql.Composable] = {}
        self._derivable: dict[str, Derivable] = {}
        self._deferred: dict[str, Derivable] = {}
        self._taken: dict[str, int] = {}
        self._values: dict[str, Any] | None = None
        self.seconds: float | None = None

    def add(self, name: str, expr: sql.Composable, derivable: Derivable | None = None,
            exact: sql.Composable | None = None) -> None:
        """Plan `expr` under `name`; modules needing the same aggregate may add it twice under one name.

        `derivable` says that `expr` counts exactly those rows, so a counts scan may answer it instead.
        `exact` is the same aggregate in numeric, evaluated instead when float8 overflows (`overflow_safe`).
        """
        if self._values is not None or self._deferred:
            raise RuntimeError(f"aggregate {name!r} added after the plan was evaluated")
        known = self._items.get(name)
        if known is not None and known != expr:
            raise ValueError(f"aggregate {name!r} is already planned as another expression")
        self._items[name] = expr
        if exact is not None:
            self._exact[name] = exact
        if derivable is not None:
            self._derivable[name] = derivable

    @property
    def derivables(self) -> list[Derivable]:
        return list(self._derivable.values())

    def defer(self, answerable: Callable[[Derivable], bool]) -> None:
        """Leave the derivable aggregates a counts scan will answer to `take_counts`; `expressions` drops them."""
        if self._values is None and not self._deferred:
            self._deferred = {name: d for name, d in self._derivable.items() if answerable(d)}

    def take_counts(self, answer: Callable[[Derivable], int]) -> None:
        """The deferred aggregates' values, from the counts scan that `defer` was promised."""
        self._taken = {name: answer(d) for name, d in self._deferred.items()}

    @property
    def names(self) -> list[str]:
        return list(self._items)

    @property
    def answered(self) -> set[str]:
        """The aggregates a counts scan answers: none of them costs a FILTER in the plan's own scan."""
        return set(self._deferred)

    @property
    def _pending(self) -> list[str]:
        return [name for name in self._items if name not in self._deferred]

    @property
    def expressions(self) -> list[sql.Composable]:
        """The expressions still to evaluate, in the order `fill` expects their values."""
        return self.expressions_for(exact=False)

    def expressions_for(self, exact: bool) -> list[sql.Composable]:
        """`expressions`, with each one's numeric form where it has one if `exact`."""
        return [self._exact.get(name, self._items[name]) if exact else self._items[name] for name in self._pending]

    @property
    def evaluated(self) -> bool:
        return self._values is not None

    def fill(self, values: Sequence[Any], seconds: float | None = None) -> None:
        """Take the values of `expressions` from the scan that evaluated them."""
        self._values = dict(zip(self._pending, values, strict=True))
        self.seconds = seconds

    def execute(self, conn: psycopg.Connection) -> None:
        """Evaluate the plan in a scan of its own, unless another scan already carried it."""
        if self._values is not None:
            return
        began = time.perf_counter()
        row: Sequence[Any] = ()
        if self.expressions:
            queries = {exact: sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(self.expressions_for(exact)),
                                                                 self.window) for exact in (False, True)}
            row = overflow_safe(conn, queries, self.params.values)[0]  # an aggregate without GROUP BY: one row
        self.fill(row, round(time.perf_counter() - began, 4))

    def __getitem__(self, name: str) -> Any:
        if self._values is None or (name in self._deferred and name not in self._taken):
            raise RuntimeError(f"aggregate {name!r} read before the plan was evaluated")
        return self._taken[name] if name in self._deferred else self._values[name]


@dataclass(frozen=True)
class DuplicateIds:
    """Rows of the window whose non-null `column` value occurs more than once: GX's uniqueness count.

    Computed by the bad-row accounting's grouping by request id, and reused by a uniqueness check on
    the same column over all rows, so the window is grouped by that column once.
    """

    column: str
    rows: int


def overflow_safe(conn: psycopg.Connection, queries: dict[bool, sql.Composed], params: dict[str, Any]) -> list[tuple]:
    """Run `queries[False]`, or `queries[True]` (its float sums and means in numeric) where that overflows.

    PostgreSQL raises instead of giving Infinity when finite values overflow float8: a sentinel such as
    1e300 makes the running sum of squares behind `avg` exceed float max. NumPy gives a huge or infinite
    float for the same rows, and so does the numeric form, converted in Python; only such a window pays
    for numeric arithmetic.
    """
    try:
        with conn.transaction():  # a savepoint: the snapshot's transaction survives the error
            return conn.execute(queries[False], params).fetchall()
    except psycopg.errors.NumericValueOutOfRange:
        return conn.execute(queries[True], params).fetchall()


def raise_work_mem(conn: psycopg.Connection) -> None:
    """Give the rest of the current transaction `_WORK_MEM`: hashes and sorts of the window stay off disk."""
    conn.execute("SELECT set_config('work_mem', %s, true)", (_WORK_MEM,))


@contextmanager
def query_errors(endpoint_id: str, what: str) -> Iterator[None]:
    """Map psycopg failures to the library's errors: a lost server is retryable, a bad query is the source's."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"{endpoint_id}: in-database {what} failed: {exc}") from exc
    except (psycopg.ProgrammingError, psycopg.DataError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{endpoint_id}: in-database {what} failed: {first}") from exc


def finite(v: sql.Composable) -> sql.Composed:
    return sql.SQL(_FINITE).format(v=v)


def as_float(column: str | sql.Composable, pgtype: str) -> sql.Composed:
    """A number column (a name, or an already qualified reference) as float8. A `numeric` beyond float8's
    range is ±Infinity, as the memory mode reads it, where the plain cast would fail the whole window with
    an out-of-range error."""
    v = sql.Identifier(column) if isinstance(column, str) else column
    if pgtype == "numeric":
        return numeric_as_float(v)
    return sql.SQL("{}::float8").format(v)


def as_number(column: str | sql.Composable, pgtype: str) -> sql.Composed:
    """A number or boolean column as float8, booleans as 0 and 1: PostgreSQL has no boolean -> float8 cast."""
    if pgtype == "bool":
        v = sql.Identifier(column) if isinstance(column, str) else column
        return sql.SQL("{}::int::float8").format(v)
    return as_float(column, pgtype)


def exact_number(v: sql.Composable) -> sql.Composed:
    """A float8 as numeric within half an ulp: the shortest text that reads back as the same float8. The
    direct cast keeps 15 digits, which turns float max into a number above it."""
    return sql.SQL("{}::text::numeric").format(v)


def category_key(name: str, pgtype: str) -> sql.Composed:
    """The value as the text key `category_counts` produces from the same value in pandas.

    A float is keyed as float8: whole values by their exact integer digits (`int8` where it fits;
    beyond, an exact power-of-two scaling into `int8` times a `numeric` power of two), other values by
    the shortest text that reads back as the same float8, as Python prints it: PostgreSQL switches to
    an exponent from 1e15 and Python from 1e16, so values from 1e15 up are re-read as numeric.
    """
    col = sql.Identifier(name)
    if pgtype == "bool":
        return sql.SQL("(CASE {c} WHEN true THEN 'True' WHEN false THEN 'False' END)").format(c=col)
    if pgtype in _FLOAT_TYPES:
        v = as_float(name, pgtype)
        # |v| >= 2^63: v / 2^k is an integer below 2^62 for k = floor(log2 |v|) - 60, even one step off
        k = sql.SQL("(floor(ln(abs({v})) / ln(2::float8))::int - 60)").format(v=v)
        return sql.SQL(
            "(CASE WHEN {v} = 'NaN'::float8 THEN NULL WHEN {v} = 'Infinity'::float8 THEN 'inf'"
            " WHEN {v} = '-Infinity'::float8 THEN '-inf'"
            " WHEN {v} <> trunc({v}) THEN CASE WHEN abs({v}) >= 1e15::float8 THEN {v}::text::numeric::text"
            " ELSE {v}::text END"
            " WHEN abs({v}) < {int8_end} THEN {v}::int8::text"
            " ELSE trunc(({v} / power(2::float8, {k}))::int8::numeric * 2::numeric ^ {k})::text END)"
        ).format(v=v, k=k, int8_end=sql.SQL("'9223372036854775808'::float8"))
    return sql.SQL("{}::text").format(col)


# Whitespace `str.strip` removes around the words a text flag may hold; a number's text may have ASCII only.
_SPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


def error_flag(name: str, pgtype: str) -> sql.Composed:
    """True where `frames.normalise_frame` would read the error column as true; null counts as false.

    Text is true for the words pandas' reading takes as true and for any number it parses as non-zero:
    ±Infinity ('inf', 'Infinity', '1e999') too, with no overflow error.
    """
    col = sql.Identifier(name)
    if pgtype == "bool":
        return sql.SQL("({} IS TRUE)").format(col)
    if pgtype in NUMBER_TYPES:
        return sql.SQL("coalesce({v} NOT IN (0, 'NaN'::float8), false)").format(v=as_float(name, pgtype))
    text = sql.SQL("btrim({}::text, E' \\t\\n\\r\\f\\x0B')").format(col)
    return sql.SQL(
        "(coalesce(lower(btrim({c}::text, {space})) IN ('true', 't', '1', 'yes', 'y'), false) OR coalesce(CASE"
        " WHEN {t} !~ '^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$' THEN {c}::text ~* '^[-+]?inf(inity)?$'"
        # beyond what `numeric` reads (an exponent from 1000, 16383 decimals) the exponent's sign decides
        " WHEN length({t}) > 15000 OR {t} ~ '[eE][-+]?0*[1-9][0-9]{{3,}}$'"
        " THEN {t} ~ '^[-+]?[0-9.]*[1-9]' AND {t} !~ '[eE]-'"
        " ELSE abs({t}::numeric) > {zero} END, false))"
    ).format(t=text, c=col, zero=sql.Literal(ROUNDS_TO_ZERO), space=sql.Literal(_SPACE))


def window_rows(cfg: EndpointConfig, p: Params, start: datetime, end: datetime) -> sql.Composed:
    """`rel WHERE <in [start, end)>`, the rows `read_window` selects; callers append `AND ...` conditions."""
    ts = sql.Identifier(cfg.source.timestamp_column)
    return sql.SQL("{rel} WHERE {ts} >= {s} AND {ts} < {e}").format(
        rel=source_relation(cfg.source), ts=ts, s=p(start), e=p(end))


def _window(cfg: EndpointConfig, p: Params, start: datetime, end: datetime) -> sql.Composed:
    ts = sql.Identifier("src", cfg.source.timestamp_column)
    return sql.SQL("WHERE {ts} >= {s} AND {ts} < {e}").format(ts=ts, s=p(start), e=p(end))


@dataclass(frozen=True)
class _Fine:
    """A numeric column's fine bucket edges and, per `width_bucket` result, its histogram slot and band side."""

    edges: tuple[float, ...]
    slots: tuple[int, ...]
    outside: tuple[bool, ...]

    def bounds(self, b: int) -> tuple[float, float]:
        """[lo, hi) of bucket b, with lo/hi chosen so the finite values are exactly those inside."""
        lo = self.edges[b - 1] if b > 0 else -sys.float_info.max
        hi = self.edges[b] if b < len(self.edges) else math.inf
        return lo, hi


def _fine_buckets(col: NumericProfile, band_k: float, cuts: Sequence[float] = ()) -> _Fine:
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
    return _Fine(edges, tuple(slots), tuple(outside))


def _bucket(col: ColumnProfile, fine: dict[str, _Fine], pgtype: str, p: Params) -> sql.Composed:
    """The counts scan's key of a column: one function call per row, decoded by `_decode`.

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


def _decode(col: ColumnProfile, fine: dict[str, _Fine], key: int | None) -> int:
    """A `_bucket` key as the column's fine bucket or category slot, or the `_NULL`/`_INF`/`_NAN` sentinel."""
    if isinstance(col, NumericProfile):
        if key is None:
            return _NULL
        last = len(fine[col.name].edges) + 1  # the key of the top finite bucket
        if key == 0 or key == last + 1:
            return _INF
        return _NAN if key == last + 2 else key - 1
    if key is None:
        return len(col.categories)  # unseen
    return _NULL if key == len(col.categories) + 1 else key - 1


def _counts_query(
    cfg: EndpointConfig, cols: list[ColumnProfile], fine: dict[str, _Fine], types: dict[str, str],
    start: datetime, end: datetime,
) -> tuple[sql.Composed, dict[str, Any]]:
    """One scan: row counts per (column, bucket) from hashed GROUPING SETS, one set per column.

    `OFFSET 0` keeps the bucket expressions in a subquery, so the planner estimates a default number
    of groups per set and hashes them all in one pass; seen through, it would estimate the raw
    columns' distinct counts and fall back to one sort per column.
    """
    p = Params()
    names = [sql.Identifier(f"k{i}") for i in range(len(cols))]
    keys = [sql.SQL("{} AS {}").format(_bucket(c, fine, types[c.name], p), n) for c, n in zip(cols, names, strict=True)]
    query = sql.SQL(
        "SELECT {grouping}, {names}, count(*) FROM (SELECT {keys} FROM {rel} {window} OFFSET 0) AS keys"
        " GROUP BY GROUPING SETS ({sets})"
    ).format(
        grouping=sql.SQL(", ").join(sql.SQL("GROUPING({})").format(n) for n in names),
        names=sql.SQL(", ").join(names), keys=sql.SQL(", ").join(keys),
        rel=source_relation(cfg.source, "src"), window=_window(cfg, p, start, end),
        sets=sql.SQL(", ").join(sql.SQL("({})").format(n) for n in names),
    )
    return query, p.values


def _count_buckets(conn: psycopg.Connection, query: sql.Composed, params: dict[str, Any]) -> list[tuple]:
    """Run the counts query with the bucket keys computed in parallel workers, which leaves the leader only
    the hashing: the planner, which costs the keys as cheap, would otherwise compute them in the leader too."""
    previous = conn.execute("SELECT current_setting('parallel_tuple_cost')").fetchone()[0]
    conn.execute("SELECT set_config('parallel_tuple_cost', %s, true)", (_PARALLEL_TUPLE_COST,))
    try:
        return conn.execute(query, params).fetchall()
    finally:
        if conn.info.transaction_status == TransactionStatus.INTRANS:  # a failed one rolls the setting back itself
            conn.execute("SELECT set_config('parallel_tuple_cost', %s, true)", (previous,))


def _group_counts(rows: list[tuple], cols: list[ColumnProfile], fine: dict[str, _Fine]) -> list[dict[int, int]]:
    """Per column, bucket -> row count, from the GROUPING SETS rows (the set's own GROUPING flag is 0)."""
    k = len(cols)
    out: list[dict[int, int]] = [{} for _ in range(k)]
    for row in rows:
        flags, keys, count = row[:k], row[k:2 * k], row[2 * k]
        i = flags.index(0)
        b = _decode(cols[i], fine, keys[i])  # -Infinity and +Infinity share one sentinel
        out[i][b] = out[i].get(b, 0) + int(count)
    return out


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
class _QuantilePlan:
    """Where one numeric column's order statistics are: which fine buckets to read, and at which positions."""

    ranks: list[tuple[int, int, float]]
    wanted: dict[int, tuple[int, int]]  # rank -> (bucket, position inside it)
    counts: dict[int, int]  # target bucket -> its row count
    values: dict[int, float] = field(default_factory=dict)  # rank -> value, once read

    @property
    def target_count(self) -> int:
        return sum(self.counts.values())

    def ranges(self, fine: _Fine) -> tuple[list[float], dict[int, int]]:
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


def _plan_quantiles(buckets: dict[int, int], n: int) -> _QuantilePlan:
    """Locate the order statistics `np.quantile` interpolates between, and the min and max, in the fine
    cumulative counts."""
    order = sorted(buckets)
    cum = list(itertools.accumulate(buckets[b] for b in order))
    ranks = [_virtual_index(n, q) for q in QUANTILES]
    plan = _QuantilePlan(ranks, {}, {})
    for rank in sorted({0, n - 1, *(r for k, k1, t in ranks for r in ((k, k1) if t else (k,)))}):
        i = bisect.bisect_right(cum, rank)
        b = order[i]
        plan.wanted[rank] = (b, rank - (cum[i] - buckets[b]))
        plan.counts[b] = buckets[b]
    return plan


def _moments(c: NumericProfile, pgtype: str, p: Params, filtered: bool, exact: bool = False) -> sql.Composed:
    """Mean and population variance of (x - shift) of a numeric column; over finite values if `filtered`.

    `avg` and `var_pop` of one input share PostgreSQL's transition state (count, sum and Youngs-Cramer
    sum of squared deviations), so this is one update per row: a third of the CPU of sum, sum of
    squares, min and max. `_sums` turns them back into sums; min and max are order statistics.
    `exact`: in numeric, for a window where float8 overflows (`overflow_safe`).
    """
    v = as_float(c.name, pgtype)
    s = p(c.mean, "::float8")
    if not exact:
        d = sql.SQL("({} - {})").format(v, s)
    else:
        d = sql.SQL("({} - {})").format(exact_number(v), exact_number(s))
        if abs(c.mean) <= _HALF_MAX:
            # the difference in float8, as NumPy takes it: a value's text is half an ulp off, which a
            # difference of nearby values would magnify; only beyond half of float max could it overflow
            d = sql.SQL("(CASE WHEN abs({v}) <= {half} THEN {near} ELSE {far} END)").format(
                v=v, half=p(_HALF_MAX, "::float8"), near=exact_number(sql.SQL("({} - {})").format(v, s)), far=d)
    only = sql.SQL(" FILTER (WHERE {})").format(finite(v)) if filtered else sql.SQL("")
    return sql.SQL("avg({d}){o}, var_pop({d}){o}").format(d=d, o=only)


def _sums(mean: float | Decimal, variance: float | Decimal, n: int) -> tuple[float, float]:
    """sum and sum of squares of n values with that mean and population variance.

    Numeric results stay `Decimal` until the end: a square beyond float max becomes Infinity only when
    converted, as NumPy's does, and a sum just below float max stays finite.
    """
    return float(mean * n), float(n * (variance + mean * mean))


def _moments_query(
    cfg: EndpointConfig, numeric: list[NumericProfile], types: dict[str, str], start: datetime, end: datetime,
    p: Params, extra: list[sql.Composable], exact: bool = False,
) -> sql.Composed:
    """One scan: per numeric column its two `_moments` unfiltered, then the `extra` aggregates.

    It needs nothing from the counts scan, so it runs beside it. No FILTER on finiteness: the
    aggregates' own skipping of NULL is right for every column without NaN or ±Infinity, and a FILTER
    per aggregate costs more CPU than the aggregate; the counts scan says which columns hold NaN or
    ±Infinity, and `_quantiles_query` computes theirs again.
    """
    items = [_moments(c, types[c.name], p, filtered=False, exact=exact) for c in numeric] + extra
    return sql.SQL("SELECT {} FROM {rel} {window}").format(
        sql.SQL(", ").join(items), rel=source_relation(cfg.source, "src"), window=_window(cfg, p, start, end))


def _quantiles_query(
    cfg: EndpointConfig, numeric: list[NumericProfile], types: dict[str, str], plans: dict[str, _QuantilePlan],
    fine: dict[str, _Fine], start: datetime, end: datetime, p: Params, redo: set[str], exact: bool = False,
) -> sql.Composed:
    """One scan: the order statistics of each planned column, and the finite `_moments` of the `redo` columns.

    Order statistics come from one `array_agg` over the column's target buckets only, sorted afterwards
    and indexed at the planned positions; a column whose targets hold more than `_MAX_FETCH` values gets
    `percentile_cont` instead (with 0 and 1 for min and max). Per column in `numeric` order: two moments if
    it is in `redo`, then an order-statistics array if it has a plan.
    """
    inner: list[sql.Composable] = []
    outer: list[sql.Composable] = []
    names: list[str] = []
    for i, c in enumerate(numeric):
        v = as_float(c.name, types[c.name])
        if c.name in redo:
            inner.append(_moments(c, types[c.name], p, filtered=True, exact=exact))
            names += [f"m{i}.{j}" for j in range(2)]
            outer += [sql.SQL("t.{}").format(sql.Identifier(f"m{i}.{j}")) for j in range(2)]
        plan = plans.get(c.name)
        if plan is None:
            continue
        alias = sql.Identifier(f"a{i}")
        names.append(f"a{i}")
        if plan.target_count > _MAX_FETCH:
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
    return sql.SQL("SELECT {outer} FROM (SELECT {inner} FROM {rel} {window}) AS t({names})").format(
        outer=sql.SQL(", ").join(outer), inner=sql.SQL(", ").join(inner),
        rel=source_relation(cfg.source, "src"), window=_window(cfg, p, start, end),
        names=sql.SQL(", ").join(map(sql.Identifier, names)))


def _operational_query(
    cfg: EndpointConfig, types: dict[str, str], start: datetime, end: datetime, p: Params, exact: bool = False
) -> sql.Composed:
    """Per 5-minute bucket: rows, first/last timestamp, errors, latency mean and quantiles over finite latencies."""
    src = cfg.source
    ts = sql.Identifier("src", src.timestamp_column)
    # date_bin counts whole microseconds from the window start: the bucket `bucket_metrics` computes, and
    # far cheaper per row than numeric arithmetic on extract(epoch ...)
    bucket = sql.SQL("date_bin({width}, {ts}, {s})").format(
        width=p(BUCKET, "::interval"), ts=ts, s=p(start, "::timestamptz"))
    items: list[sql.Composable] = [bucket, sql.SQL("count(*), min({ts}), max({ts})").format(ts=ts)]
    items.append(sql.SQL("count(*) FILTER (WHERE {})").format(error_flag(src.error_column, types[src.error_column]))
                 if src.error_column else sql.SQL("NULL::bigint"))
    if src.latency_column:
        lat = as_float(src.latency_column, types[src.latency_column])
        items.append(sql.SQL("avg({a}) FILTER (WHERE {f}),"
                             " percentile_cont({q}) WITHIN GROUP (ORDER BY {v}) FILTER (WHERE {f})").format(
            a=exact_number(lat) if exact else lat, v=lat, f=finite(lat),
            q=p(list(LATENCY_QUANTILES.values()), "::float8[]")))
    else:
        items.append(sql.SQL("NULL::float8, NULL::float8[]"))
    return sql.SQL("SELECT {items} FROM {rel} {window} GROUP BY 1 ORDER BY 1").format(
        items=sql.SQL(", ").join(items), rel=source_relation(src, "src"), window=_window(cfg, p, start, end))


def _columns(cfg: EndpointConfig, profile: ReferenceProfile | None) -> list[ColumnProfile]:
    """The configured features, plus the prediction when the profile has one (as `summarise_and_compute`).

    Without a profile there are no edges to summarise against: no column, only the operational buckets.
    """
    if profile is None:
        return []
    names = list(cfg.source.features)
    pred = cfg.source.prediction_column
    if profile.prediction is not None and profile.prediction.name == pred:
        names.append(pred)
    cols = []
    for name in names:
        try:
            cols.append(profile.column(name))
        except KeyError:
            raise ProfileNotFittedError(
                f"reference profile for '{profile.endpoint_id}' (model {profile.model_version}) has no "
                f"column '{name}'; refit the profile after changing the feature list"
            ) from None
    return cols


def _summaries(
    cols: list[ColumnProfile], counts: list[dict[int, int]], fine: dict[str, _Fine], non_finite_as_null: bool
) -> tuple[dict[str, ColumnSummary], dict[str, _QuantilePlan]]:
    """Counts of every column from its buckets (moments and quantiles still empty), and each quantile plan."""
    out: dict[str, ColumnSummary] = {}
    plans: dict[str, _QuantilePlan] = {}
    for c, buckets in zip(cols, counts, strict=True):
        nulls = buckets.get(_NULL, 0)
        valid = {b: n for b, n in buckets.items() if b >= 0}
        if isinstance(c, CategoricalProfile):
            slots = [0] * (len(c.categories) + 1)
            for b, n in valid.items():
                slots[b] += n
            out[c.name] = ColumnSummary(c.name, "categorical", tuple(slots), n=sum(slots), null_count=nulls,
                                        unseen_count=slots[-1])
            continue
        f = fine[c.name]
        invalid = buckets.get(_INF, 0) + buckets.get(_NAN, 0)
        if non_finite_as_null:
            nulls, invalid = nulls + invalid, 0
        hist = [0] * (len(c.edges) + 1)
        for b, n in valid.items():
            hist[f.slots[b]] += n
        total = sum(hist)
        out[c.name] = ColumnSummary(c.name, "numeric", tuple(hist), total, nulls, invalid, shift=c.mean,
                                    outside_band=sum(n for b, n in valid.items() if f.outside[b]))
        if total:
            plans[c.name] = _plan_quantiles(valid, total)
    return out, plans


def _cuts(cols: list[ColumnProfile], plan: AggregatePlan | None) -> dict[str, list[float]]:
    """Per numeric column, the finite limits of the plan's `OutsideCount`s: extra fine bucket edges."""
    out: dict[str, list[float]] = {c.name: [] for c in cols if isinstance(c, NumericProfile)}
    for d in plan.derivables if plan is not None and not plan.evaluated else []:
        if isinstance(d, OutsideCount) and d.column in out:
            out[d.column] += [x for x in d.cut_points() if x is not None and math.isfinite(x)]
    return out


_Rule = Callable[[dict[int, int]], int]


class _Answers:
    """Which of an `AggregatePlan`'s derivable counts the counts scan answers, known before it runs, and how."""

    def __init__(self, cols: list[ColumnProfile], fine: dict[str, _Fine], types: dict[str, str]) -> None:
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
                return lambda buckets: buckets.get(_NULL, 0)
            if isinstance(d, NotInCount) and d.values <= set(col.categories):  # else unseen mixes both sides
                kept = {i for i, c in enumerate(col.categories) if c in d.values}
                return lambda buckets: sum(n for b, n in buckets.items() if b >= 0 and b not in kept)
            return None
        if not isinstance(col, NumericProfile) or self.types.get(d.column) not in NUMBER_TYPES:
            return None
        if isinstance(d, SpecialCount):
            codes = {NULL: _NULL, NAN: _NAN, INF: _INF}
            if not d.kinds <= codes.keys():
                return None
            return lambda buckets: sum(buckets.get(codes[k], 0) for k in d.kinds)
        if isinstance(d, OutsideCount):
            return self._outside(d, self.fine[d.column])
        return None

    @staticmethod
    def _outside(d: OutsideCount, fine: _Fine) -> _Rule | None:
        low, high = d.cut_points()
        if any(x is not None and x not in fine.edges for x in (low, high)):
            return None  # a limit that is not an edge (not finite): the FILTER decides
        if low is not None and high is not None and low > high:
            return None  # crossed limits: a value may be on both sides

        def beyond(b: int) -> bool:
            lo, hi = fine.bounds(b)
            return (low is not None and hi <= low) or (high is not None and lo >= high)
        return lambda buckets: sum(n for b, n in buckets.items() if b >= 0 and beyond(b))


def _operational_rows(rows: list[tuple], start: datetime, has_errors: bool) -> list[tuple[datetime, str, float]]:
    """Rows in `bucket_metrics` order: per bucket predictions, errors, latency avg/p50/p95/p99."""
    out: list[tuple[datetime, str, float]] = []
    for binned, count, _first, _last, errors, avg, quantiles in rows:
        bucket_start = start + (binned - start)  # in the window's time zone, as in memory
        out.append((bucket_start, "predictions", float(count)))
        if has_errors:
            out.append((bucket_start, "errors", float(errors)))
        if avg is not None:
            out.append((bucket_start, "latency_avg", float(avg)))
            out += [(bucket_start, name, float(q)) for name, q in zip(LATENCY_QUANTILES, quantiles, strict=True)]
    return out


def _arrays_in_one_process(conn: psycopg.Connection) -> bool:
    """PostgreSQL before 16 has no partial `array_agg`, so the quantile scan runs in one process; from 16 on
    it has parallel workers already, and splitting it with the twin measured no faster (1e6 rows, 2 cores)."""
    return conn.info.server_version < 160000


def summaries_in_database(
    conn: psycopg.Connection,
    cfg: EndpointConfig,
    profile: ReferenceProfile | None,
    start: datetime,
    end: datetime,
    band_k: float,
    *,
    non_finite_as_null: bool = False,
    plan: AggregatePlan | None = None,
    beside: Beside | None = None,
) -> PushdownResult:
    """Column summaries, row count and operational buckets of [start, end), aggregated by PostgreSQL.

    `non_finite_as_null=True` counts NaN/±Infinity as nulls, as the in-memory pipeline sees them after
    `frames.normalise_frame`; by default they are reported separately as invalid. A `plan` of the same
    window is evaluated in the moments scan, less the counts the counts scan answers, so its aggregates
    cost no extra pass over the rows. Without a profile only the operational part (and the plan) is
    computed. With `beside` (a session on the same snapshot), the operational and moments queries run
    there during the counts scan, whose hashing PostgreSQL does on one core; before PostgreSQL 16, so does
    the quantile scan of half of the columns after it.
    """
    if plan is not None and (plan.start, plan.end) != (start, end):
        raise ValueError(f"aggregate plan of [{plan.start}, {plan.end}) given for [{start}, {end})")
    src = cfg.source
    cols = _columns(cfg, profile)
    needed = [src.timestamp_column, *(c.name for c in cols), *(c for c in (src.latency_column, src.error_column) if c)]
    cuts = _cuts(cols, plan)
    fine = {c.name: _fine_buckets(c, band_k, cuts[c.name]) for c in cols if isinstance(c, NumericProfile)}
    numeric = [c for c in cols if isinstance(c, NumericProfile)]
    timings: dict[str, float] = {}

    def run(name: str, query: Any, params: dict[str, Any], on: psycopg.Connection = conn,
            execute: Callable[[psycopg.Connection, Any, dict[str, Any]], list[tuple]] = overflow_safe) -> list[tuple]:
        began = time.perf_counter()
        with query_errors(cfg.endpoint_id, "summary query"):
            rows = execute(on, query, params)
        timings[name] = round(time.perf_counter() - began, 4)
        return rows

    idle = conn.info.transaction_status == TransactionStatus.IDLE
    with query_errors(cfg.endpoint_id, "summary query"), conn.transaction():
        if idle:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            raise_work_mem(conn)
        types = describe_source(conn, src)
        missing = [c for c in dict.fromkeys(needed) if c not in types]
        if missing:
            raise SourceError(f"{cfg.endpoint_id}: source lacks configured column(s) {missing}")
        answers = _Answers(cols, fine, types)
        pending = plan if plan is not None and not plan.evaluated else None  # the plan this call evaluates
        if pending is not None:
            pending.defer(answers.knows)
        # the operational buckets and the moments need nothing from the counts: beside it when a twin session exists
        side = beside if beside is not None else Beside(conn, None)
        o = Params()
        operational_queries = {exact: _operational_query(cfg, types, start, end, o, exact) for exact in (False, True)}
        operational_job = side.submit(lambda on: run("operational", operational_queries, o.values, on=on))
        p = plan.params if plan is not None else Params()
        moments_job = None
        if numeric or (pending is not None and pending.expressions):
            moments_queries = {exact: _moments_query(cfg, numeric, types, start, end, p, pending.expressions_for(exact)
                                                     if pending is not None else [], exact) for exact in (False, True)}
            moments_params = dict(p.values)  # bound now: the twin's thread reads them while this one goes on
            moments_job = side.submit(lambda on: run("moments", moments_queries, moments_params, on=on)[0])
        counts = _group_counts(run("counts", *_counts_query(cfg, cols, fine, types, start, end),
                                   execute=_count_buckets), cols, fine) if cols else []
        summaries, plans = _summaries(cols, counts, fine, non_finite_as_null)
        if pending is not None:
            pending.take_counts(answers.counting(counts))
        redo = {c.name for c, b in zip(cols, counts, strict=True) if b.get(_INF) or b.get(_NAN)}
        located: list[Any] = []
        if plans:
            def quantiles_of(part: list[NumericProfile]) -> tuple[dict[bool, sql.Composed], dict[str, Any]]:
                q = Params()
                return {exact: _quantiles_query(cfg, part, types, plans, fine, start, end, q, redo & set(plans),
                                                exact)
                        for exact in (False, True)}, q.values

            # The twin is idle by now on a large window: where the scan runs in one process, the twin takes the
            # second half of the columns. Results are in `numeric` order.
            planned = [c for c in numeric if c.name in plans]
            half = (len(planned) + 1) // 2 if side.parallel and _arrays_in_one_process(conn) else len(planned)
            twin_job = None
            if planned[half:]:
                twin_queries, twin_params = quantiles_of(planned[half:])
                twin_job = side.submit(lambda on: run("quantiles_beside", twin_queries, twin_params, on=on)[0])
            located = [*run("quantiles", *quantiles_of(planned[:half]))[0], *(twin_job.result() if twin_job else ())]
        moments: Sequence[Any] = moments_job.result() if moments_job is not None else ()
        if pending is not None:
            pending.fill(moments[2 * len(numeric):], timings["moments"])
        operational = operational_job.result()
    at = 0
    for i, c in enumerate(numeric):
        quantile_plan = plans.get(c.name)
        if quantile_plan is None:  # no finite value: nothing to add
            continue
        mean, variance = moments[2 * i:2 * i + 2]
        if c.name in redo:
            mean, variance = located[at:at + 2]
            at += 2
        values = located[at]
        at += 1
        if quantile_plan.target_count > _MAX_FETCH:
            lo, *inner, hi = map(float, values)
            quantiles = dict(zip(QUANTILE_KEYS, inner, strict=True))
        else:
            if any(x is None for x in values):
                raise SourceError(f"{cfg.endpoint_id}: rows of [{start}, {end}) changed between the summary"
                                  " queries; run on an idle connection so that they share one snapshot")
            quantile_plan.values.update(zip(sorted(quantile_plan.wanted), map(float, values), strict=True))
            quantiles = quantile_plan.quantiles()
            lo, hi = quantile_plan.extremes()
        s, sq = _sums(mean, variance, summaries[c.name].n)
        summaries[c.name] = dataclasses.replace(summaries[c.name], sum=s, sum_sq=sq, min=lo, max=hi,
                                                quantiles=quantiles)
    return PushdownResult(
        rows=sum(int(r[1]) for r in operational),
        summaries=summaries,
        operational=_operational_rows(operational, start, bool(src.error_column)),
        first_ts=min((r[2] for r in operational), default=None),
        last_ts=max((r[3] for r in operational), default=None),
        timings=timings,
    )
