"""Interval summaries computed inside PostgreSQL: the same `ColumnSummary` values as `summarise_frame`.

Raw rows never leave the database; four aggregate queries, each one scan of the window, return a few
hundred numbers whatever the interval size:

- counts: every column's histogram slot (`width_bucket` over the profile's stored edges, or the
  position among the stored categories) grouped by `GROUPING SETS`, one set per column;
- moments: row count, null and invalid (NaN/±Infinity) counts, sum and sum of squares of (x - shift)
  with shift = the reference mean, min, max and outside-band counts, all with `FILTER` clauses;
- quantiles: `percentile_cont` over the finite values, the same linear interpolation NumPy uses, so
  they agree with `np.quantile` to floating-point rounding (tests allow 1e-9 relative);
- operational: the 5-minute buckets of `operational.bucket_metrics` (predictions, errors, latency
  avg/p50/p95/p99), aligned to the window start.

Counts, null/invalid counts, min and max are exact; sums may differ from NumPy in the last digits
because the summation order differs. Identifiers are quoted with `psycopg.sql`; edges, categories,
shifts, bands and window bounds are bound parameters. All queries run in one REPEATABLE READ
snapshot when the connection is idle, so late-arriving rows cannot make the parts disagree.

Numeric columns must have a numeric SQL type (they are cast to float8). Categorical values are
compared as text in the form `category_counts` stores them: booleans as 'True'/'False', whole
floats as integers, NaN as null.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import QUANTILES, CategoricalProfile, ColumnProfile, NumericProfile, ReferenceProfile
from monitoring_lib.drift.summaries import QUANTILE_KEYS, ColumnSummary
from monitoring_lib.errors import DatabaseUnavailableError, ProfileNotFittedError, SourceError
from monitoring_lib.operational import BUCKET, LATENCY_QUANTILES
from monitoring_lib.source import describe_source, source_relation

_FLOAT_TYPES = {"float4", "float8"}
_NUMBER_TYPES = {"int2", "int4", "int8", "float4", "float8", "numeric"}
_TRUTHY = ["true", "t", "1", "yes", "y"]
_FINITE = "({v} > '-Infinity'::float8 AND {v} < 'Infinity'::float8)"


@dataclass(frozen=True)
class PushdownResult:
    """Everything an interval needs from its rows, computed in the database."""

    rows: int
    summaries: dict[str, ColumnSummary]
    operational: list[tuple[datetime, str, float]]
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    timings: dict[str, float] = field(default_factory=dict)


class _Params:
    """Collects bound values under generated names while a query is composed (order-independent)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any, cast: str = "") -> sql.Composable:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.SQL("{}" + cast).format(sql.Placeholder(name))


def _finite(v: sql.Composable) -> sql.Composed:
    return sql.SQL(_FINITE).format(v=v)


def _as_float(name: str) -> sql.Composed:
    return sql.SQL("{}::float8").format(sql.Identifier(name))


def _category_key(name: str, pgtype: str) -> sql.Composed:
    """The value as the text key `category_counts` produces from the same value in pandas."""
    col = sql.Identifier(name)
    if pgtype == "bool":
        return sql.SQL("(CASE {c} WHEN true THEN 'True' WHEN false THEN 'False' END)").format(c=col)
    if pgtype in _FLOAT_TYPES:
        v = _as_float(name)
        return sql.SQL(
            "(CASE WHEN {v} = 'NaN'::float8 THEN NULL WHEN {v} = 'Infinity'::float8 THEN 'inf'"
            " WHEN {v} = '-Infinity'::float8 THEN '-inf' WHEN {v} = trunc({v}) THEN trunc({v})::numeric::text"
            " ELSE {v}::text END)"
        ).format(v=v)
    return sql.SQL("{}::text").format(col)


