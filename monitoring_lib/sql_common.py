"""The SQL toolbox every query builder shares, in either compute mode: one rule, one place.

The memory mode reads the window through `source.read_window` and lets pandas interpret the values;
each query of the database mode must interpret them the same way, so the pieces that decide how a
value reads (a `numeric` beyond float8's range, text that reads as a number, the error flag, a
category's key) and which rows a window holds (`in_window`) are written here once. Identifiers are
quoted with `psycopg.sql`; values are bound parameters (`Params`).
"""

from __future__ import annotations

import decimal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from monitoring_lib.config import EndpointConfig, SourceConfig
from monitoring_lib.errors import DatabaseUnavailableError, SourceError

# PostgreSQL's number types (as `source.describe_source` names them), and with booleans, read as 0 and 1,
# what a KPI aggregates and performance metrics compare
NUMBER_TYPES = frozenset({"int2", "int4", "int8", "float4", "float8", "numeric"})
NUMBER_OR_BOOL_TYPES = frozenset({*NUMBER_TYPES, "bool"})
_FLOAT_TYPES = {"float4", "float8"}
_FINITE = "({v} > '-Infinity'::float8 AND {v} < 'Infinity'::float8)"
# Hash aggregate and ordered-aggregate memory inside our own transaction (a few thousand groups; a third of
# the window's request ids per parallel worker when they are grouped).
_WORK_MEM = "64MB"


class Params:
    """Collects bound values under generated names while a query is composed (order-independent)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any, cast: str = "") -> sql.Composable:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.SQL("{}" + cast).format(sql.Placeholder(name))


def qualified(name: str) -> sql.Identifier:
    """`schema.table` or `table` from config, each part quoted as an identifier."""
    return sql.Identifier(*name.split(".", 1))


def source_relation(source: SourceConfig, alias: str = "src") -> sql.Composable:
    """The FROM item: the configured table, or the configured SELECT wrapped as a derived table.

    The SQL text of a `sql:` source is config written by the deployer (like a view definition),
    never user input; it is wrapped, not interpolated with values.
    """
    if source.table:
        return sql.SQL("{} AS {}").format(qualified(source.table), sql.Identifier(alias))
    body = sql.SQL(source.sql.strip().rstrip(";"))  # type: ignore[union-attr]
    return sql.SQL("({}) AS {}").format(body, sql.Identifier(alias))


def in_window(
    source: SourceConfig, start: sql.Composable, end: sql.Composable, alias: str | None = None
) -> sql.Composed:
    """The rows of the half-open window [start, end) on the source's timestamp (qualified by `alias`).

    Every reader of a window, in memory or in the database, selects exactly these rows, so an interval's
    row counts agree between the modes and adjacent windows never share a row.
    """
    ts = sql.Identifier(*([alias] if alias else []), source.timestamp_column)
    return sql.SQL("{ts} >= {s} AND {ts} < {e}").format(ts=ts, s=start, e=end)


def window_rows(cfg: EndpointConfig, p: Params, start: datetime, end: datetime) -> sql.Composed:
    """`rel WHERE <in [start, end)>`, the rows `read_window` selects; callers append `AND ...` conditions."""
    return sql.SQL("{rel} WHERE {window}").format(
        rel=source_relation(cfg.source), window=in_window(cfg.source, p(start), p(end)))


# A `numeric` value as the float8 that parsing its text gives (the memory mode's `normalise_frame` parses text
# numbers):
# beyond float max it is ±Infinity (a non-finite value, counted as such) rather than the cast's overflow error.
# Converted by the server, a window of 20 `numeric` columns reads 3-4x faster than as text parsed in pandas.
# Below float's range too: a number that rounds to zero is ±0.0, not the cast's out-of-range error.
_NUMERIC_AS_FLOAT = (
    "(CASE WHEN {c} BETWEEN -1e308 AND 1e308 THEN CASE WHEN {c} BETWEEN -1e-300 AND 1e-300 AND abs({c}) <= {zero}"
    " THEN CASE WHEN {c} < 0 THEN '-0'::float8 ELSE 0::float8 END ELSE {c}::float8 END"
    " WHEN {c} = 'NaN' THEN 'NaN'::float8"
    " WHEN {c} >= {limit} THEN 'Infinity'::float8 WHEN {c} <= -{limit} THEN '-Infinity'::float8"
    " ELSE {c}::float8 END)"
)
# Float max plus half its ulp, the first number that rounds to Infinity (max's last mantissa bit is odd).
_ROUNDS_TO_INFINITY = Decimal(int(sys.float_info.max) + 2 ** 970)
# Half the smallest subnormal float, exactly: a number up to it rounds to 0.0, one above it does not.
ROUNDS_TO_ZERO = decimal.Context(prec=1100).divide(Decimal(5e-324), 2)


def numeric_as_float(value: sql.Composable) -> sql.Composed:
    """A `numeric` value as float8 without the cast's overflow error (`_NUMERIC_AS_FLOAT`)."""
    return sql.SQL(_NUMERIC_AS_FLOAT).format(c=value, limit=sql.Literal(_ROUNDS_TO_INFINITY),
                                             zero=sql.Literal(ROUNDS_TO_ZERO))


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


