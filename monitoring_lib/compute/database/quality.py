"""The interval's quality checks evaluated by PostgreSQL, for `compute: database`: no row leaves the database.

The suite is the one `build_expectations` gives the in-memory path, and every result is the one
`compute.memory.quality.run_quality` gives after `read_window` + `normalise_frame` on the same rows, so
`quality.store` writes the same `data_quality_results` rows in either mode:

- each column is compared as the normalised frame holds it: numeric columns as float8 with NaN and
  ±Infinity (and text that is not a number) as null, categorical columns as the text `category_text`
  gives, the error flag as `normalise_frame` reads it, timestamps as UTC instants;
- per row-level check, the rows it looks at, their nulls and the unexpected ones are `count(*) FILTER
  (WHERE ...)` items of a shared `AggregatePlan`, evaluated in one scan of the window (in
  `compute: database`, the summaries' moments scan); duplicates for uniqueness come from a
  `GROUP BY ... HAVING count(*) > 1` query, except for the request-id check over all rows, which
  reuses the bad-row grouping's count; a last count of the rows any failed check flags is run only
  when some row-level check failed;
- success, `mostly` and percentages follow Great Expectations' own formulas (map checks are judged
  over non-null values, the null check over all rows it looks at);
- column presence and dtypes are answered from the source's column types, without reading rows.

A failed check lists up to 20 of its unexpected values (`partial_unexpected_list`): a LIMIT query when
it has many, one shared scan for all failed checks with few. An expectation the SQL path
cannot evaluate exactly (another type, other kwargs) is reported as a failed result saying so, never
dropped. Identifiers are quoted with `psycopg.sql`; bounds, sets and window limits are bound values.
"""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import sql

from monitoring_lib.compute.database.aggregates import (
    AggregatePlan,
    DuplicateIds,
)
from monitoring_lib.compute.database.quality_checks import (
    RowCheck,
    derivable,
    dtype_result,
    flagged_query,
    not_available,
    row_check,
    source_columns,
)
from monitoring_lib.compute.database.snapshot import read_snapshot
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.errors import SourceError
from monitoring_lib.quality.results import (
    COLUMNS_MATCH,
    MODELLED_KWARGS,
    NOT_NULL,
    PARTIAL_UNEXPECTED_COUNT,
    ROW_COUNT,
    QualityOutcome,
    QualityResult,
    columns_match_result,
    map_result,
    overall_state,
    row_count_result,
    unknown_kwargs,
)
from monitoring_lib.quality.suite import ExpectationSpec, build_expectations
from monitoring_lib.source import describe_source, unique_columns
from monitoring_lib.sql_common import (
    query_errors,
)

# Up to this many unexpected rows, a check's sample values come from one scan shared with the other such checks.
_RARE_UNEXPECTED = 10_000

