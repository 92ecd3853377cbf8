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
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import psycopg
from psycopg import sql

from monitoring_lib.compute.database.aggregates import (
    INF,
    MISSING,
    NAN,
    NULL,
    AggregatePlan,
    Derivable,
    DuplicateIds,
    NotInCount,
    OutsideCount,
    SpecialCount,
)
from monitoring_lib.compute.database.snapshot import read_snapshot
from monitoring_lib.compute.database.sql import (
    NUMBER_TYPES,
    Params,
    as_float,
    category_key,
    error_flag,
    finite,
    query_errors,
    stripped,
    text_number,
)
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.errors import SourceError
from monitoring_lib.quality.results import (
    BETWEEN,
    COLUMNS_MATCH,
    IN_SET,
    MODELLED_KWARGS,
    NOT_NULL,
    PARTIAL_UNEXPECTED_COUNT,
    ROW_COUNT,
    QualityOutcome,
    QualityResult,
    columns_match_result,
    error_result,
    is_number,
    make_result,
    map_result,
    overall_state,
    row_count_result,
    unknown_kwargs,
)
from monitoring_lib.quality.suite import ExpectationSpec, build_expectations
from monitoring_lib.source import describe_source, unique_columns

Kind = Literal["numeric", "category", "timestamp", "flag", "raw"]
# Up to this many unexpected rows, a check's sample values come from one scan shared with the other such checks.
_RARE_UNEXPECTED = 10_000

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
class _RowCheck:
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


def _columns(cfg: EndpointConfig, types: dict[str, str]) -> dict[str, _Column]:
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


def _not_available(spec: ExpectationSpec, why: str = "") -> QualityResult:
    what = f"{spec.expectation_type} {why}".strip()
    return error_result(
        spec, f"{what} is not available in `compute: database` mode; use `compute: memory` for this endpoint"
              " or change the expectation")


def _dtype_result(spec: ExpectationSpec, cols: dict[str, _Column]) -> QualityResult:
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
        return _not_available(spec, f"({spec.local_check}) on a {col.pgtype} column")
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


def _row_check(
    spec: ExpectationSpec, cfg: EndpointConfig, cols: dict[str, _Column], p: Params
) -> _RowCheck | QualityResult:
    """The SQL form of a supported map expectation, or the failed result saying why there is none."""
    kw = spec.kwargs
    column = kw.get("column")
    col = cols.get(column) if isinstance(column, str) else None
    if col is None:
        return error_result(spec, f"column '{column}' is not among the source columns the pipeline reads")
    mostly = kw.get("mostly", 1.0)
    if not is_number(mostly):
        return _not_available(spec, f"with mostly={mostly!r}")
    domain = _domain(spec, cfg, cols)
    if domain is None:
        return _not_available(spec, f"with row_condition {kw.get('row_condition')!r}")
    unexpected: sql.Composable | str | None = None
    if spec.expectation_type == NOT_NULL:
        unexpected = sql.SQL("({} IS NULL)").format(col.value)
    elif spec.expectation_type == BETWEEN:
        unexpected = _between(spec, col, p)
    elif spec.expectation_type == IN_SET:
        unexpected = _in_set(spec, col, p)
    if isinstance(unexpected, str):
        return _not_available(spec, unexpected)
    return _RowCheck(spec, domain, col.value, unexpected, float(mostly), col.kind)


def _derivable(check: _RowCheck, cols: dict[str, _Column]) -> tuple[Derivable | None, Derivable | None]:
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


def _duplicates(check: _RowCheck, window: sql.Composable) -> sql.Composed:
    """Values of the check's rows that occur more than once (GROUP BY position: the value may hold literals)."""
    return sql.SQL("SELECT {v} FROM {w} AND {d} AND {v} IS NOT NULL GROUP BY 1 HAVING count(*) > 1").format(
        v=check.value, w=window, d=check.domain)


