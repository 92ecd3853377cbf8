"""One monitoring interval end to end: extract once, check, compare, and write every summary in one transaction.

The same function serves the CLI, the Airflow task and tests. Data never leaves this function:
callers get an `IntervalReport`, small enough for XCom.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
import psycopg

from monitoring_lib import __version__
from monitoring_lib.applications import (
    AppResult,
    compute_kpis,
    kpi_only_columns,
    kpi_reads_type,
    run_user_applications,
)
from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.endpoints import ensure_endpoint, refresh_endpoint_totals, window_version
from monitoring_lib.errors import MonitoringError, QualityGateFailed
from monitoring_lib.feature_groups import GroupPartial
from monitoring_lib.frames import BadRowReport, categorical_prediction, normalise_frame
from monitoring_lib.operational import bucket_metrics
from monitoring_lib.profiles import load_active_profile
from monitoring_lib.source import read_window
from monitoring_lib.store import replace_window, upsert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntervalReport:
    endpoint_id: str
    window_start: datetime
    window_end: datetime
    status: str  # ok | no_data
    rows: int
    bad_rows: int
    dq_state: str | None
    drift_status: str | None
    general_drift: float | None
    drifted_features: list[str]
    model_version: str
    reference_version: int | None
    dynatrace_lines: int
    timings: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["window_start"] = self.window_start.isoformat()
        data["window_end"] = self.window_end.isoformat()
        return data


@dataclass
class _Stages:
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - began, 4)


def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    if start.tzinfo is None or end.tzinfo is None:
        raise MonitoringError("window bounds must carry a time zone (e.g. 2026-11-23T10:00:00+00:00)")
    if end <= start:
        raise MonitoringError(f"window end {end.isoformat()} must be after its start {start.isoformat()}")
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def run_interval(
    url: str, cfg: EndpointConfig, start: datetime, end: datetime, *, now: datetime | None = None,
    groups: list[GroupPartial] | None = None,
) -> IntervalReport:
    """Compute and store every summary of [start, end) for one endpoint; safe to repeat.

    `groups` are the window's feature-group results (`feature_groups.summarise_group`) when the
    endpoint is split over workers; without them every feature is read here.
    """
    start, end = check_window(start, end)
    now = now or datetime.now(timezone.utc)
    started_at = datetime.now(timezone.utc)
    stage = _Stages()

    with connect(url) as conn:
        ensure_endpoint(conn, cfg)
        # the version that served the window, not the one in service now: a recompute after a promotion keeps it
        model_version = window_version(conn, cfg, start, end)
        profile = load_active_profile(conn, cfg.endpoint_id, model_version)
        conn.commit()

    if groups is not None:
        result, first_ts, last_ts = _compute_with_groups(url, cfg, profile, model_version, start, end, now, stage,
                                                         groups)
    else:
        compute = _compute_in_database if cfg.compute == "database" else _compute_in_memory
        result, first_ts, last_ts = compute(url, cfg, profile, start, end, now, stage)
    rows = result.bad.rows

    with stage("write"), connect(url) as conn:
        with conn.transaction():
            result.anomalies = _anomalies(conn, cfg, start, result) if rows else []
            _write(conn, cfg, start, end, model_version, profile, result, started_at, stage)
            lines = _stage_dynatrace(conn, cfg, start, end, model_version)
            refresh_endpoint_totals(conn, cfg.endpoint_id, first_ts, last_ts)

    report = IntervalReport(
        endpoint_id=cfg.endpoint_id,
        window_start=start,
        window_end=end,
        status="ok" if rows else "no_data",
        rows=rows,
        bad_rows=result.bad.bad_rows,
        dq_state=result.dq_state,
        drift_status=result.drift_status,
        general_drift=result.drift.summary.get("general_drift") if result.drift else None,
        drifted_features=list(result.drift.drifted_features) if result.drift else [],
        model_version=model_version,
        reference_version=profile.version if profile else None,
        dynatrace_lines=lines,
        timings=stage.timings,
        reasons=list(result.drift.reasons) if result.drift else _no_drift_reasons(result.drift_status, model_version),
    )
    if result.dq_state == "failed":
        _quality_gate(cfg, start, end, result.failed_critical)
    return report


def _no_drift_reasons(drift_status: str | None, model_version: str) -> list[str]:
    """Why a window has no drift result when it is for want of a reference: names the version that served it."""
    if drift_status == "no_reference":
        return [f"no reference fitted for model version {model_version}, which served the window"]
    return []


def _quality_gate(cfg: EndpointConfig, start: datetime, end: datetime, failed_critical: list[str],
                  stored: bool = False) -> None:
    """`on_failure: fail_task` fails the task for a failed window, whether computed now or reused."""
    if cfg.quality.on_failure == "fail_task":
        raise QualityGateFailed(
            f"{cfg.endpoint_id} [{start.isoformat()}, {end.isoformat()}): critical data-quality checks failed "
            f"({', '.join(failed_critical)}); results are stored in monitoring.data_quality_results"
            + ("; this is the stored result of the unchanged window: after changing the checks, run with"
               " force_recompute" if stored else "")
        )


@dataclass
class _Computed:
    bad: BadRowReport
    operational: list[tuple[datetime, str, float]] = field(default_factory=list)
    quality: Any = None
    dq_state: str | None = None
    failed_critical: list[str] = field(default_factory=list)
    drift: Any = None
    drift_status: str | None = None
    apps: list[AppResult] = field(default_factory=list)
    anomalies: list[AppResult] = field(default_factory=list)


def _kpi_types(url: str, cfg: EndpointConfig) -> dict[str, str]:
    """The source's SQL types when a KPI's rule depends on them (one query without rows), else none."""
    from monitoring_lib.compute.database.sql import query_errors
    from monitoring_lib.source import describe_source

    if not any(kpi_reads_type(cfg, kpi.column) for kpi in cfg.kpis):
        return {}
    with connect(url) as conn, query_errors(cfg.endpoint_id, "description of the source"):
        return describe_source(conn, cfg.source)


def _with_kpi_columns(cfg: EndpointConfig, columns: list[str], types: dict[str, str]) -> list[str]:
    """`columns` and the source's `kpi_only_columns`, read with them in one query."""
    return [*columns, *(c for c in kpi_only_columns(cfg) if c in types and c not in columns)]