def _error_flag(name: str, pgtype: str) -> sql.Composed:
    """True where `frames.normalise_frame` would read the error column as true; null counts as false."""
    col = sql.Identifier(name)
    if pgtype == "bool":
        return sql.SQL("({} IS TRUE)").format(col)
    if pgtype in _NUMBER_TYPES:
        return sql.SQL("coalesce({v} NOT IN (0, 'NaN'::float8), false)").format(v=_as_float(name))
    text = sql.SQL("btrim({}::text)").format(col)
    return sql.SQL(
        "(coalesce(lower({t}) IN ('true', 't', '1', 'yes', 'y'), false)"
        " OR CASE WHEN {t} ~ '^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$'"
        " THEN {t}::float8 <> 0 ELSE false END)"
    ).format(t=text)


def _window(cfg: EndpointConfig, p: _Params, start: datetime, end: datetime) -> sql.Composed:
    ts = sql.Identifier(cfg.source.timestamp_column)
    return sql.SQL("{rel} WHERE {ts} >= {s} AND {ts} < {e}").format(
        rel=source_relation(cfg.source), ts=ts, s=p(start), e=p(end))


def _slot(col: ColumnProfile, pgtype: str, p: _Params) -> sql.Composed:
    """Histogram slot of each row (NULL for null/invalid values), as `bin_counts` and the unseen bucket place it."""
    if isinstance(col, NumericProfile):
        v = _as_float(col.name)
        last = len(col.edges) - 1
        return sql.SQL(
            "CASE WHEN {f} THEN CASE WHEN {v} = {last} THEN {inner} ELSE width_bucket({v}, {edges}) END END"
        ).format(
            f=_finite(v), v=v, last=p(col.edges[-1], "::float8"), inner=p(last, "::int"),
            edges=p(list(col.edges), "::float8[]"))
    key = _category_key(col.name, pgtype)
    return sql.SQL("CASE WHEN {k} IS NOT NULL THEN coalesce(array_position({cats}, {k}), {unseen}) - 1 END").format(
        k=key, cats=p(list(col.categories), "::text[]"), unseen=p(len(col.categories) + 1, "::int"))


def _counts_query(
    cfg: EndpointConfig, cols: list[ColumnProfile], types: dict[str, str], start: datetime, end: datetime
) -> tuple[sql.Composed, dict[str, Any]]:
    p = _Params()
    names = [sql.Identifier(f"s{i}") for i in range(len(cols))]
    slots = [sql.SQL("{} AS {}").format(_slot(c, types[c.name], p), n) for c, n in zip(cols, names, strict=True)]
    query = sql.SQL(
        "SELECT {grouping}, {names}, count(*) FROM (SELECT {slots} FROM {window}) AS slots"
        " GROUP BY GROUPING SETS ({sets})"
    ).format(
        grouping=sql.SQL(", ").join(sql.SQL("GROUPING({})").format(n) for n in names),
        names=sql.SQL(", ").join(names),
        slots=sql.SQL(", ").join(slots),
        window=_window(cfg, p, start, end),
        sets=sql.SQL(", ").join(sql.SQL("({})").format(n) for n in names),
    )
    return query, p.values


def _moments_query(
    cfg: EndpointConfig, cols: list[ColumnProfile], types: dict[str, str], start: datetime, end: datetime,
    band_k: float,
) -> tuple[sql.Composed, dict[str, Any]]:
    p = _Params()
    ts = sql.Identifier(cfg.source.timestamp_column)
    items: list[sql.Composable] = [sql.SQL("count(*), min({ts}), max({ts})").format(ts=ts)]
    for c in cols:
        if isinstance(c, NumericProfile):
            v = _as_float(c.name)
            f = _finite(v)
            d = sql.SQL("({v} - {s})").format(v=v, s=p(c.mean, "::float8"))
            low, high = c.mean - band_k * c.std, c.mean + band_k * c.std
            items.append(sql.SQL(
                "count(*) FILTER (WHERE {col} IS NULL), count(*) FILTER (WHERE {col} IS NOT NULL AND NOT {f}),"
                " sum({d}) FILTER (WHERE {f}), sum({d} * {d}) FILTER (WHERE {f}),"
                " min({v}) FILTER (WHERE {f}), max({v}) FILTER (WHERE {f}),"
                " count(*) FILTER (WHERE {f} AND ({v} < {low} OR {v} > {high}))"
            ).format(col=sql.Identifier(c.name), f=f, d=d, v=v,
                     low=p(low, "::float8"), high=p(high, "::float8")))
        else:
            items.append(sql.SQL("count(*) FILTER (WHERE {} IS NULL)").format(_category_key(c.name, types[c.name])))
    query = sql.SQL("SELECT {items} FROM {window}").format(
        items=sql.SQL(", ").join(items), window=_window(cfg, p, start, end))
    return query, p.values


