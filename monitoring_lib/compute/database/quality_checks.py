"""One quality check as SQL: how each column is read as the memory mode's frame holds it, and the condition,
domain and sample query of each row-level check; dtype checks answered from the column types alone.

`quality.QualityPlan` gathers these into the window's shared scans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from psycopg import sql

from monitoring_lib.compute.database.aggregates import (
    INF,
    MISSING,
    NAN,
    NULL,
    Derivable,
    NotInCount,
    OutsideCount,
    SpecialCount,
)
from monitoring_lib.config import EndpointConfig
from monitoring_lib.quality.results import (
    BETWEEN,
    IN_SET,
    NOT_NULL,
    QualityResult,
    error_result,
    is_number,
    make_result,
)
from monitoring_lib.quality.suite import ExpectationSpec
from monitoring_lib.sql_common import (
    NUMBER_TYPES,
    Params,
    as_float,
    category_key,
    error_flag,
    finite,
    stripped,
    text_number,
)

Kind = Literal["numeric", "category", "timestamp", "flag", "raw"]

_TEXT_TYPES = {"text", "varchar", "name"}
_FLOAT_TYPES = {"float4", "float8"}
# What `normalise_frame` leaves for a timestamp column read through Arrow from each PostgreSQL type.
_DATETIME_DTYPES = {"timestamptz": "datetime64[us, UTC]", "timestamp": "datetime64[us, UTC]",
                    "date": "datetime64[s, UTC]"}
_SMALLEST_NORMAL = 2.2250738585072014e-308


@dataclass(frozen=True)
class _Column:
    """A source column as the normalised frame holds it: its kind and its value as SQL (NULL = missing)."""

    kind: Kind
    pgtype: str
    value: sql.Composable


@dataclass(frozen=True)
class RowCheck:
    """A map expectation as SQL: the rows it looks at, their value, and which of them are unexpected.

    `unexpected` is None for uniqueness, whose unexpected rows are those sharing a value with another.
    """

    spec: ExpectationSpec
    domain: sql.Composable
    value: sql.Composable
    unexpected: sql.Composable | None
    mostly: float
    kind: Kind = "raw"


def _numeric_value(name: str, pgtype: str) -> sql.Composable:
    """float8, null where `normalise_frame` leaves NaN: nulls, NaN, ±Infinity and text that is not a number."""
    col = sql.Identifier(name)
    if pgtype in NUMBER_TYPES:
        v = as_float(name, pgtype)
        return sql.SQL("(CASE WHEN {f} THEN {v} END)").format(f=finite(v), v=v)
    if pgtype == "bool":
        return sql.SQL("(CASE WHEN {c} THEN 1.0::float8 WHEN NOT {c} THEN 0.0::float8 END)").format(c=col)
    v = text_number(stripped(col))
    return sql.SQL("(CASE WHEN {f} THEN CASE WHEN abs({v}) < {tiny} THEN 0.0::float8 ELSE {v} END END)").format(
        f=finite(v), v=v, tiny=sql.Literal(_SMALLEST_NORMAL))


def _timestamp_value(name: str, pgtype: str) -> sql.Composable:
    """The instant `normalise_frame` reads: naive timestamps and dates are taken as UTC."""
    col = sql.Identifier(name)
    if pgtype == "timestamp":
        return sql.SQL("({} AT TIME ZONE 'UTC')").format(col)
    if pgtype == "date":
        return sql.SQL("({}::timestamp AT TIME ZONE 'UTC')").format(col)
    return col


def _raw_value(name: str, pgtype: str) -> sql.Composable:
    col = sql.Identifier(name)
    return sql.SQL("NULLIF({}, 'NaN')").format(col) if pgtype in _FLOAT_TYPES else col


def source_columns(cfg: EndpointConfig, types: dict[str, str]) -> dict[str, _Column]:
    """Every column the pipeline reads, converted in the order `normalise_frame` converts them."""
    src = cfg.source
    cols = {c: _Column("raw", types[c], _raw_value(c, types[c])) for c in src.columns()}
    if src.error_column:
        t = types[src.error_column]
        cols[src.error_column] = _Column("flag", t, error_flag(src.error_column, t))
    numeric = [*src.numeric_features, src.prediction_column, *([src.latency_column] if src.latency_column else [])]
    for c in dict.fromkeys(numeric):
        cols[c] = _Column("numeric", types[c], _numeric_value(c, types[c]))
    for c in src.categorical_features:
        cols[c] = _Column("category", types[c], category_key(c, types[c]))
    ts = src.timestamp_column
    cols[ts] = _Column("timestamp", types[ts], _timestamp_value(ts, types[ts]))
    return cols


def not_available(spec: ExpectationSpec, why: str = "") -> QualityResult:
    what = f"{spec.expectation_type} {why}".strip()
    return error_result(
        spec, f"{what} is not available in `compute: database` mode; use `compute: memory` for this endpoint"
              " or change the expectation")


def dtype_result(spec: ExpectationSpec, cols: dict[str, _Column]) -> QualityResult:
    """A local dtype check answered from the column's SQL type: the dtype the normalised frame gives it."""
    col = cols.get(spec.column or "")
    if col is None:
        return error_result(spec, f"column '{spec.column}' is missing")
    if col.kind == "numeric":
        observed = "float64"
    elif col.kind == "flag":
        observed = "bool"
    elif col.kind == "category":
        observed = "string"
    elif col.kind == "timestamp" and col.pgtype in _DATETIME_DTYPES:
        observed = _DATETIME_DTYPES[col.pgtype]
    else:
        return not_available(spec, f"({spec.local_check}) on a {col.pgtype} column")
    ok = {"numeric_dtype": "numeric", "boolean_dtype": "flag", "datetime_dtype": "timestamp"}[spec.local_check or ""]
    return make_result(spec, col.kind == ok, observed=observed)


