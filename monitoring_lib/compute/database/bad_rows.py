"""Bad-row accounting computed in PostgreSQL, for endpoints with `compute: database`.

It gives the numbers `compute.memory.bad_rows.normalise_frame` gives in memory, from aggregate queries, so no row of the
window reaches Python. `BadRowsPlan` adds its counts to a shared `aggregates.AggregatePlan` (in
`compute: database`, the summaries' moments scan evaluates it); bad rows then need one `GROUP BY` of the
request id (none when a unique index on it rules repeats out), whose duplicate count the uniqueness check
on that column reuses (and, only when ids repeat, a second grouping of the repeated ids' rows):

- defects per reason: numeric values that are NULL or NaN (`null:<col>`; a prediction on an error
  row is expected to be missing), ±Infinity (`non_finite:<col>`), NULL categories, NULL request ids,
  duplicated request ids (`duplicate_request_id`: every occurrence after the first);
- `bad_rows`, the distinct rows with at least one defect. Per request id with n rows of which k have
  another defect, the bad ones are n - 1 + (1 if k = n else 0): the duplicates plus the first row if it is
  itself defective, where the first is a clean row when there is one (SQL has no read order; the memory
  mode counts the same way).

Numeric columns must have numeric SQL types in this mode (a text column cannot hold "wrong types" the
database would silently cast); `require_numeric_types` says which column is not.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql

from monitoring_lib.compute.database.aggregates import (
    INF,
    MISSING,
    NAN,
    NULL,
    AggregatePlan,
    DuplicateIds,
    SpecialCount,
)
from monitoring_lib.compute.memory.bad_rows import BadRowReport
from monitoring_lib.config import EndpointConfig
from monitoring_lib.errors import SourceError
from monitoring_lib.source import unique_columns
from monitoring_lib.sql_common import NUMBER_TYPES, as_float, error_flag


def _numeric_columns(cfg: EndpointConfig) -> list[str]:
    src = cfg.source
    cols = [*src.numeric_features, src.prediction_column]
    if src.latency_column:
        cols.append(src.latency_column)
    return list(dict.fromkeys(cols))


def require_numeric_types(cfg: EndpointConfig, types: dict[str, str]) -> None:
    """Fail with the column and its type when a numeric column is not numeric in the database."""
    # not bool either: PostgreSQL has no boolean -> float8 cast, which the summary queries use
    wrong = {c: types[c] for c in _numeric_columns(cfg) if c in types and types[c] not in NUMBER_TYPES}
    if wrong:
        listed = ", ".join(f"'{c}' is {t}" for c, t in wrong.items())
        raise SourceError(f"{cfg.endpoint_id}: compute: database needs numeric SQL types for numeric columns "
                          f"({listed}); cast them in the source's `sql:` query or use compute: memory")


_Defect = tuple[str, sql.Composable, SpecialCount | None]


def _defects(cfg: EndpointConfig, types: dict[str, str]) -> list[_Defect]:
    """(reason, condition, the same count as a `SpecialCount` when it is one) in the order `normalise_frame`
    notes them."""
    src = cfg.source
    has_errors = bool(src.error_column and src.error_column in types)
    errored: sql.Composable = error_flag(src.error_column, types[src.error_column]) if has_errors else sql.SQL("false")
    out: list[_Defect] = []
    for col in _numeric_columns(cfg):
        if col not in types:
            continue
        v = as_float(col, types[col])
        number = types[col] in NUMBER_TYPES
        out.append((f"non_finite:{col}", sql.SQL("{v} IN ('Infinity'::float8, '-Infinity'::float8)").format(v=v),
                    SpecialCount(col, frozenset({INF})) if number else None))
        missing = sql.SQL("({v} IS NULL OR {v} = 'NaN'::float8)").format(v=v)
        special = SpecialCount(col, frozenset({NULL, NAN})) if number else None
        if col == src.prediction_column and has_errors:  # a prediction may be missing on an error row
            missing, special = sql.SQL("({m} AND NOT {e})").format(m=missing, e=errored), None
        out.append((f"null:{col}", missing, special))
    for col in src.categorical_features:
        if col in types:
            c = sql.Identifier(col)
            cond = (sql.SQL("({c} IS NULL OR {c}::float8 = 'NaN'::float8)").format(c=c)
                    if types[col] in ("float4", "float8") else sql.SQL("{} IS NULL").format(c))
            out.append((f"null:{col}", cond, SpecialCount(col, frozenset({MISSING}))))
    if src.request_id_column in types:
        out.append(("null_request_id", sql.SQL("{} IS NULL").format(sql.Identifier(src.request_id_column)), None))
    return out


def _any_defect(defects: list[_Defect], types: dict[str, str]) -> sql.Composable:
    """True for a row with at least one of `defects`, cheap per row.

    A numeric column whose NULL, NaN and ±Infinity are all defects adds `x * 0` to one sum: 0 for a
    finite x, NaN for NaN or ±Infinity, NULL for NULL, so the sum is 0 exactly when none of them is
    defective. About fifty ORed conditions cost more per row than all the summaries' sums together.
    """
    kinds: dict[str, set[str]] = {}
    for _, _, special in defects:
        if special is not None:
            kinds.setdefault(special.column, set()).update(special.kinds)
    whole = [column for column, k in kinds.items() if k == {NULL, NAN, INF}]
    parts: list[sql.Composable] = []
    if whole:
        zeros = [sql.SQL("{} * 0").format(as_float(c, types[c])) for c in whole]
        parts.append(sql.SQL("({} = 0) IS NOT TRUE").format(sql.SQL(" + ").join(zeros)))
    parts += [sql.SQL("coalesce({}, false)").format(cond) for _, cond, special in defects
              if special is None or special.column not in whole]
    return sql.SQL(" OR ").join(parts) if parts else sql.SQL("false")


class BadRowsPlan:
    """Bad-row accounting in two steps: its counts ride on a shared `AggregatePlan`, then one grouping by id.

    The grouping also yields the rows whose request id is duplicated (`DuplicateIds`), which the
    uniqueness check on that column reuses instead of grouping the window again.
    """

    def __init__(self, cfg: EndpointConfig, types: dict[str, str], plan: AggregatePlan) -> None:
        self.cfg, self.types, self.plan = cfg, types, plan
        self.defects = _defects(cfg, types)
        self.any_defect = _any_defect(self.defects, types)
        plan.add("rows", sql.SQL("count(*)"))
        plan.add("bad_rows.flagged", sql.SQL("count(*) FILTER (WHERE {})").format(self.any_defect))
        for reason, cond, special in self.defects:
            plan.add(f"bad_rows.{reason}", sql.SQL("count(*) FILTER (WHERE {})").format(cond), special)

    @property
    def _request_id(self) -> sql.Identifier | None:
        rid = self.cfg.source.request_id_column
        return sql.Identifier(rid) if rid in self.types else None

    def repeated_ids(self, conn: psycopg.Connection) -> tuple[int, int]:
        """(occurrences after the first, rows sharing an id) over the non-null request ids of the window.

        Needs nothing from the plan's scan, so it may run on another session of the same snapshot. A unique
        index on the request id answers without reading the window (an inference log's usual primary key).
        """
        ident = self._request_id
        if ident is None or self.cfg.source.request_id_column in unique_columns(conn, self.cfg.source):
            return 0, 0
        ids = self._repeated(ident, sql.SQL("count(*) AS n"))
        row = conn.execute(sql.SQL("SELECT coalesce(sum(n - 1), 0), coalesce(sum(n), 0) FROM ({}) AS ids").format(ids),
                           self.plan.params.values).fetchone()
        return int(row[0]), int(row[1])

    def report(
        self, conn: psycopg.Connection, repeated: tuple[int, int] | None = None
    ) -> tuple[BadRowReport, DuplicateIds | None]:
        """The window's `BadRowReport` and, when the source has a request id column, its duplicated rows.

        `repeated` is `repeated_ids` when it already ran.
        """
        plan = self.plan
        plan.execute(conn)
        rows, flagged = int(plan["rows"]), int(plan["bad_rows.flagged"])
        reasons = {name: n for name, _, _ in self.defects if (n := int(plan[f"bad_rows.{name}"]))}
        ident = self._request_id
        if ident is None:
            return BadRowReport(rows=rows, bad_rows=flagged, by_reason=reasons), None
        repeats, duplicated = repeated if repeated is not None else self.repeated_ids(conn) if rows else (0, 0)
        if repeats:
            reasons["duplicate_request_id"] = repeats
            flagged += self._duplicate_bad_rows(conn, ident)
        return (BadRowReport(rows=rows, bad_rows=flagged, by_reason=reasons),
                DuplicateIds(self.cfg.source.request_id_column, duplicated))

    def _duplicate_bad_rows(self, conn: psycopg.Connection, ident: sql.Identifier) -> int:
        """Bad rows the duplicates add to `flagged`: per duplicated id with n rows, k of them otherwise
        defective (already counted), n - 1 + (k = n) - k.

        Asked only when ids repeat, and only of their rows: the defect test on every row of the window
        costs more than the grouping itself.
        """
        plan = self.plan
        query = sql.SQL(
            "SELECT coalesce(sum(n - 1 + (k = n)::int - k), 0) FROM (SELECT count(*) AS n,"
            " count(*) FILTER (WHERE {any}) AS k FROM {w} AND {id} IN ({repeated}) GROUP BY {id}) AS ids"
        ).format(any=self.any_defect, w=plan.window, id=ident, repeated=self._repeated(ident, ident))
        return int(conn.execute(query, plan.params.values).fetchone()[0])

    def _repeated(self, ident: sql.Identifier, select: sql.Composable) -> sql.Composed:
        """`select` per non-null request id of the window that occurs more than once."""
        return sql.SQL("SELECT {s} FROM {w} AND {id} IS NOT NULL GROUP BY {id} HAVING count(*) > 1").format(
            s=select, w=self.plan.window, id=ident)


def bad_rows_in_database(
    conn: psycopg.Connection, cfg: EndpointConfig, types: dict[str, str], start: datetime, end: datetime
) -> BadRowReport:
    """The window's `BadRowReport`, as `normalise_frame` reports it for the same rows: one scan, one grouping."""
    return BadRowsPlan(cfg, types, AggregatePlan(cfg, start, end)).report(conn)[0]