def _quantiles_query(
    cfg: EndpointConfig, numeric: list[NumericProfile], start: datetime, end: datetime
) -> tuple[sql.Composed, dict[str, Any]]:
    p = _Params()
    items = []
    for c in numeric:
        v = _as_float(c.name)
        items.append(sql.SQL("percentile_cont({q}) WITHIN GROUP (ORDER BY {v}) FILTER (WHERE {f})").format(
            q=p(list(QUANTILES), "::float8[]"), v=v, f=_finite(v)))
    query = sql.SQL("SELECT {items} FROM {window}").format(
        items=sql.SQL(", ").join(items), window=_window(cfg, p, start, end))
    return query, p.values


def _operational_query(
    cfg: EndpointConfig, types: dict[str, str], start: datetime, end: datetime
) -> tuple[sql.Composed, dict[str, Any]]:
    """Per 5-minute bucket: rows, errors, latency mean and quantiles over finite latencies."""
    src = cfg.source
    p = _Params()
    n_buckets = max(1, -(-(end - start) // BUCKET))
    ts = sql.Identifier(src.timestamp_column)
    bucket = sql.SQL("greatest(0, least({last}, floor(extract(epoch FROM {ts} - {s}) / {width})))::bigint").format(
        last=p(n_buckets - 1, "::bigint"), ts=ts, s=p(start, "::timestamptz"),
        width=p(BUCKET.total_seconds(), "::numeric"))
    items: list[sql.Composable] = [bucket, sql.SQL("count(*)")]
    items.append(sql.SQL("count(*) FILTER (WHERE {})").format(_error_flag(src.error_column, types[src.error_column]))
                 if src.error_column else sql.SQL("NULL::bigint"))
    if src.latency_column:
        lat = _as_float(src.latency_column)
        items.append(sql.SQL("avg({v}) FILTER (WHERE {f}),"
                             " percentile_cont({q}) WITHIN GROUP (ORDER BY {v}) FILTER (WHERE {f})").format(
            v=lat, f=_finite(lat), q=p(list(LATENCY_QUANTILES.values()), "::float8[]")))
    else:
        items.append(sql.SQL("NULL::float8, NULL::float8[]"))
    query = sql.SQL("SELECT {items} FROM {window} GROUP BY 1 ORDER BY 1").format(
        items=sql.SQL(", ").join(items), window=_window(cfg, p, start, end))
    return query, p.values


def _columns(cfg: EndpointConfig, profile: ReferenceProfile) -> list[ColumnProfile]:
    """The configured features, plus the prediction when the profile has one (as `summarise_and_compute`)."""
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


def _build_summaries(
    cols: list[ColumnProfile], counts_rows: list[tuple], moments: tuple, quantiles: tuple,
    non_finite_as_null: bool,
) -> dict[str, ColumnSummary]:
    k = len(cols)
    slots: list[dict[int, int]] = [{} for _ in cols]
    for row in counts_rows:
        flags, keys, count = row[:k], row[k:2 * k], row[2 * k]
        i = flags.index(0)
        if keys[i] is not None:
            slots[i][int(keys[i])] = int(count)
    out: dict[str, ColumnSummary] = {}
    pos = 3
    qpos = 0
    for i, c in enumerate(cols):
        if isinstance(c, CategoricalProfile):
            counts = tuple(slots[i].get(j, 0) for j in range(len(c.categories) + 1))
            out[c.name] = ColumnSummary(c.name, "categorical", counts, n=sum(counts), null_count=int(moments[pos]),
                                        unseen_count=counts[-1])
            pos += 1
            continue
        nulls, invalid, s, sq, lo, hi, outside = moments[pos:pos + 7]
        pos += 7
        qs = quantiles[qpos] if quantiles else None
        qpos += 1
        counts = tuple(slots[i].get(j, 0) for j in range(len(c.edges) + 1))
        nulls, invalid = int(nulls), int(invalid)
        if non_finite_as_null:
            nulls, invalid = nulls + invalid, 0
        n = sum(counts)
        if n == 0:
            out[c.name] = ColumnSummary(c.name, "numeric", counts, 0, nulls, invalid, shift=c.mean)
            continue
        out[c.name] = ColumnSummary(
            name=c.name, kind="numeric", counts=counts, n=n, null_count=nulls, invalid_count=invalid,
            sum=float(s), sum_sq=float(sq), min=float(lo), max=float(hi),
            quantiles=dict(zip(QUANTILE_KEYS, (float(q) for q in qs), strict=True)) if qs else {},
            outside_band=int(outside), shift=c.mean,
        )
    return out


def _operational_rows(rows: list[tuple], start: datetime, has_errors: bool) -> list[tuple[datetime, str, float]]:
    """Rows in `bucket_metrics` order: per bucket predictions, errors, latency avg/p50/p95/p99."""
    out: list[tuple[datetime, str, float]] = []
    for b, count, errors, avg, quantiles in rows:
        bucket_start = start + int(b) * BUCKET
        out.append((bucket_start, "predictions", float(count)))
        if has_errors:
            out.append((bucket_start, "errors", float(errors)))
        if avg is not None:
            out.append((bucket_start, "latency_avg", float(avg)))
            out += [(bucket_start, name, float(q)) for name, q in zip(LATENCY_QUANTILES, quantiles, strict=True)]
    return out


def summaries_in_database(
    conn: psycopg.Connection,
    cfg: EndpointConfig,
    profile: ReferenceProfile,
    start: datetime,
    end: datetime,
    band_k: float,
    *,
    non_finite_as_null: bool = False,
) -> PushdownResult:
    """Column summaries, row count and operational buckets of [start, end), aggregated by PostgreSQL.

    `non_finite_as_null=True` counts NaN/±Infinity as nulls, as the in-memory pipeline sees them after
    `frames.normalise_frame`; by default they are reported separately as invalid.
    """
    src = cfg.source
    cols = _columns(cfg, profile)
    needed = [src.timestamp_column, *(c.name for c in cols), *(c for c in (src.latency_column, src.error_column) if c)]
    timings: dict[str, float] = {}

    def run(name: str, query: sql.Composed, params: dict[str, Any]) -> list[tuple]:
        began = time.perf_counter()
        rows = conn.execute(query, params).fetchall()
        timings[name] = round(time.perf_counter() - began, 4)
        return rows

    idle = conn.info.transaction_status == TransactionStatus.IDLE
    try:
        with conn.transaction():
            if idle:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            types = describe_source(conn, src)
            missing = [c for c in dict.fromkeys(needed) if c not in types]
            if missing:
                raise SourceError(f"{cfg.endpoint_id}: source lacks configured column(s) {missing}")
            counts_rows = run("counts", *_counts_query(cfg, cols, types, start, end))
            moments = run("moments", *_moments_query(cfg, cols, types, start, end, band_k))[0]
            numeric = [c for c in cols if isinstance(c, NumericProfile)]
            quantiles = run("quantiles", *_quantiles_query(cfg, numeric, start, end))[0] if numeric else ()
            operational = run("operational", *_operational_query(cfg, types, start, end))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"{cfg.endpoint_id}: in-database summaries failed: {exc}") from exc
    except (psycopg.ProgrammingError, psycopg.DataError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{cfg.endpoint_id}: in-database summary query failed: {first}") from exc
    return PushdownResult(
        rows=int(moments[0]),
        summaries=_build_summaries(cols, counts_rows, moments, quantiles, non_finite_as_null),
        operational=_operational_rows(operational, start, bool(src.error_column)),
        first_ts=moments[1],
        last_ts=moments[2],
        timings=timings,
    )