def _flagged(check: _RowCheck, window: sql.Composable) -> sql.Composed:
    """The rows a failed check flags, as `native.unexpected_mask` selects them."""
    if check.unexpected is not None:
        return sql.SQL("({d} AND {u})").format(d=check.domain, u=check.unexpected)
    return sql.SQL("({d} AND {v} IS NOT NULL AND {v} IN ({dups}))").format(
        d=check.domain, v=check.value, dups=_duplicates(check, window))


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
        cols = _columns(cfg, types)
        self.known: dict[str, QualityResult] = {}
        self.checks: list[_RowCheck] = []
        for spec in self.specs:
            extra = unknown_kwargs(spec)
            if spec.local_check:
                self.known[spec.id] = _dtype_result(spec, cols)
            elif spec.expectation_type not in MODELLED_KWARGS:
                self.known[spec.id] = _not_available(spec)
            elif extra:
                self.known[spec.id] = _not_available(spec, f"with {sorted(extra)}")
            elif spec.expectation_type == COLUMNS_MATCH:
                self.known[spec.id] = columns_match_result(spec, cfg.source.columns())
            elif spec.expectation_type != ROW_COUNT:
                check = _row_check(spec, cfg, cols, plan.params)
                if isinstance(check, QualityResult):
                    self.known[spec.id] = check
                else:
                    self.checks.append(check)
        # every FILTER costs CPU on every row: checks over all rows share `rows`, and the null check's
        # nulls are its unexpected rows
        plan.add("rows", sql.SQL("count(*)"))
        for i, c in enumerate(self.checks):
            nulls, unexpected = _derivable(c, cols)
            if not self._over_all_rows(c):
                plan.add(f"quality.{i}.element", sql.SQL("count(*) FILTER (WHERE {})").format(c.domain))
            if c.spec.expectation_type != NOT_NULL:
                plan.add(f"quality.{i}.nulls",
                         sql.SQL("count(*) FILTER (WHERE {} AND {} IS NULL)").format(c.domain, c.value), nulls)
            if c.unexpected is not None:
                plan.add(f"quality.{i}.unexpected",
                         sql.SQL("count(*) FILTER (WHERE {} AND {})").format(c.domain, c.unexpected), unexpected)

    @staticmethod
    def _over_all_rows(check: _RowCheck) -> bool:
        return check.domain == sql.SQL("true")

    def _counts(self, i: int, check: _RowCheck) -> tuple[int, int]:
        """(rows the check looks at, nulls among them), read back from the evaluated plan."""
        plan = self.plan
        element = int(plan["rows" if self._over_all_rows(check) else f"quality.{i}.element"])
        if check.spec.expectation_type == NOT_NULL:
            return element, int(plan[f"quality.{i}.unexpected"])
        return element, int(plan[f"quality.{i}.nulls"])

    @staticmethod
    def _shared(check: _RowCheck, duplicates: DuplicateIds | None) -> int | None:
        """The duplicates the bad-row grouping counted, when it grouped exactly this check's rows and value."""
        if duplicates is not None and QualityPlan._over_all_rows(check) and check.value == sql.Identifier(
                duplicates.column):
            return duplicates.rows
        return None

    def _kept_unique(self, conn: psycopg.Connection, check: _RowCheck) -> bool:
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
                    v=c.value, w=window, f=_flagged(c, window), n=n)
                found[i] = [v for (v,) in conn.execute(query, params)]
        if rare:
            items = [sql.SQL("(array_agg({v}) FILTER (WHERE {f}))[1:{n}]").format(
                v=self.checks[i].value, f=_flagged(self.checks[i], window), n=n) for i in rare]
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
                    w=window, flags=sql.SQL(" OR ").join(_flagged(c, window) for c in failed))
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
    cols = _columns(cfg, types)
    plan = AggregatePlan(cfg, start, end)
    flags: list[sql.Composable] = []
    uncounted = 0
    for spec in specs:
        r = results[spec.id]
        if r.success or not spec.row_level or not r.unexpected_count:
            continue
        mirrored = spec.expectation_type in MODELLED_KWARGS and not unknown_kwargs(spec)
        check = _row_check(spec, cfg, cols, plan.params) if mirrored else None
        if isinstance(check, _RowCheck):
            flags.append(_flagged(check, plan.window))
        else:
            uncounted += r.unexpected_count
    if not flags:
        return uncounted
    plan.add("rows", sql.SQL("count(*)"))
    plan.add("flagged", sql.SQL("count(*) FILTER (WHERE {})").format(sql.SQL(" OR ").join(flags)))
    with query_errors(cfg.endpoint_id, "failed-rows query"):
        plan.execute(conn)
    return min(int(plan["rows"]), int(plan["flagged"]) + uncounted)