def _compute_in_memory(
    url: str, cfg: EndpointConfig, profile: ReferenceProfile | None, start: datetime, end: datetime,
    now: datetime, stage: _Stages,
) -> tuple[_Computed, datetime | None, datetime | None]:
    """One Arrow read of the window, then every check and summary on the DataFrame."""
    with stage("extract"):
        types = _kpi_types(url, cfg)
        raw = read_window(url, cfg, start, end, _with_kpi_columns(cfg, cfg.source.columns(), types))
    with stage("normalise"):
        df, bad = normalise_frame(raw, cfg, categorical_prediction=categorical_prediction(profile))
    del raw
    result = _Computed(bad=bad)
    if df.empty:
        return result, None, None
    _compute(df, cfg, profile, start, end, now, stage, result, types)
    ts = df[cfg.source.timestamp_column]
    return result, ts.min().to_pydatetime(), ts.max().to_pydatetime()


def _compute_in_database(
    url: str, cfg: EndpointConfig, profile: ReferenceProfile | None, start: datetime, end: datetime,
    now: datetime, stage: _Stages,
) -> tuple[_Computed, datetime | None, datetime | None]:
    """`compute: database`: the same results from aggregate queries in one snapshot; no row leaves PostgreSQL."""
    from monitoring_lib.compute.database.aggregates import AggregatePlan
    from monitoring_lib.compute.database.bad_rows import BadRowsPlan, require_numeric_types
    from monitoring_lib.compute.database.kpis import KpiPlan
    from monitoring_lib.compute.database.scan import summaries_in_database
    from monitoring_lib.compute.database.sql import query_errors, raise_work_mem
    from monitoring_lib.drift.engine import compute_drift
    from monitoring_lib.quality.in_database import QualityPlan
    from monitoring_lib.snapshot import beside
    from monitoring_lib.source import describe_source

    with connect(url) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        raise_work_mem(conn)
        types = describe_source(conn, cfg.source)
        require_numeric_types(cfg, types)
        # bad rows, quality row checks and KPIs add their counts to the summaries' moments scan
        plan = AggregatePlan(cfg, start, end)
        bad_rows, kpis = BadRowsPlan(cfg, types, plan), KpiPlan(cfg, types, plan)
        quality = QualityPlan(cfg, profile, types, plan, now=now) if cfg.quality.enabled else None
        # the grouping by request id (shared with its uniqueness check), the operational buckets and the moments
        # run on a second session of the same snapshot while PostgreSQL hashes the summaries' counts on one core
        with stage("summaries"), beside(conn, url) as side:
            with query_errors(cfg.endpoint_id, "bad-row query"):
                repeated = side.submit(bad_rows.repeated_ids)
            pushed = summaries_in_database(conn, cfg, profile, start, end, cfg.drift.band_k, non_finite_as_null=True,
                                           plan=plan, beside=side)
            with query_errors(cfg.endpoint_id, "bad-row query"):
                repeated_ids = repeated.result()
        with stage("bad_rows"):
            bad, duplicates = bad_rows.report(conn, repeated_ids)
            result = _Computed(bad=bad)
        if not result.bad.rows:
            return result, None, None
        result.operational = pushed.operational
        if quality is not None:
            with stage("quality"):
                result.quality = quality.outcome(conn, duplicates)
            _note_quality(result)
        result.drift_status = _drift_not_computed(cfg, profile, result.dq_state)
        if result.drift_status is None:
            with stage("drift"):
                result.drift = compute_drift(pushed.summaries, profile, cfg)
            result.drift_status = result.drift.status
        with stage("applications"):
            result.apps = kpis.results(conn)
            if result.drift is not None:
                result.apps += _drift_app_results(result.drift, cfg.drift.feature.metric)
    return result, pushed.first_ts, pushed.last_ts