def _domain(spec: ExpectationSpec, cfg: EndpointConfig, cols: dict[str, _Column]) -> sql.Composable | None:
    """The rows a check looks at: all, or the non-error rows for the row condition the suite writes."""
    condition = spec.kwargs.get("row_condition")
    if not condition:
        return sql.SQL("true")
    error = cfg.source.error_column
    if error and condition == f"`{error}` != True" and spec.kwargs.get("condition_parser") == "pandas":
        return sql.SQL("NOT {}").format(cols[error].value)
    return None


def _between(spec: ExpectationSpec, col: _Column, p: Params) -> sql.Composable | str:
    kw = spec.kwargs
    bounds = [kw.get("min_value"), kw.get("max_value")]
    if col.kind == "numeric" and all(b is None or is_number(b) for b in bounds):
        cast = "::float8"
    elif col.kind == "timestamp" and all(b is None or (isinstance(b, datetime) and b.tzinfo) for b in bounds):
        cast = "::timestamptz"
    else:
        return f"on a {col.kind} column with bounds {bounds!r}"
    inside: list[sql.Composable] = []
    for bound, strict, op in ((bounds[0], kw.get("strict_min"), ">"), (bounds[1], kw.get("strict_max"), "<")):
        if bound is not None:
            inside.append(sql.SQL("{v} {op} {b}").format(v=col.value, op=sql.SQL(op if strict else op + "="),
                                                      b=p(bound, cast)))
    return sql.SQL("({v} IS NOT NULL AND NOT ({inside}))").format(v=col.value, inside=sql.SQL(" AND ").join(inside))


def _in_set(spec: ExpectationSpec, col: _Column, p: Params) -> sql.Composable | str:
    values = list(spec.kwargs.get("value_set") or [])
    if col.kind == "numeric" and all(is_number(v) or isinstance(v, str) for v in values):
        # a float column never equals a text value, as `Series.isin` compares
        members, cast = [float(v) for v in values if is_number(v)], "::float8[]"
    elif (col.kind == "category" or (col.kind == "raw" and col.pgtype in _TEXT_TYPES)) and all(
            isinstance(v, str) for v in values):
        members, cast = values, "::text[]"
    else:
        return f"on a {col.kind} column ({col.pgtype}) with this value_set"
    return sql.SQL("({v} IS NOT NULL AND NOT ({v} = ANY({set})))").format(v=col.value, set=p(members, cast))


