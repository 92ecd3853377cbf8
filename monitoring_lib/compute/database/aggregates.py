"""`AggregatePlan`: the plain aggregates of one window that several modules need, evaluated in one scan.

Bad rows (`bad_rows`), quality row checks (`quality`) and KPIs (`kpis`) each need a few
counts or sums of the same rows; a scan per module would read the window several times. Each adds its
aggregates to one plan, and whichever scan runs first carries them: in `compute: database`, the summaries'
moments scan (`scan.summaries_in_database`), which also lets its counts scan answer the counts it already
knows from its buckets (the `Derivable` counts), since a FILTER per row is the dominant cost of a scan.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from monitoring_lib.config import EndpointConfig
from monitoring_lib.sql_common import Params, overflow_safe, window_rows

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

