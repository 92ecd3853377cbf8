"""The operational scan: `operational.bucket_metrics` as one aggregate query per window.

Per 5-minute bucket aligned to the window start: predictions, errors, latency avg/p50/p95/p99. Their
counts and min/max timestamps also give the window's row count and first/last timestamp, so no other
scan counts rows.
"""

from __future__ import annotations

from datetime import datetime

from psycopg import sql

from monitoring_lib.compute.memory.operational import BUCKET, LATENCY_QUANTILES
from monitoring_lib.config import EndpointConfig
from monitoring_lib.sql_common import Params, as_float, error_flag, exact_number, finite, window_rows


def operational_query(
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
    return sql.SQL("SELECT {items} FROM {window} GROUP BY 1 ORDER BY 1").format(
        items=sql.SQL(", ").join(items), window=window_rows(cfg, p, start, end))



def operational_rows(rows: list[tuple], start: datetime, has_errors: bool) -> list[tuple[datetime, str, float]]:
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