def row_check(
    spec: ExpectationSpec, cfg: EndpointConfig, cols: dict[str, _Column], p: Params
) -> RowCheck | QualityResult:
    """The SQL form of a supported map expectation, or the failed result saying why there is none."""
    kw = spec.kwargs
    column = kw.get("column")
    col = cols.get(column) if isinstance(column, str) else None
    if col is None:
        return error_result(spec, f"column '{column}' is not among the source columns the pipeline reads")
    mostly = kw.get("mostly", 1.0)
    if not is_number(mostly):
        return not_available(spec, f"with mostly={mostly!r}")
    domain = _domain(spec, cfg, cols)
    if domain is None:
        return not_available(spec, f"with row_condition {kw.get('row_condition')!r}")
    unexpected: sql.Composable | str | None = None
    if spec.expectation_type == NOT_NULL:
        unexpected = sql.SQL("({} IS NULL)").format(col.value)
    elif spec.expectation_type == BETWEEN:
        unexpected = _between(spec, col, p)
    elif spec.expectation_type == IN_SET:
        unexpected = _in_set(spec, col, p)
    if isinstance(unexpected, str):
        return not_available(spec, unexpected)
    return RowCheck(spec, domain, col.value, unexpected, float(mostly), col.kind)


def derivable(check: RowCheck, cols: dict[str, _Column]) -> tuple[Derivable | None, Derivable | None]:
    """The check's (null, unexpected) rows as counts the summaries' counts scan can give, where it can.

    That is for a check over every row of a numeric column of a numeric SQL type (null = NULL, NaN or
    ±Infinity; between = finite values beyond the bounds) or of a categorical column (null = no key;
    in-set = keys outside the set).
    """
    if check.domain != sql.SQL("true"):
        return None, None
    kw, kind = check.spec.kwargs, check.spec.expectation_type
    name = kw["column"]
    col = cols[name]
    if col.kind == "numeric" and col.pgtype in NUMBER_TYPES:
        nulls: Derivable = SpecialCount(name, frozenset({NULL, NAN, INF}))
        if kind == NOT_NULL:
            return nulls, nulls
        bounds = [kw.get("min_value"), kw.get("max_value")]
        if kind == BETWEEN and all(b is None or _finite_number(b) for b in bounds):
            low, high = (None if b is None else float(b) for b in bounds)
            return nulls, OutsideCount(name, low, high, bool(kw.get("strict_min")), bool(kw.get("strict_max")))
        return nulls, None
    if col.kind == "category":
        missing: Derivable = SpecialCount(name, frozenset({MISSING}))
        values = kw.get("value_set")
        if kind == IN_SET and values is not None and all(isinstance(v, str) for v in values):
            return missing, NotInCount(name, frozenset(values))
        return missing, missing if kind == NOT_NULL else None
    return None, None


def _finite_number(value: object) -> bool:
    try:
        return is_number(value) and math.isfinite(float(value))  # type: ignore[arg-type]
    except OverflowError:  # an int beyond float range
        return False


def duplicates_query(check: RowCheck, window: sql.Composable) -> sql.Composed:
    """Values of the check's rows that occur more than once (GROUP BY position: the value may hold literals)."""
    return sql.SQL("SELECT {v} FROM {w} AND {d} AND {v} IS NOT NULL GROUP BY 1 HAVING count(*) > 1").format(
        v=check.value, w=window, d=check.domain)


def flagged_query(check: RowCheck, window: sql.Composable) -> sql.Composed:
    """The rows a failed check flags, as `native.unexpected_mask` selects them."""
    if check.unexpected is not None:
        return sql.SQL("({d} AND {u})").format(d=check.domain, u=check.unexpected)
    return sql.SQL("({d} AND {v} IS NOT NULL AND {v} IN ({dups}))").format(
        d=check.domain, v=check.value, dups=duplicates_query(check, window))