# A decimal number's text as `pandas.to_numeric` reads it (after `stripped`); words such as 'inf' are not.
_NUMBER_TEXT = r"^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$"
# Number text `numeric` may refuse: an exponent from 1000 (older servers refuse one beyond ±1000), or more
# digits than it holds (131072 before the point); more than 16383 decimals are cut to `_DECIMALS` first,
_BEYOND_NUMERIC = "length({t}) > 100000 OR {t} ~ '[eE][-+]?0*[1-9][0-9]{{3,}}$'"
# enough for the float8 nearest to any number text with an exponent below 1000.
_DECIMALS = 1100


def stripped(value: sql.Composable) -> sql.Composed:
    """A value's text without the ASCII whitespace `pandas.to_numeric` allows around a number."""
    return sql.SQL("btrim({}::text, E' \\t\\n\\r\\f\\x0B')").format(value)


def text_number(text: sql.Composable) -> sql.Composed:
    """`stripped` text as the float8 `pandas.to_numeric` reads from it; NULL where it is not a decimal number.

    Beyond float8's range it is ±Infinity and below it ±0.0 (`numeric_as_float`); beyond what `numeric`
    reads, the text's shape decides: 0 for a mantissa without a non-zero digit or a negative exponent,
    otherwise ±Infinity by the sign. No text fails the query. The quality checks' numeric values and the
    error flag of a text column both read numbers through here, so the two cannot disagree.
    """
    beyond = sql.SQL(_BEYOND_NUMERIC).format(t=text)
    cut = sql.SQL(
        "(CASE WHEN length({t}) > {keep} AND strpos({t}, '.') > 0 THEN left(substring({t} FROM '^[^eE]*'),"
        " strpos({t}, '.') + {keep}) || coalesce(substring({t} FROM '[eE].*$'), '') ELSE {t} END)"
    ).format(t=text, keep=sql.Literal(_DECIMALS))
    return sql.SQL(
        "(CASE WHEN {t} !~ {pattern} THEN NULL WHEN {beyond} THEN CASE"
        " WHEN {t} ~ '^[-+]?[0-9.]*[1-9]' AND {t} !~ '[eE]-' THEN"
        " CASE WHEN {t} ~ '^-' THEN '-Infinity'::float8 ELSE 'Infinity'::float8 END"
        " WHEN {t} ~ '^-' THEN '-0'::float8 ELSE 0::float8 END"
        " ELSE {n} END)"
    ).format(t=text, pattern=sql.Literal(_NUMBER_TEXT), beyond=beyond,
             n=numeric_as_float(sql.SQL("{}::numeric").format(cut)))


def category_key(name: str | sql.Composable, pgtype: str) -> sql.Composed:
    """The value as the text key `category_counts` produces from the same value in pandas.

    A float is keyed as float8: whole values by their exact integer digits (`int8` where it fits;
    beyond, an exact power-of-two scaling into `int8` times a `numeric` power of two), other values by
    the shortest text that reads back as the same float8, as Python prints it: PostgreSQL switches to
    an exponent from 1e15 and Python from 1e16, so values from 1e15 up are re-read as numeric.
    """
    col = sql.Identifier(name) if isinstance(name, str) else name
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
    """True where `compute.memory.bad_rows.normalise_frame` would read the error column as true; null counts as false.

    Text is true for the words pandas' reading takes as true and for any number it parses as non-zero
    (`text_number`): ±Infinity ('inf', 'Infinity', '1e999') too, with no overflow error.
    """
    col = sql.Identifier(name) if isinstance(name, str) else name
    if pgtype == "bool":
        return sql.SQL("({} IS TRUE)").format(col)
    if pgtype in NUMBER_TYPES:
        return sql.SQL("coalesce({v} NOT IN (0, 'NaN'::float8), false)").format(v=as_float(name, pgtype))
    return sql.SQL(
        "(coalesce(lower(btrim({c}::text, {space})) IN ('true', 't', '1', 'yes', 'y'), false)"
        " OR coalesce({n} <> 0, {c}::text ~* '^[-+]?inf(inity)?$', false))"
    ).format(c=col, n=text_number(stripped(col)), space=sql.Literal(_SPACE))


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
