"""Bad-row accounting and business KPIs computed in PostgreSQL, for endpoints with `compute: database`.

They give the numbers `frames.normalise_frame` and `applications.compute_kpis` give in memory, from
aggregate queries, so no row of the window reaches Python:

- defects per reason: numeric values that are NULL or NaN (`null:<col>`; a prediction on an error
  row is expected to be missing), ±Infinity (`non_finite:<col>`), NULL categories, NULL request ids,
  duplicated request ids (`duplicate_request_id`: every occurrence after the first);
- `bad_rows`, the distinct rows with at least one defect. Per request id with n rows of which k have
  another defect, the bad ones are n - 1 + (1 if k = n else 0): the duplicates plus the first row if it is
  itself defective. pandas keeps the first row *in read order*, which SQL does not have; counting a
  clean row as the first when there is one is the order-free reading of the same rule.

Numeric columns must have numeric SQL types in this mode (a text column cannot hold "wrong types" the
database would silently cast); `require_numeric_types` says which column is not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from monitoring_lib.applications import AppResult
from monitoring_lib.config import EndpointConfig
from monitoring_lib.errors import SourceError
from monitoring_lib.frames import BadRowReport
from monitoring_lib.pushdown import NUMBER_TYPES, Params, error_flag, window_rows

_NUMERIC_OK = NUMBER_TYPES | {"bool"}


def _numeric_columns(cfg: EndpointConfig) -> list[str]:
    src = cfg.source
    cols = [*src.numeric_features, src.prediction_column]
    if src.latency_column:
        cols.append(src.latency_column)
    return list(dict.fromkeys(cols))


def require_numeric_types(cfg: EndpointConfig, types: dict[str, str]) -> None:
    """Fail with the column and its type when a numeric column is not numeric in the database."""
    wrong = {c: types[c] for c in _numeric_columns(cfg) if c in types and types[c] not in _NUMERIC_OK}
    if wrong:
        listed = ", ".join(f"'{c}' is {t}" for c, t in wrong.items())
        raise SourceError(f"{cfg.endpoint_id}: compute: database needs numeric SQL types for numeric columns "
                          f"({listed}); cast them in the source's `sql:` query or use compute: memory")


def _defects(cfg: EndpointConfig, types: dict[str, str]) -> list[tuple[str, sql.Composable]]:
    """(reason, condition) pairs in the order `normalise_frame` notes them."""
    src = cfg.source
    errored: sql.Composable = (
        error_flag(src.error_column, types[src.error_column]) if src.error_column and src.error_column in types
        else sql.SQL("false"))
    out: list[tuple[str, sql.Composable]] = []
    for col in _numeric_columns(cfg):
        if col not in types:
            continue
        v = sql.SQL("{}::float8").format(sql.Identifier(col))
        out.append((f"non_finite:{col}", sql.SQL("{v} IN ('Infinity'::float8, '-Infinity'::float8)").format(v=v)))
        missing = sql.SQL("({v} IS NULL OR {v} = 'NaN'::float8)").format(v=v)
        if col == src.prediction_column:
            missing = sql.SQL("({m} AND NOT {e})").format(m=missing, e=errored)
        out.append((f"null:{col}", missing))
    for col in src.categorical_features:
        if col in types:
            c = sql.Identifier(col)
            cond = (sql.SQL("({c} IS NULL OR {c}::float8 = 'NaN'::float8)").format(c=c)
                    if types[col] in ("float4", "float8") else sql.SQL("{} IS NULL").format(c))
            out.append((f"null:{col}", cond))
    if src.request_id_column in types:
        out.append(("null_request_id", sql.SQL("{} IS NULL").format(sql.Identifier(src.request_id_column))))
    return out


def bad_rows_in_database(
    conn: psycopg.Connection, cfg: EndpointConfig, types: dict[str, str], start: datetime, end: datetime
) -> BadRowReport:
    """The window's `BadRowReport`, as `normalise_frame` reports it for the same rows."""
    defects = _defects(cfg, types)
    any_defect = sql.SQL(" OR ").join(sql.SQL("coalesce({}, false)").format(c) for _, c in defects) \
        if defects else sql.SQL("false")
    counts = [sql.SQL("count(*) FILTER (WHERE {})").format(c) for _, c in defects]
    p = Params()
    window = window_rows(cfg, p, start, end)
    row = conn.execute(
        sql.SQL("SELECT count(*), count(*) FILTER (WHERE {any}){more} FROM {w}").format(
            any=any_defect, more=sql.SQL("").join(sql.SQL(", {}").format(c) for c in counts), w=window),
        p.values,
    ).fetchone()
    rows, flagged = int(row[0]), int(row[1])
    reasons = {name: int(n) for (name, _), n in zip(defects, row[2:], strict=True) if n}
    rid = cfg.source.request_id_column
    if rid in types and rows:
        # Per duplicated id: n rows, k of them otherwise defective (already in `flagged`) -> n - 1 + (k = n).
        dup = conn.execute(
            sql.SQL(
                "SELECT coalesce(sum(n - 1), 0), coalesce(sum(n - 1 + (k = n)::int - k), 0) FROM ("
                " SELECT count(*) AS n, count(*) FILTER (WHERE {any}) AS k FROM {w} AND {id} IS NOT NULL"
                " GROUP BY {id} HAVING count(*) > 1) AS ids"
            ).format(any=any_defect, w=window, id=sql.Identifier(rid)),
            p.values,
        ).fetchone()
        if int(dup[0]):
            reasons["duplicate_request_id"] = int(dup[0])
            flagged += int(dup[1])
    return BadRowReport(rows=rows, bad_rows=flagged, by_reason=reasons)


