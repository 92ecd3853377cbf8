"""Interval summaries computed inside PostgreSQL: the same `ColumnSummary` values as `summarise_frame`.

Raw rows never leave the database. Four aggregate queries, each one scan of the window, return a few
thousand numbers whatever the interval size: counts (`histograms`), moments (`moments`, which also carries
an `AggregatePlan`, so bad rows, quality row checks and KPIs need no scan of their own), quantiles
(`quantiles`) and the operational buckets (`operational`). This module plans them and assembles their
results. The moments and operational scans need nothing from the counts scan, so with a second session
on the same snapshot (`snapshot.Beside`) they run while PostgreSQL hashes the counts on one core; before
PostgreSQL 16, where `array_agg` runs in one process, the twin session also takes the quantile scan of
half of the columns.

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

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from monitoring_lib.compute.database.aggregates import AggregatePlan
from monitoring_lib.compute.database.histograms import (
    INF_BUCKET,
    NAN_BUCKET,
    NULL_BUCKET,
    CountAnswers,
    Fine,
    count_buckets,
    counts_query,
    fine_buckets,
    group_counts,
    outside_cuts,
)
from monitoring_lib.compute.database.moments import moments_query, sums
from monitoring_lib.compute.database.operational import operational_query, operational_rows
from monitoring_lib.compute.database.quantiles import QuantilePlan, plan_quantiles, quantiles_query
from monitoring_lib.compute.database.snapshot import Beside, read_snapshot
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import CategoricalProfile, ColumnProfile, NumericProfile, ReferenceProfile
from monitoring_lib.drift.summaries import QUANTILE_KEYS, ColumnSummary
from monitoring_lib.errors import ProfileNotFittedError, SourceError
from monitoring_lib.source import describe_source
from monitoring_lib.sql_common import Params, overflow_safe, query_errors

# Above this many values in a column's target buckets, its quantiles come from `percentile_cont`.
_MAX_FETCH = 2_000_000


@dataclass(frozen=True)
class PushdownResult:
    """Everything an interval needs from its rows, computed in the database."""

    rows: int
    summaries: dict[str, ColumnSummary]
    operational: list[tuple[datetime, str, float]]
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    timings: dict[str, float] = field(default_factory=dict)



def summary_columns(cfg: EndpointConfig, profile: ReferenceProfile | None) -> list[ColumnProfile]:
    """The configured features, plus the prediction when the profile has one (as the memory mode's
    `summarise_and_compute`).

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


