"""The moments scan: per numeric column mean and variance, plus the shared plan's remaining aggregates.

Per numeric column the mean and population variance of (x - shift) with shift = the reference mean
(one shared transition per row; sum and sum of squares follow), so the sums agree with NumPy's in all
but the last digits. The scan needs nothing from the counts scan, so it runs beside it on a second
session of the same snapshot. Where a finite value overflows float8 (1e300 squared), PostgreSQL raises
rather than return Infinity, so the scan runs again with its sums in numeric (`sql.overflow_safe`).
"""

from __future__ import annotations

import sys
from datetime import datetime
from decimal import Decimal

from psycopg import sql

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import NumericProfile
from monitoring_lib.sql_common import Params, as_float, exact_number, finite, window_rows

# Below this magnitude a float8 difference cannot overflow (the numeric moments take it in float8).
_HALF_MAX = sys.float_info.max / 2


def moments(c: NumericProfile, pgtype: str, p: Params, filtered: bool, exact: bool = False) -> sql.Composed:
    """Mean and population variance of (x - shift) of a numeric column; over finite values if `filtered`.

    `avg` and `var_pop` of one input share PostgreSQL's transition state (count, sum and Youngs-Cramer
    sum of squared deviations), so this is one update per row: a third of the CPU of sum, sum of
    squares, min and max. `sums` turns them back into sums; min and max are order statistics.
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


def sums(mean: float | Decimal, variance: float | Decimal, n: int) -> tuple[float, float]:
    """sum and sum of squares of n values with that mean and population variance.

    Numeric results stay `Decimal` until the end: a square beyond float max becomes Infinity only when
    converted, as NumPy's does, and a sum just below float max stays finite.
    """
    return float(mean * n), float(n * (variance + mean * mean))


def moments_query(
    cfg: EndpointConfig, numeric: list[NumericProfile], types: dict[str, str], start: datetime, end: datetime,
    p: Params, extra: list[sql.Composable], exact: bool = False,
) -> sql.Composed:
    """One scan: per numeric column its two `moments` unfiltered, then the `extra` aggregates.

    It needs nothing from the counts scan, so it runs beside it. No FILTER on finiteness: the
    aggregates' own skipping of NULL is right for every column without NaN or ±Infinity, and a FILTER
    per aggregate costs more CPU than the aggregate; the counts scan says which columns hold NaN or
    ±Infinity, and `quantiles_query` computes theirs again.
    """
    items = [moments(c, types[c.name], p, filtered=False, exact=exact) for c in numeric] + extra
    return sql.SQL("SELECT {} FROM {window}").format(
        sql.SQL(", ").join(items), window=window_rows(cfg, p, start, end))

