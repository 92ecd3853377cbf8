"""Reading the inference log: one Arrow read per interval, identifiers quoted, values bound.

`pandas.read_sql` is ~9x slower than Arrow through ADBC on this stack, so the window is fetched
with `adbc-driver-postgresql` straight into Arrow and converted to pandas once.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import sql

from monitoring_lib.config import EndpointConfig, SourceConfig
from monitoring_lib.errors import DatabaseUnavailableError, SourceError
from monitoring_lib.sql_common import in_window, numeric_as_float, qualified, source_relation


def window_query(
    cfg: EndpointConfig, columns: list[str] | None = None, placeholder: str = "$", as_float: Collection[str] = ()
) -> sql.Composed:
    """SELECT the monitored columns of [start, end); `$` placeholders for ADBC, `%s` for psycopg.

    `as_float` columns (PostgreSQL `numeric` read as numbers) are converted by the server (`numeric_as_float`).
    """
    src = cfg.source
    cols = columns or src.columns()
    p1, p2 = ("$1", "$2") if placeholder == "$" else ("%s", "%s")
    items = [sql.SQL("{} AS {}").format(numeric_as_float(sql.Identifier(c)), sql.Identifier(c))
             if c in as_float else sql.Identifier(c) for c in cols]
    return sql.SQL("SELECT {cols} FROM {rel} WHERE {window}").format(
        cols=sql.SQL(", ").join(items), rel=source_relation(src), window=in_window(src, sql.SQL(p1), sql.SQL(p2)))


def _numbers_stored_as_numeric(cur: Any, cfg: EndpointConfig, columns: list[str]) -> set[str]:
    """The columns read as numbers (features, prediction, latency) whose PostgreSQL type is `numeric`."""
    src = cfg.source
    wanted = [c for c in columns if c in {*src.numeric_features, src.prediction_column, src.latency_column}]
    if not wanted:
        return set()
    cur.execute(sql.SQL("SELECT {} FROM {} LIMIT 0").format(
        sql.SQL(", ").join(map(sql.Identifier, wanted)), source_relation(src)).as_string())
    schema = cur.fetch_arrow_table().schema
    return {f.name for f in schema if (f.metadata or {}).get(b"POSTGRESQL:type") == b"numeric"}


def read_window(
    url: str, cfg: EndpointConfig, start: datetime, end: datetime, columns: list[str] | None = None
) -> pd.DataFrame:
    """Fetch the window's rows (all monitored columns, or `columns`) into pandas through Arrow in one read."""
    cols = columns or cfg.source.columns()
    try:
        with adbc.connect(url) as aconn, aconn.cursor() as cur:
            numeric = _numbers_stored_as_numeric(cur, cfg, cols)
            # identifiers need no connection to be quoted
            cur.execute(window_query(cfg, cols, as_float=numeric).as_string(), (start, end))
            table = cur.fetch_arrow_table()
    except adbc.OperationalError as exc:
        raise DatabaseUnavailableError(f"reading {cfg.endpoint_id}'s source failed: {exc}") from exc
    except adbc.ProgrammingError as exc:
        raise SourceError(f"{cfg.endpoint_id}: source query failed: {str(exc).splitlines()[0]}") from exc
    # one block per column, each freed from Arrow as it converts: no consolidation copy of the floats
    return _text_storage(table).to_pandas(split_blocks=True, self_destruct=True)


def sample_window(url: str, cfg: EndpointConfig, start: datetime, end: datetime, columns: list[str],
                  rows: int) -> pd.DataFrame:
    """At most `rows` of the window's rows, the same ones on every read of the same window.

    The order is a hash of the request id (then the id and the timestamp, for repeated ids), so the
    sample is spread over the window and both compute modes classify the same rows; no more than `rows`
    reach the client. The server first finds the `rows`-th hash over the narrow key alone, then sorts
    only the rows at or below it: sorting every row with all its columns took twice as long.
    """
    order = sql.SQL(" ORDER BY {key} LIMIT {n}").format(key=_sample_order(cfg.source), n=sql.Literal(rows))
    try:
        with adbc.connect(url) as aconn, aconn.cursor() as cur:
            numeric = _numbers_stored_as_numeric(cur, cfg, columns)
            query = sql.Composed([_sample_cut(cfg.source, rows), window_query(cfg, columns, as_float=numeric),
                                  _below_cut(cfg.source), order])
            cur.execute(query.as_string(), (start, end))
            table = cur.fetch_arrow_table()
    except adbc.OperationalError as exc:
        raise DatabaseUnavailableError(f"sampling {cfg.endpoint_id}'s source failed: {exc}") from exc
    except adbc.ProgrammingError as exc:
        raise SourceError(f"{cfg.endpoint_id}: source sample query failed: {str(exc).splitlines()[0]}") from exc
    return _text_storage(table).to_pandas()


def _sample_hash(src: SourceConfig) -> sql.Composed:
    return sql.SQL("hashtextextended({}::text, 0)").format(sql.Identifier(src.request_id_column))


def _sample_order(src: SourceConfig) -> sql.Composed:
    return sql.SQL("{h}, {rid}::text, {ts}").format(h=_sample_hash(src), rid=sql.Identifier(src.request_id_column),
                                                   ts=sql.Identifier(src.timestamp_column))