def bucket_summaries(
    cols: list[ColumnProfile], counts: list[dict[int, int]], fine: dict[str, Fine], non_finite_as_null: bool
) -> tuple[dict[str, ColumnSummary], dict[str, QuantilePlan]]:
    """Counts of every column from its buckets (moments and quantiles still empty), and each quantile plan."""
    out: dict[str, ColumnSummary] = {}
    plans: dict[str, QuantilePlan] = {}
    for c, buckets in zip(cols, counts, strict=True):
        nulls = buckets.get(NULL_BUCKET, 0)
        valid = {b: n for b, n in buckets.items() if b >= 0}
        if isinstance(c, CategoricalProfile):
            slots = [0] * (len(c.categories) + 1)
            for b, n in valid.items():
                slots[b] += n
            out[c.name] = ColumnSummary(c.name, "categorical", tuple(slots), n=sum(slots), null_count=nulls,
                                        unseen_count=slots[-1])
            continue
        f = fine[c.name]
        invalid = buckets.get(INF_BUCKET, 0) + buckets.get(NAN_BUCKET, 0)
        if non_finite_as_null:
            nulls, invalid = nulls + invalid, 0
        hist = [0] * (len(c.edges) + 1)
        for b, n in valid.items():
            hist[f.slots[b]] += n
        total = sum(hist)
        out[c.name] = ColumnSummary(c.name, "numeric", tuple(hist), total, nulls, invalid, shift=c.mean,
                                    outside_band=sum(n for b, n in valid.items() if f.outside[b]))
        if total:
            plans[c.name] = plan_quantiles(valid, total)
    return out, plans



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
    `compute.memory.bad_rows.normalise_frame`; by default they are reported separately as invalid. A `plan` of the same
    window is evaluated in the moments scan, less the counts the counts scan answers, so its aggregates
    cost no extra pass over the rows. Without a profile only the operational part (and the plan) is
    computed. With `beside` (a session on the same snapshot), the operational and moments queries run
    there during the counts scan, whose hashing PostgreSQL does on one core; before PostgreSQL 16, so does
    the quantile scan of half of the columns after it.
    """
    if plan is not None and (plan.start, plan.end) != (start, end):
        raise ValueError(f"aggregate plan of [{plan.start}, {plan.end}) given for [{start}, {end})")
    src = cfg.source
    cols = summary_columns(cfg, profile)
    needed = [src.timestamp_column, *(c.name for c in cols), *(c for c in (src.latency_column, src.error_column) if c)]
    cuts = outside_cuts(cols, plan)
    fine = {c.name: fine_buckets(c, band_k, cuts[c.name]) for c in cols if isinstance(c, NumericProfile)}
    numeric = [c for c in cols if isinstance(c, NumericProfile)]
    timings: dict[str, float] = {}

    def run(name: str, query: Any, params: dict[str, Any], on: psycopg.Connection = conn,
            execute: Callable[[psycopg.Connection, Any, dict[str, Any]], list[tuple]] = overflow_safe) -> list[tuple]:
        began = time.perf_counter()
        with query_errors(cfg.endpoint_id, "summary query"):
            rows = execute(on, query, params)
        timings[name] = round(time.perf_counter() - began, 4)
        return rows

    with query_errors(cfg.endpoint_id, "summary query"), read_snapshot(conn):
        types = describe_source(conn, src)
        missing = [c for c in dict.fromkeys(needed) if c not in types]
        if missing:
            raise SourceError(f"{cfg.endpoint_id}: source lacks configured column(s) {missing}")
        answers = CountAnswers(cols, fine, types)
        pending = plan if plan is not None and not plan.evaluated else None  # the plan this call evaluates
        if pending is not None:
            pending.defer(answers.knows)
        # the operational buckets and the moments need nothing from the counts: beside it when a twin session exists
        side = beside if beside is not None else Beside(conn, None)
        o = Params()
        operational_queries = {exact: operational_query(cfg, types, start, end, o, exact) for exact in (False, True)}
        operational_job = side.submit(lambda on: run("operational", operational_queries, o.values, on=on))
        p = plan.params if plan is not None else Params()
        moments_job = None
        if numeric or (pending is not None and pending.expressions):
            moments_queries = {exact: moments_query(cfg, numeric, types, start, end, p, pending.expressions_for(exact)
                                                     if pending is not None else [], exact) for exact in (False, True)}
            moments_params = dict(p.values)  # bound now: the twin's thread reads them while this one goes on
            moments_job = side.submit(lambda on: run("moments", moments_queries, moments_params, on=on)[0])
        counts = group_counts(run("counts", *counts_query(cfg, cols, fine, types, start, end),
                                   execute=count_buckets), cols, fine) if cols else []
        summaries, plans = bucket_summaries(cols, counts, fine, non_finite_as_null)
        if pending is not None:
            pending.take_counts(answers.counting(counts))
        redo = {c.name for c, b in zip(cols, counts, strict=True) if b.get(INF_BUCKET) or b.get(NAN_BUCKET)}
        located: list[Any] = []
        if plans:
            def quantiles_of(part: list[NumericProfile]) -> tuple[dict[bool, sql.Composed], dict[str, Any]]:
                q = Params()
                return {exact: quantiles_query(cfg, part, types, plans, fine, start, end, q, redo & set(plans),
                                               _MAX_FETCH, exact)
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
        s, sq = sums(mean, variance, summaries[c.name].n)
        summaries[c.name] = dataclasses.replace(summaries[c.name], sum=s, sum_sq=sq, min=lo, max=hi,
                                                quantiles=quantiles)
    return PushdownResult(
        rows=sum(int(r[1]) for r in operational),
        summaries=summaries,
        operational=operational_rows(operational, start, bool(src.error_column)),
        first_ts=min((r[2] for r in operational), default=None),
        last_ts=max((r[3] for r in operational), default=None),
        timings=timings,
    )