def _compute_with_groups(
    url: str, cfg: EndpointConfig, profile: ReferenceProfile | None, model_version: str, start: datetime,
    end: datetime, now: datetime, stage: _Stages, groups: list[GroupPartial], retry: bool = True,
) -> tuple[_Computed, datetime | None, datetime | None]:
    """The core columns read here, the features' summaries and checks merged from their groups.

    Distinct bad and failed rows span all columns, so PostgreSQL counts them. When the groups read
    another state of the window, see `_unmerged`.
    """
    from monitoring_lib.compute.database.bad_rows import bad_rows_in_database, require_numeric_types
    from monitoring_lib.compute.database.sql import raise_work_mem
    from monitoring_lib.drift.engine import compute_drift, prediction_columns
    from monitoring_lib.drift.summaries import summarise_frame
    from monitoring_lib.feature_groups import core_columns, merged_quality, mismatch
    from monitoring_lib.source import describe_source

    with stage("extract"):
        raw = read_window(url, cfg, start, end, _with_kpi_columns(cfg, core_columns(cfg), _kpi_types(url, cfg)))
    with stage("normalise"):
        df, _ = normalise_frame(raw, cfg, categorical_prediction=categorical_prediction(profile))
    del raw
    with connect(url) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        raise_work_mem(conn)
        types = describe_source(conn, cfg.source)
        require_numeric_types(cfg, types)
        with stage("bad_rows"):
            result = _Computed(bad=bad_rows_in_database(conn, cfg, types, start, end))
        why = mismatch(cfg, groups, len(df), model_version, profile)
        if why is None and result.bad.rows != len(df):
            why = f"the window had {len(df)} rows when read and {result.bad.rows} when counted"
        if why is None and len(df):
            merged = {k: v for g in groups for k, v in g.summaries.items()}
            stage.timings["feature_groups"] = float(len(groups))

            def quality(d: pd.DataFrame) -> Any:
                return merged_quality(conn, cfg, profile, types, d, groups, start, end, now)

            def drift(d: pd.DataFrame) -> Any:
                own = summarise_frame(d, profile, prediction_columns(profile, cfg), cfg.drift.band_k)
                return compute_drift({**merged, **own}, profile, cfg)  # type: ignore[arg-type]

            _compute(df, cfg, profile, start, end, now, stage, result, types, quality=quality, drift=drift)
    if why is not None:
        return _unmerged(url, cfg, profile, model_version, start, end, now, stage, why, retry)
    if df.empty:
        return result, None, None
    ts = df[cfg.source.timestamp_column]
    return result, ts.min().to_pydatetime(), ts.max().to_pydatetime()