_KPI_AGG = {"sum": "coalesce(sum({v}) FILTER (WHERE {f}), 0)", "mean": "avg({v}) FILTER (WHERE {f})",
            "min": "min({v}) FILTER (WHERE {f})", "max": "max({v}) FILTER (WHERE {f})",
            "count": "count(*) FILTER (WHERE {f})"}


def kpis_in_database(
    conn: psycopg.Connection, cfg: EndpointConfig, types: dict[str, str], start: datetime, end: datetime
) -> list[AppResult]:
    """`compute_kpis` over the window in one aggregate query; NaN/±Infinity are ignored as in memory."""
    results: list[AppResult | None] = []
    items: list[sql.Composable] = []
    monitored = set(cfg.source.columns())
    for kpi in cfg.kpis:
        if kpi.column not in monitored or kpi.column not in types:
            results.append(AppResult("kpi", kpi.name, "business_kpi", "error", None,
                                     {"error": f"column '{kpi.column}' is not in the interval data"}))
            continue
        if types[kpi.column] not in _NUMERIC_OK:
            results.append(AppResult("kpi", kpi.name, "business_kpi", "error", None,
                                     {"error": f"column '{kpi.column}' is {types[kpi.column]}, not numeric"}))
            continue
        cast = "{}::int::float8" if types[kpi.column] == "bool" else "{}::float8"
        v = sql.SQL(cast).format(sql.Identifier(kpi.column))
        finite = sql.SQL("({v} > '-Infinity'::float8 AND {v} < 'Infinity'::float8)").format(v=v)
        items.append(sql.SQL(_KPI_AGG[kpi.agg]).format(v=v, f=finite))
        results.append(None)
    values: tuple[Any, ...] = ()
    if items:
        p = Params()
        query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(items), window_rows(cfg, p, start, end))
        values = conn.execute(query, p.values).fetchone()
    out, pos = [], 0
    for kpi, done in zip(cfg.kpis, results, strict=True):
        if done is not None:
            out.append(done)
            continue
        value = values[pos]
        pos += 1
        out.append(AppResult("kpi", kpi.name, "business_kpi", "ok",
                             float("nan") if value is None else float(value), {"column": kpi.column, "agg": kpi.agg}))
    return out
