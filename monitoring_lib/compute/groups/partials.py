"""Feature groups: one wide model's interval spread over several workers, merged exactly.

With `scale_out.feature_group_size`, the features are cut into groups in config order. Each group is
summarised by its own task (an Airflow mapped task, on any worker): it reads only the window's values
of its columns, normalises them, builds their drift summaries against the stored profile and runs the
quality checks that look at them. Results are small (histogram counts, moments, quantiles, one
verdict per check) and travel as JSON.

The interval task then reads only the core columns (timestamp, request id, prediction, latency, error,
KPI columns), runs their checks, merges the groups' summaries and verdicts (disjoint columns, so the
merge is exact: no quantile is interpolated) and counts the distinct bad and failed rows in
PostgreSQL, where every row is visible at once.

Each group reports its row count, model version and reference version; the interval task compares
them with its own read and with the rows PostgreSQL counts. When they differ (rows landed between the
reads, a group is missing or used another reference), the interval task summarises the groups again
itself, one at a time, so its memory stays that of one group; only if the window changes again meanwhile
is the interval computed in one database snapshot (`compute: database`), so a result never mixes two
states of the window. A group whose window already has a current stored result is not read again.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg

from monitoring_lib.compute.database.quality import failed_rows_in_database
from monitoring_lib.compute.memory.bad_rows import categorical_prediction, normalise_frame
from monitoring_lib.compute.memory.quality import evaluate_specs
from monitoring_lib.compute.memory.summaries import summarise_frame
from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.drift.summaries import ColumnSummary
from monitoring_lib.errors import MonitoringError
from monitoring_lib.quality.results import (
    QualityOutcome,
    QualityResult,
    columns_match_result,
    error_result,
    overall_state,
)
from monitoring_lib.quality.suite import ExpectationSpec, build_expectations, columns_read
from monitoring_lib.results.endpoints import window_version
from monitoring_lib.results.profiles import load_active_profile
from monitoring_lib.schedule import check_window
from monitoring_lib.source import read_window

TABLE_COLUMNS = "ExpectTableColumnsToMatchSet"


def core_columns(cfg: EndpointConfig) -> list[str]:
    """What the interval task itself reads of the monitored columns: all but the features (KPI columns kept)."""
    src = cfg.source
    features = set(src.features)
    monitored = src.columns()
    kpi = [k.column for k in cfg.kpis if k.column in monitored]
    return list(dict.fromkeys([c for c in monitored if c not in features] + kpi))


@dataclass(frozen=True)
class GroupPlan:
    features: list[str]
    columns: list[str]  # features plus what its checks also read (e.g. the error flag of a row condition)
    specs: list[ExpectationSpec] = field(default_factory=list)


@dataclass(frozen=True)
class Routing:
    """Which task evaluates each check: the interval task (`core`) or the group holding its first feature."""

    core: list[ExpectationSpec]
    groups: list[GroupPlan]


def route(cfg: EndpointConfig, specs: list[ExpectationSpec]) -> Routing:
    names = set(cfg.source.columns())
    groups = cfg.feature_groups()
    home = {f: i for i, g in enumerate(groups) for f in g}
    extra: list[list[str]] = [[] for _ in groups]
    assigned: list[list[ExpectationSpec]] = [[] for _ in groups]
    core: list[ExpectationSpec] = []
    for spec in specs:
        cols = [] if spec.expectation_type == TABLE_COLUMNS else columns_read(spec, names)
        in_groups = [c for c in cols if c in home]
        if not in_groups:
            core.append(spec)
            continue
        g = home[in_groups[0]]
        assigned[g].append(spec)
        extra[g] += [c for c in cols if c not in groups[g]]
    plans = [GroupPlan(g, list(dict.fromkeys(g + extra[i])), assigned[i]) for i, g in enumerate(groups)]
    return Routing(core, plans)


@dataclass(frozen=True)
class GroupPartial:
    """One group's share of an interval: what the interval task merges."""

    group: int
    rows: int
    model_version: str
    reference_version: int | None
    summaries: dict[str, ColumnSummary]
    results: dict[str, QualityResult]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "rows": self.rows, "model_version": self.model_version,
                "reference_version": self.reference_version, "seconds": round(self.seconds, 4),
                "summaries": [asdict(s) for s in self.summaries.values()],
                "results": [asdict(r) for r in self.results.values()]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupPartial:
        try:
            summaries = {s["name"]: ColumnSummary(**{**s, "counts": tuple(s["counts"])}) for s in data["summaries"]}
            results = {r["expectation_id"]: QualityResult(**r) for r in data["results"]}
            return cls(int(data["group"]), int(data["rows"]), str(data["model_version"]),
                       data["reference_version"], summaries, results, float(data.get("seconds", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitoringError(f"a feature-group result is malformed ({type(exc).__name__}: {exc}); "
                                  "re-run the interval's summarise_group tasks") from exc


def summarise_group(
    url: str, cfg: EndpointConfig, group: int, start: datetime, end: datetime, *, now: datetime
) -> GroupPartial:
    """Read, summarise and check one group's columns of [start, end); nothing is written."""

    began = time.perf_counter()
    start, end = check_window(start, end)
    groups = cfg.feature_groups()
    if not 0 <= group < len(groups):
        raise MonitoringError(f"{cfg.endpoint_id}: feature group {group} does not exist; the config makes "
                              f"{len(groups)} group(s) (scale_out.feature_group_size)")
    with connect(url) as conn:
        model_version = window_version(conn, cfg, start, end)  # the one that served the window, as the interval's
        profile = load_active_profile(conn, cfg.endpoint_id, model_version)
    plan = route(cfg, build_expectations(cfg, profile, start, end, now)).groups[group]
    df, _ = normalise_frame(read_window(url, cfg, start, end, plan.columns), cfg,
                           categorical_prediction=categorical_prediction(profile))
    summaries: dict[str, ColumnSummary] = {}
    if cfg.drift.enabled and profile is not None and len(df):
        summaries = summarise_frame(df, profile, plan.features, cfg.drift.band_k)
    results: dict[str, QualityResult] = {}
    if cfg.quality.enabled and len(df):
        results = evaluate_specs(df, plan.specs, native_checks=cfg.quality.native_checks)
    return GroupPartial(group, len(df), model_version, profile.version if profile else None, summaries, results,
                        time.perf_counter() - began)


def mismatch(
    cfg: EndpointConfig, partials: list[GroupPartial], rows: int, model_version: str,
    profile: ReferenceProfile | None,
) -> str | None:
    """Why the groups cannot be merged with the interval task's own read, or None when they can."""
    expected = len(cfg.feature_groups())
    if not expected:
        return "the endpoint is not split into feature groups (scale_out.feature_group_size)"
    seen = sorted(p.group for p in partials)
    if seen != list(range(expected)):
        return f"expected groups 0..{expected - 1}, got {seen}"
    version = profile.version if profile else None
    for p in partials:
        if p.rows != rows:
            return f"group {p.group} read {p.rows} rows, the window now has {rows}"
        if (p.model_version, p.reference_version) != (model_version, version):
            return (f"group {p.group} used model {p.model_version} / reference {p.reference_version}, "
                    f"the interval {model_version} / {version}")
    return None


def merged_quality(
    conn: psycopg.Connection, cfg: EndpointConfig, profile: ReferenceProfile | None, types: dict[str, str],
    core: pd.DataFrame, groups: list[GroupPartial], start: datetime, end: datetime, now: datetime,
) -> QualityOutcome:
    """The whole suite's outcome: core checks on the core frame, feature checks from their groups.

    Every check of the suite gets a result (one its group did not return is reported failed, not
    dropped); distinct failed rows are counted in the open database snapshot.
    """

    began = time.perf_counter()
    specs = build_expectations(cfg, profile, start, end, now)
    routing = route(cfg, specs)
    by_id = evaluate_specs(core, [s for s in routing.core if s.expectation_type != TABLE_COLUMNS],
                           native_checks=cfg.quality.native_checks)
    columns = cfg.source.columns()
    by_id |= {s.id: columns_match_result(s, columns) for s in routing.core if s.expectation_type == TABLE_COLUMNS}
    for g in groups:
        by_id |= g.results
    for s in specs:
        if s.id not in by_id:
            by_id[s.id] = error_result(s, "its feature group returned no result for this check")
    results = [by_id[s.id] for s in specs]
    return QualityOutcome(
        state=overall_state(results),
        results=results,
        failed_rows=failed_rows_in_database(conn, cfg, types, specs, by_id, start, end),
        duration_s=time.perf_counter() - began,
        row_count=len(core),
    )