def _unmerged(
    url: str, cfg: EndpointConfig, profile: ReferenceProfile | None, model_version: str, start: datetime,
    end: datetime, now: datetime, stage: _Stages, why: str, retry: bool,
) -> tuple[_Computed, datetime | None, datetime | None]:
    """Groups that cannot be merged (a row landed between the reads, a group missing or on another reference).

    The groups are summarised again here, one at a time, so memory stays that of one group, and the
    same checks decide the verdict. Only if the window changes again meanwhile is it computed in one
    database snapshot, where an expectation with no SQL form cannot be evaluated.
    """
    from monitoring_lib.feature_groups import summarise_group

    where = f"{cfg.endpoint_id} [{start.isoformat()}, {end.isoformat()})"
    if not cfg.feature_groups():
        log.warning("%s: feature groups not merged (%s); computing the window as configured", where, why)
        compute = _compute_in_database if cfg.compute == "database" else _compute_in_memory
        return compute(url, cfg, profile, start, end, now, stage)
    if retry:
        log.warning("%s: feature groups not merged (%s); summarising them again here, one at a time", where, why)
        fresh = [summarise_group(url, cfg, i, start, end, now=now) for i in range(len(cfg.feature_groups()))]
        stage.timings["feature_groups_resummarised"] = float(len(fresh))
        return _compute_with_groups(url, cfg, profile, model_version, start, end, now, stage, fresh, retry=False)
    log.warning("%s: feature groups not merged again (%s); computing the window in one database snapshot", where, why)
    computed = _compute_in_database(url, cfg, profile, start, end, now, stage)
    stage.timings["feature_groups_fallback"] = 1.0
    return computed


def _note_quality(out: _Computed) -> None:
    out.dq_state = out.quality.state
    out.failed_critical = [r.expectation_id for r in out.quality.results if not r.success and r.severity == "critical"]


def _drift_not_computed(cfg: EndpointConfig, profile: ReferenceProfile | None, dq_state: str | None) -> str | None:
    """Why drift is not computed for this window, or None when it is."""
    if not cfg.drift.enabled:
        return "disabled"
    if profile is None:
        return "no_reference"
    if dq_state == "failed" and cfg.quality.on_failure != "compute_drift":
        return "skipped"
    return None


