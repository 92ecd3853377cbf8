"""Business KPIs computed in PostgreSQL, for endpoints with `compute: database`.

`KpiPlan` gives the values `compute.memory.kpis.compute_kpis` gives in memory, under the same rules
(`kpi_problem`), as aggregates of a shared `aggregates.AggregatePlan`, so KPIs cost no scan of their own.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from monitoring_lib.applications import AppResult, kpi_problem
from monitoring_lib.compute.database.aggregates import AggregatePlan
from monitoring_lib.config import EndpointConfig
from monitoring_lib.sql_common import as_number, error_flag, exact_number, finite

_KPI_AGG = {"sum": "coalesce(sum({v}) FILTER (WHERE {f}), 0)", "mean": "avg({v}) FILTER (WHERE {f})",
            "min": "min({v}) FILTER (WHERE {f})", "max": "max({v}) FILTER (WHERE {f})",
            "count": "count(*) FILTER (WHERE {f})"}
# the sums in numeric, where float8 overflows (`overflow_safe`); min, max and count cannot
_KPI_EXACT = {"sum": "coalesce(sum({x}) FILTER (WHERE {f}), 0)", "mean": "avg({x}) FILTER (WHERE {f})"}


class KpiPlan:
    """`compute_kpis` as aggregates of a shared `AggregatePlan`, under the same rules (`kpi_problem`)."""

    def __init__(self, cfg: EndpointConfig, types: dict[str, str], plan: AggregatePlan) -> None:
        self.cfg, self.plan = cfg, plan
        self.unavailable: dict[int, str] = {}
        for i, kpi in enumerate(cfg.kpis):
            problem = kpi_problem(cfg, kpi.column, types)
            if problem is None and kpi.column not in types:
                problem = f"column '{kpi.column}' is not in the source"
            if problem is not None:
                self.unavailable[i] = problem
                continue
            if kpi.column == cfg.source.error_column:
                v = sql.SQL("{}::int::float8").format(error_flag(kpi.column, types[kpi.column]))
            else:
                v = as_number(kpi.column, types[kpi.column])
            exact = _KPI_EXACT.get(kpi.agg)
            plan.add(f"kpi.{i}", sql.SQL(_KPI_AGG[kpi.agg]).format(v=v, f=finite(v)),
                     exact=None if exact is None else sql.SQL(exact).format(x=exact_number(v), f=finite(v)))

    def results(self, conn: psycopg.Connection) -> list[AppResult]:
        """One `AppResult` per configured KPI, in config order (evaluates the plan if no scan carried it)."""
        if len(self.unavailable) < len(self.cfg.kpis):
            self.plan.execute(conn)
        out = []
        for i, kpi in enumerate(self.cfg.kpis):
            if i in self.unavailable:
                out.append(AppResult("kpi", kpi.name, "business_kpi", "error", None, {"error": self.unavailable[i]}))
                continue
            value = self.plan[f"kpi.{i}"]
            out.append(AppResult("kpi", kpi.name, "business_kpi", "ok",
                                 float("nan") if value is None else float(value),
                                 {"column": kpi.column, "agg": kpi.agg}))
        return out
