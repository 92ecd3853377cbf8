"""Writing summary rows: replace a window's rows in one transaction so re-runs never duplicate.

Every result table is keyed by (endpoint_id, window_start, window_end, ...). A re-run deletes the
window's rows and upserts the new ones, so rows that no longer apply (a feature removed from the
config) disappear too, and a concurrent writer racing on the same key updates instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

SCHEMA = "monitoring"


def json_safe(value: Any) -> Any:
    """JSON has no NaN or Infinity, and PostgreSQL rejects the tokens Python writes for them, which would
    fail the window's whole write: they are stored as null, as the numeric columns store them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def document(value: Any) -> Jsonb:
    """A jsonb parameter with non-finite numbers as null (`json_safe`)."""
    return Jsonb(json_safe(value))


def table_id(table: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, table)


def upsert(
    conn: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """INSERT ... ON CONFLICT (key) DO UPDATE for many rows, batched through executemany."""
    if not rows:
        return 0
    updates = [c for c in columns if c not in key]
    conflict = (
        sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates)
        )
        if updates
        else sql.SQL("DO NOTHING")
    )
    query = sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT ({key}) {conflict}").format(
        t=table_id(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        key=sql.SQL(", ").join(map(sql.Identifier, key)),
        conflict=conflict,
    )
    prepared = [tuple(document(v) if isinstance(v, (dict, list)) else v for v in row) for row in rows]
    with conn.cursor() as cur:
        cur.executemany(query, prepared)
    return len(prepared)


def delete_window(conn: psycopg.Connection, table: str, endpoint_id: str, start: datetime, end: datetime,
                  scope: Mapping[str, Any] | None = None) -> None:
    """The window's rows, or only those whose `scope` columns hold the given values (two writers, one table)."""
    scope = dict(scope or {})
    query = sql.SQL("DELETE FROM {t} WHERE endpoint_id = %s AND window_start = %s AND window_end = %s{extra}").format(
        t=table_id(table),
        extra=sql.SQL("").join(sql.SQL(" AND {} = %s").format(sql.Identifier(c)) for c in scope),
    )
    conn.execute(query, (endpoint_id, start, end, *scope.values()))


def replace_window(
    conn: psycopg.Connection,
    table: str,
    endpoint_id: str,
    start: datetime,
    end: datetime,
    columns: Sequence[str],
    key_extra: Sequence[str],
    rows: Sequence[Sequence[Any]],
    scope: Mapping[str, Any] | None = None,
) -> int:
    """Rows are given without the three window columns; they are prefixed here. With `scope`, only the
    window's rows holding those values are replaced (`delete_window`), and the rows must hold them too."""
    delete_window(conn, table, endpoint_id, start, end, scope)
    full_cols = ["endpoint_id", "window_start", "window_end", *columns]
    key = ["endpoint_id", "window_start", "window_end", *key_extra]
    return upsert(conn, table, full_cols, key, [(endpoint_id, start, end, *row) for row in rows])


def delete_endpoint(conn: psycopg.Connection, endpoint_id: str, tables: Sequence[str]) -> None:
    """Every row of `endpoint_id` in `tables` of schema monitoring, in the order given (children first)."""
    for table in tables:
        conn.execute(sql.SQL("DELETE FROM {} WHERE endpoint_id = %s").format(sql.Identifier("monitoring", table)),
                     (endpoint_id,))