def _compute(
    df: pd.DataFrame,
    cfg: EndpointConfig,
    profile: ReferenceProfile | None,
    start: datetime,
    end: datetime,
    now: datetime,
    stage: _Stages,
    out: _Computed,
    types: dict[str, str],
    *,
    quality: Callable[[pd.DataFrame], Any] | None = None,
    drift: Callable[[pd.DataFrame], Any] | None = None,
) -> None:
    """Every check and summary of the window's frame; `quality`/`drift` replace the whole-frame ones."""
    # columns read for KPIs alone leave the frame the checks, drift and user applications see
    kpi_only = pd.DataFrame({c: df.pop(c) for c in kpi_only_columns(cfg) if c in df}, index=df.index)
    drift_wanted = cfg.drift.enabled and profile is not None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlmon-drift") as pool:
        # Drift is NumPy work that releases the GIL; run it beside Great Expectations (mostly Python)
        # and keep its result only if the quality policy lets drift through.
        pending = pool.submit(_timed_drift, df, profile, cfg, stage, drift) if drift_wanted else None
        with stage("operational"):
            out.operational = bucket_metrics(df, cfg, start, end)
        if cfg.quality.enabled:
            from monitoring_lib.quality.validate import run_quality

            with stage("quality"):
                ids = out.bad.repeated_ids  # the bad-row count already hashed the request ids
                repeated = None if ids is None else {cfg.source.request_id_column: ids}
                out.quality = quality(df) if quality else run_quality(df, cfg, profile, start, end, now=now,
                                                                      repeated=repeated)
            _note_quality(out)
        out.drift_status = _drift_not_computed(cfg, profile, out.dq_state)
        if out.drift_status is None:
            out.drift = pending.result()  # type: ignore[union-attr]
            out.drift_status = out.drift.status
        elif pending is not None:
            pending.cancel()
    with stage("applications"):
        out.apps = compute_kpis(df, cfg, types, kpi_only)
        if out.drift is not None:
            out.apps += _drift_app_results(out.drift, cfg.drift.feature.metric)
        out.apps += run_user_applications(df, profile, cfg)


def _timed_drift(df: pd.DataFrame, profile: ReferenceProfile, cfg: EndpointConfig, stage: _Stages,
                 drift: Callable[[pd.DataFrame], Any] | None) -> Any:
    from monitoring_lib.drift.engine import summarise_and_compute

    with stage("drift"):
        return drift(df) if drift else summarise_and_compute(df, profile, cfg)


def _drift_app_results(drift: Any, feature_metric: str) -> list[AppResult]:
    """The built-in drift computation seen as one monitoring application, as the Applications dashboard expects."""
    results = [AppResult("drift", "general_drift", "data_drift", drift.status,
                         drift.summary.get("general_drift"), {"reasons": list(drift.reasons)})]
    for row in drift.feature_rows:
        if row["metric"] == feature_metric:
            # no status: the metric has no value (a feature without a finite value in the window)
            results.append(AppResult("drift", f"feature:{row['feature']}", "feature_drift", row["status"] or "unknown",
                                     row["value"], {"metric": row["metric"]}))
    return results