def _sample_cut(src: SourceConfig, rows: int) -> sql.Composed:
    """The hash of the `rows`-th row in sample order (none when the window has fewer rows)."""
    return sql.SQL("WITH mlmon_sample_cut AS (SELECT {h} AS h FROM {rel} WHERE {window} ORDER BY {key}"
                   " OFFSET {skip} LIMIT 1) ").format(
        h=_sample_hash(src), rel=source_relation(src), window=in_window(src, sql.SQL("$1"), sql.SQL("$2")),
        key=_sample_order(src), skip=sql.Literal(rows - 1))


def _below_cut(src: SourceConfig) -> sql.Composed:
    """The rows at or below the cut: a superset of the sample (ties on the hash), which the ORDER BY then
    trims. Without a cut (a short window, or NULL ids reaching it) every row stays, as before."""
    return sql.SQL(" AND ({h} <= (SELECT h FROM mlmon_sample_cut) OR (SELECT h FROM mlmon_sample_cut) IS NULL)"
                   ).format(h=_sample_hash(src))


def _text_storage(table: pa.Table) -> pa.Table:
    """Extension columns stored as text (PostgreSQL `numeric`, `json`) as that text.

    pandas cannot place an extension column's block when converting block by block (pyarrow raises a
    KeyError naming the column), so a `numeric` feature would fail the read; `normalise_frame` parses
    the text as it parses any text number.
    """
    for i, field in enumerate(table.schema):
        kind = field.type
        if isinstance(kind, pa.BaseExtensionType) and (
                pa.types.is_string(kind.storage_type) or pa.types.is_large_string(kind.storage_type)):
            storage = pa.chunked_array([chunk.storage for chunk in table.column(i).chunks], type=kind.storage_type)
            table = table.set_column(i, field.with_type(kind.storage_type), storage)
    return table


def count_window(conn: psycopg.Connection, cfg: EndpointConfig, start: datetime, end: datetime) -> int:
    query = sql.SQL("SELECT count(*) FROM {rel} WHERE {window}").format(
        rel=source_relation(cfg.source), window=in_window(cfg.source, sql.SQL("%s"), sql.SQL("%s")))
    return int(conn.execute(query, (start, end)).fetchone()[0])


def window_model_version(conn: psycopg.Connection, cfg: EndpointConfig, start: datetime, end: datetime) -> str | None:
    """The most frequent non-NULL value of `source.model_version_column` in [start, end), as text; None when
    the window has none. A tie goes to the version logged last in the window (the one serving at its end).

    One aggregate query, whatever the compute mode: the version decides the reference before any read.
    """
    src = cfg.source
    query = sql.SQL(
        "SELECT {v}::text FROM {rel} WHERE {ts} >= %s AND {ts} < %s AND {v} IS NOT NULL"
        " GROUP BY 1 ORDER BY count(*) DESC, max({ts}) DESC, 1 DESC LIMIT 1"
    ).format(v=sql.Identifier(src.model_version_column), rel=source_relation(src),
             ts=sql.Identifier(src.timestamp_column))
    try:
        row = conn.execute(query, (start, end)).fetchone()
    except psycopg.errors.UndefinedColumn as exc:
        raise SourceError(f"{cfg.endpoint_id} ({cfg.source_file or 'config'}): source.model_version_column: column"
                          f" '{src.model_version_column}' not found in {src.table or 'source.sql'}") from exc
    return None if row is None else str(row[0])


_UNIQUE_COLUMNS = """
SELECT a.attname FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indrelid
JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1
  AND i.indpred IS NULL AND i.indexprs IS NULL
  AND (c.relkind = 'p' OR NOT EXISTS (SELECT FROM pg_inherits AS h WHERE h.inhparent = c.oid))
"""


def unique_columns(conn: psycopg.Connection, source: SourceConfig) -> frozenset[str]:
    """Columns whose non-null values a unique index keeps distinct, so counting their repeats needs no grouping.

    Only a `table:` source's valid single-column unique indexes without a predicate or expression count
    (primary keys and unique constraints included), and not on a table with inheritance children, which
    such an index does not cover; a partitioned table's index covers its partitions.
    """
    if not source.table:
        return frozenset()
    rows = conn.execute(_UNIQUE_COLUMNS, (qualified(source.table).as_string(conn),)).fetchall()
    return frozenset(name for (name,) in rows)


def describe_source(conn: psycopg.Connection, source: SourceConfig) -> dict[str, str]:
    """Column name -> PostgreSQL type name of the live source, without reading any row."""
    return describe_relation(conn, source_relation(source))


def describe_relation(conn: psycopg.Connection, relation: sql.Composable) -> dict[str, str]:
    """Column name -> PostgreSQL type name of a table or subquery, without reading any row."""
    query = sql.SQL("SELECT * FROM {rel} LIMIT 0").format(rel=relation)
    with conn.cursor() as cur:
        cur.execute(query)
        types = {}
        for col in cur.description or []:
            known = conn.adapters.types.get(col.type_code)
            types[col.name] = known.name if known else f"oid:{col.type_code}"
    return types