class QualityPlan:
    """The suite's checks over one window: row-level counts ride on a shared `AggregatePlan`, the rest follows.

    Built before the scan (it adds its `count(*) FILTER (...)` items to the plan), read after it by
    `outcome`, which runs only what a plain aggregate cannot give: one GROUP BY per uniqueness check
    (none for a check on the request id over all rows when the bad-row grouping's `DuplicateIds` is
    given, nor on a column a unique index keeps distinct), and the count of flagged rows when some
    check failed.
    """

    def __init__(
        self, cfg: EndpointConfig, profile: ReferenceProfile | None, types: dict[str, str], plan: AggregatePlan,
        *, now: datetime,
    ) -> None:
        src = cfg.source
        missing = [c for c in src.columns() if c not in types]
        if missing:  # `read_window` cannot select them either
            raise SourceError(f"{cfg.endpoint_id}: source lacks configured column(s) {missing}")
        self.cfg, self.plan = cfg, plan
        self._unique: frozenset[str] | None = None  # read from the catalog when a uniqueness check needs it
        self.specs = build_expectations(cfg, profile, plan.start, plan.end, now)
        cols = source_columns(cfg, types)
        self.known: dict[str, QualityResult] = {}
        self.checks: list[RowCheck] = []
        for spec in self.specs:
            extra = unknown_kwargs(spec)
            if spec.local_check:
                self.known[spec.id] = dtype_result(spec, cols)
            elif spec.expectation_type not in MODELLED_KWARGS:
                self.known[spec.id] = not_available(spec)
            elif extra:
                self.known[spec.id] = not_available(spec, f"with {sorted(extra)}")
            elif spec.expectation_type == COLUMNS_MATCH:
                self.known[spec.id] = columns_match_result(spec, cfg.source.columns())
            elif spec.expectation_type != ROW_COUNT:
                check = row_check(spec, cfg, cols, plan.params)
                if isinstance(check, QualityResult):
                    self.known[spec.id] = check
                else:
                    self.checks.append(check)
        # every FILTER costs CPU on every row: checks over all rows share `rows`, and the null check's
        # nulls are its unexpected rows
        plan.add("rows", sql.SQL("count(*)"))
        for i, c in enumerate(self.checks):
            nulls, unexpected = derivable(c, cols)
            if not self._over_all_rows(c):
                plan.add(f"quality.{i}.element", sql.SQL("count(*) FILTER (WHERE {})").format(c.domain))
            if c.spec.expectation_type != NOT_NULL:
                plan.add(f"quality.{i}.nulls",
                         sql.SQL("count(*) FILTER (WHERE {} AND {} IS NULL)").format(c.domain, c.value), nulls)
            if c.unexpected is not None:
                plan.add(f"quality.{i}.unexpected",
                         sql.SQL("count(*) FILTER (WHERE {} AND {})").format(c.domain, c.unexpected), unexpected)

    @staticmethod
    def _over_all_rows(check: RowCheck) -> bool:
        return check.domain == sql.SQL("true")

    def _counts(self, i: int, check: RowCheck) -> tuple[int, int]:
        """(rows the check looks at, nulls among them), read back from the evaluated plan."""
        plan = self.plan
        element = int(plan["rows" if self._over_all_rows(check) else f"quality.{i}.element"])
        if check.spec.expectation_type == NOT_NULL:
            return element, int(plan[f"quality.{i}.unexpected"])
        return element, int(plan[f"quality.{i}.nulls"])

    @staticmethod
    def _shared(check: RowCheck, duplicates: DuplicateIds | None) -> int | None:
        """The duplicates the bad-row grouping counted, when it grouped exactly this check's rows and value."""
        if duplicates is not None and QualityPlan._over_all_rows(check) and check.value == sql.Identifier(
                duplicates.column):
            return duplicates.rows
        return None

    def _kept_unique(self, conn: psycopg.Connection, check: RowCheck) -> bool:
        """Whether a unique index keeps the check's values distinct, in any subset of rows: true for a plain
        column with one, not for a converted value (distinct numbers may coincide once read as float8)."""
        column = check.spec.kwargs["column"]
        if check.value != sql.Identifier(column):
            return False
        if self._unique is None:
            self._unique = unique_columns(conn, self.cfg.source)
        return column in self._unique

    def _samples(self, conn: psycopg.Connection, unexpected: dict[int, int]) -> dict[int, list[Any]]:
        """Per check in `unexpected` with unexpected rows, up to `PARTIAL_UNEXPECTED_COUNT` of their values:
        Great Expectations' `partial_unexpected_list`.

        A check with many unexpected rows gets a LIMIT query, which stops after the first ones. A LIMIT
        query for a check with few would read the whole window, so those share one scan that aggregates
        their values. Values come in the order the scan meets them; NULL reads as the normalised frame
        holds a missing value: None for categories and timestamps, NaN otherwise.
        """
        window, params = self.plan.window, self.plan.params.values
        n = sql.Literal(PARTIAL_UNEXPECTED_COUNT)
        found: dict[int, list[Any]] = {}
        rare = [i for i, count in unexpected.items() if 0 < count <= _RARE_UNEXPECTED]
        for i, count in unexpected.items():
            if count > _RARE_UNEXPECTED:
                c = self.checks[i]
                query = sql.SQL("SELECT {v} FROM {w} AND {f} LIMIT {n}").format(
                    v=c.value, w=window, f=flagged_query(c, window), n=n)
                found[i] = [v for (v,) in conn.execute(query, params)]
        if rare:
            items = [sql.SQL("(array_agg({v}) FILTER (WHERE {f}))[1:{n}]").format(
                v=self.checks[i].value, f=flagged_query(self.checks[i], window), n=n) for i in rare]
            query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(items), window)
            row = conn.execute(query, params).fetchone()
            found.update(zip(rare, row, strict=True))
        out = {}
        for i, values in found.items():
            missing = None if self.checks[i].kind in ("category", "timestamp") else math.nan
            out[i] = [missing if v is None else v for v in values or []]
        return out

    def outcome(self, conn: psycopg.Connection, duplicates: DuplicateIds | None = None) -> QualityOutcome:
        """The `QualityOutcome` of the window; evaluates the plan first if no other scan carried it."""
        started = time.perf_counter()
        plan, window = self.plan, self.plan.window
        with query_errors(self.cfg.endpoint_id, "quality query"):
            plan.execute(conn)
            out = dict(self.known)
            rows = int(plan["rows"])
            unexpected: dict[int, int] = {}
            for i, c in enumerate(self.checks):
                shared = self._shared(c, duplicates)
                if c.unexpected is not None:
                    unexpected[i] = int(plan[f"quality.{i}.unexpected"])
                elif shared is not None:
                    unexpected[i] = shared
                elif self._kept_unique(conn, c):
                    unexpected[i] = 0
                else:
                    query = sql.SQL("SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {w} AND {d} AND {v}"
                                    " IS NOT NULL GROUP BY {v} HAVING count(*) > 1) AS dups").format(
                        w=window, d=c.domain, v=c.value)
                    unexpected[i] = int(conn.execute(query, plan.params.values).fetchone()[0])
            judged = {i: map_result(c.spec, c.mostly, *self._counts(i, c), unexpected[i])
                      for i, c in enumerate(self.checks)}
            failing = {i: n for i, n in unexpected.items() if n and not judged[i].success}
            # samples for the failed checks only: for a passing one they would cost a scan of the window
            samples = self._samples(conn, failing)
            for i, c in enumerate(self.checks):
                out[c.spec.id] = judged[i] if i not in samples else map_result(
                    c.spec, c.mostly, *self._counts(i, c), unexpected[i], samples[i])
            for spec in self.specs:
                if spec.expectation_type == ROW_COUNT and spec.id not in out:
                    out[spec.id] = row_count_result(spec, rows)
            failed = [self.checks[i] for i in failing]
            failed_rows = 0
            if failed:
                query = sql.SQL("SELECT count(*) FROM {w} AND ({flags})").format(
                    w=window, flags=sql.SQL(" OR ").join(flagged_query(c, window) for c in failed))
                failed_rows = min(rows, int(conn.execute(query, plan.params.values).fetchone()[0]))
        results = [out[s.id] for s in self.specs]
        seconds = time.perf_counter() - started
        return QualityOutcome(state=overall_state(results), results=results, failed_rows=failed_rows,
                              duration_s=seconds, row_count=rows)