def _anomalies(conn: psycopg.Connection, cfg: EndpointConfig, start: datetime, out: _Computed) -> list[AppResult]:
    """Rolling z-scores of this interval's feature means and KPIs against the preceding intervals."""
    from monitoring_lib.drift.anomaly import rolling_zscores

    current: dict[str, float] = {}
    if out.drift is not None:
        for row in out.drift.feature_stats_rows:
            if row["metric"] == "mean" and row["value"] is not None and math.isfinite(row["value"]):
                current[f"feature_mean:{row['feature']}"] = float(row["value"])
    for app in out.apps:
        if app.application == "kpi" and app.value is not None and math.isfinite(app.value):
            current[f"kpi:{app.metric}"] = float(app.value)
    if not current:
        return []
    window = cfg.drift.anomaly_window
    history = pd.DataFrame(
        conn.execute(
            """
            SELECT window_end, 'feature_mean:' || feature AS metric, value FROM monitoring.feature_stats
             WHERE endpoint_id = %(e)s AND metric = 'mean' AND window_end <= %(s)s
               AND window_end > %(s)s - %(span)s
            UNION ALL
            SELECT window_end, 'kpi:' || metric, value FROM monitoring.app_results
             WHERE endpoint_id = %(e)s AND application = 'kpi' AND window_end <= %(s)s
               AND window_end > %(s)s - %(span)s
            ORDER BY 1
            """,
            {"e": cfg.endpoint_id, "s": start, "span": cfg.schedule.interval * (window + 1)},
        ).fetchall(),
        columns=["window_end", "metric", "value"],
    )
    found = rolling_zscores(history, current, window=window, z=cfg.drift.anomaly_z)
    return [
        AppResult("anomaly", a.metric, "anomaly", "anomaly" if a.is_anomaly else "normal", a.zscore,
                  {"value": a.value, "mean": a.mean, "std": a.std,
                   "band_low": None if a.std is None else a.mean - cfg.drift.anomaly_z * a.std,
                   "band_high": None if a.std is None else a.mean + cfg.drift.anomaly_z * a.std})
        for a in found
    ]


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _write(
    conn: psycopg.Connection,
    cfg: EndpointConfig,
    start: datetime,
    end: datetime,
    model_version: str,
    profile: ReferenceProfile | None,
    out: _Computed,
    started_at: datetime,
    stage: _Stages,
) -> None:
    e = cfg.endpoint_id
    replace_window(conn, "operational_metrics", e, start, end, ["bucket_start", "metric", "value"],
                   ["bucket_start", "metric"], out.operational)
    if out.quality is not None:
        from monitoring_lib.quality.store import write_quality_results

        write_quality_results(conn, e, start, end, out.quality)
    else:
        replace_window(conn, "data_quality_results", e, start, end, [], [], [])
    drift = out.drift
    feature_rows, summary_rows, stats_rows = [], [], []
    if drift is not None:
        feature_rows = [(r["feature"], r["metric"], _finite(r["value"]), _finite(r["p_value"]),
                         r["threshold_possible"], r["threshold_detected"], r["status"]) for r in drift.feature_rows]
        details = {"reasons": list(drift.reasons), "drifted_features": list(drift.drifted_features)}
        summary_rows = [(metric, _finite(value), drift.status, out.dq_state,
                         details if metric == "general_drift" else {})
                        for metric, value in drift.summary.items()]
        stats_rows = [(r["feature"], r["metric"], _finite(r["value"])) for r in drift.feature_stats_rows]
    replace_window(conn, "feature_drift", e, start, end,
                   ["feature", "metric", "value", "p_value", "threshold_possible", "threshold_detected", "status"],
                   ["feature", "metric"], feature_rows)
    replace_window(conn, "drift_summary", e, start, end, ["metric", "value", "drift_status", "dq_state", "details"],
                   ["metric"], summary_rows)
    replace_window(conn, "feature_stats", e, start, end, ["feature", "metric", "value"], ["feature", "metric"],
                   stats_rows)
    replace_window(conn, "app_results", e, start, end,
                   ["application", "metric", "kind", "status", "value", "extra", "schedule_time"],
                   ["application", "metric"], [(*a.row(), end) for a in out.apps + out.anomalies])
    finished_at = datetime.now(timezone.utc)
    timings: dict[str, Any] = dict(stage.timings)
    if out.quality is not None:
        timings["dq_failed_rows"] = int(out.quality.failed_rows)
    upsert(
        conn, "interval_runs",
        ["endpoint_id", "window_start", "window_end", "status", "rows_seen", "bad_rows", "bad_row_details",
         "dq_state", "drift_status", "model_version", "reference_version", "compute_mode", "stage_timings",
         "library_version", "error", "started_at", "finished_at", "duration_s"],
        ["endpoint_id", "window_start", "window_end"],
        [(e, start, end, "ok" if out.bad.rows else "no_data", out.bad.rows, out.bad.bad_rows, out.bad.by_reason,
          out.dq_state, out.drift_status, model_version, profile.version if profile else None, cfg.compute,
          timings, __version__, None, started_at, finished_at, (finished_at - started_at).total_seconds())],
    )