def run_quality_in_database(
    conn: psycopg.Connection,
    cfg: EndpointConfig,
    profile: ReferenceProfile | None,
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
) -> QualityOutcome:
    """Validate [start, end) of the source inside PostgreSQL; the outcome `run_quality` gives on the same rows.

    Queries run in one REPEATABLE READ snapshot when the connection is idle, so late rows cannot make
    the counts disagree. A missing configured column is a `SourceError`, as it is for `read_window`.
    """
    started = time.perf_counter()
    with query_errors(cfg.endpoint_id, "quality query"), read_snapshot(conn, work_mem=False):
        types = describe_source(conn, cfg.source)
        plan = AggregatePlan(cfg, start, end)
        outcome = QualityPlan(cfg, profile, types, plan, now=now or datetime.now(timezone.utc)).outcome(conn)
    return dataclasses.replace(outcome, duration_s=time.perf_counter() - started)


def failed_rows_in_database(
    conn: psycopg.Connection, cfg: EndpointConfig, types: dict[str, str], specs: list[ExpectationSpec],
    results: dict[str, QualityResult], start: datetime, end: datetime,
) -> int:
    """Distinct rows of [start, end) flagged by the failed row-level checks among `results`.

    For results computed elsewhere (feature groups), counted as `compute.memory.quality.run_quality` counts them: the
    rows of every check with an SQL form once, plus the unexpected count of checks without one.
    """
    cols = source_columns(cfg, types)
    plan = AggregatePlan(cfg, start, end)
    flags: list[sql.Composable] = []
    uncounted = 0
    for spec in specs:
        r = results[spec.id]
        if r.success or not spec.row_level or not r.unexpected_count:
            continue
        mirrored = spec.expectation_type in MODELLED_KWARGS and not unknown_kwargs(spec)
        check = row_check(spec, cfg, cols, plan.params) if mirrored else None
        if isinstance(check, RowCheck):
            flags.append(flagged_query(check, plan.window))
        else:
            uncounted += r.unexpected_count
    if not flags:
        return uncounted
    plan.add("rows", sql.SQL("count(*)"))
    plan.add("flagged", sql.SQL("count(*) FILTER (WHERE {})").format(sql.SQL(" OR ").join(flags)))
    with query_errors(cfg.endpoint_id, "failed-rows query"):
        plan.execute(conn)
    return min(int(plan["rows"]), int(plan["flagged"]) + uncounted)