def _stage_dynatrace(conn: psycopg.Connection, cfg: EndpointConfig, start: datetime, end: datetime,
                     model_version: str) -> int:
    """Queue this window's Dynatrace lines in the same transaction as its summaries (the outbox)."""
    if not cfg.dynatrace.enabled:
        return 0
    from monitoring_lib.dynatrace.lines import build_interval_lines, performance_key_prefix
    from monitoring_lib.dynatrace.outbox import stage_lines

    batch = build_interval_lines(conn, cfg, start, end, model_version)
    # the performance series of this window are staged by the performance task: leave them
    return stage_lines(conn, cfg.endpoint_id, start, end, batch, family=(performance_key_prefix(cfg), False))


def windows(start: datetime, end: datetime, interval: timedelta) -> list[tuple[datetime, datetime]]:
    """Consecutive [s, s+interval) windows covering [start, end); a partial last window is not run."""
    start, end = check_window(start, end)
    out = []
    cursor = start
    while cursor + interval <= end:
        out.append((cursor, cursor + interval))
        cursor += interval
    return out


def stored_report(url: str, cfg: EndpointConfig, start: datetime, end: datetime) -> IntervalReport | None:
    """The stored result of a window if it is still current: same model (the version that served the window, so a
    later promotion leaves it current), same reference, same row count.

    Rows that arrive late change the count, so a window is recomputed exactly when its inputs changed.
    """
    from monitoring_lib.source import count_window

    start, end = check_window(start, end)
    with connect(url) as conn:
        row = conn.execute(
            """
            SELECT r.status, r.rows_seen, r.bad_rows, r.dq_state, r.drift_status, r.model_version,
                   r.reference_version, d.value, coalesce(d.details, '{}'::jsonb)
            FROM monitoring.interval_runs r
            LEFT JOIN monitoring.drift_summary d ON d.endpoint_id = r.endpoint_id AND d.window_start = r.window_start
                 AND d.window_end = r.window_end AND d.metric = 'general_drift'
            WHERE r.endpoint_id = %s AND r.window_start = %s AND r.window_end = %s
            """,
            (cfg.endpoint_id, start, end),
        ).fetchone()
        if row is None or row[5] != window_version(conn, cfg, start, end):
            return None
        profile = load_active_profile(conn, cfg.endpoint_id, row[5])
        if (profile.version if profile else None) != row[6] or count_window(conn, cfg, start, end) != row[1]:
            return None
    return IntervalReport(
        endpoint_id=cfg.endpoint_id, window_start=start, window_end=end, status=row[0], rows=row[1], bad_rows=row[2],
        dq_state=row[3], drift_status=row[4], general_drift=row[7], drifted_features=list(row[8].get(
            "drifted_features", [])), model_version=row[5], reference_version=row[6], dynatrace_lines=0,
        reasons=list(row[8].get("reasons", [])) or _no_drift_reasons(row[4], row[5]),
    )


def _failed_critical(url: str, cfg: EndpointConfig, report: IntervalReport) -> list[str]:
    with connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT expectation_id FROM monitoring.data_quality_results WHERE endpoint_id = %s AND window_start = %s"
            " AND window_end = %s AND NOT success AND severity = 'critical' ORDER BY expectation_id",
            (cfg.endpoint_id, report.window_start, report.window_end),
        )]


def compute_or_reuse(
    url: str, cfg: EndpointConfig, window: dict[str, str], *, force: bool = False,
    groups: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The task-facing entry point: ISO window in, small JSON-safe report out (for XCom).

    `groups` are the mapped feature-group tasks' results when the endpoint is split over workers.
    """
    start = datetime.fromisoformat(window["start"])
    end = datetime.fromisoformat(window["end"])
    if not force:
        current = stored_report(url, cfg, start, end)
        if current is not None:
            if current.dq_state == "failed":  # the stored verdict; `force_recompute` re-checks after a config fix
                _quality_gate(cfg, current.window_start, current.window_end, _failed_critical(url, cfg, current),
                              stored=True)
            return {**current.to_dict(), "reused": True}
    partials = None if groups is None else [GroupPartial.from_json(g) for g in groups if not g.get("reused")]
    return {**run_interval(url, cfg, start, end, groups=partials).to_dict(), "reused": False}
