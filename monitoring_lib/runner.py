"""One monitoring window as a pipeline: read and compute (one mode), then write every table in one transaction.

The same function serves the CLI, the Airflow task and tests. Data never leaves the compute step:
callers get an `IntervalReport`, small enough for XCom.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone

import psycopg

from monitoring_lib.applications import AppResult
from monitoring_lib.compute.anomalies import anomaly_inputs, anomaly_results
from monitoring_lib.compute.database.window import compute_in_database
from monitoring_lib.compute.estimation import (
    estimate_app_result,
    estimation_wanted,
    no_estimator_result,
    window_estimate,
)
from monitoring_lib.compute.groups.partials import GroupPartial
from monitoring_lib.compute.groups.window import compute_with_groups
from monitoring_lib.compute.memory.window import compute_in_memory
from monitoring_lib.compute.window_results import StageTimer, WindowResults
from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.dynatrace.lines import build_interval_lines, performance_key_prefix
from monitoring_lib.errors import DatabaseUnavailableError, QualityGateFailed, SourceError
from monitoring_lib.estimation.estimator import Estimate
from monitoring_lib.results.endpoints import ensure_endpoint, refresh_endpoint_totals, window_version
from monitoring_lib.results.outbox import stage_lines
from monitoring_lib.results.profiles import load_active_profile
from monitoring_lib.results.report import IntervalReport, no_drift_reasons
from monitoring_lib.results.window import metric_history, write_window
from monitoring_lib.schedule import check_window
from monitoring_lib.sql_common import query_errors

log = logging.getLogger(__name__)


def run_interval(
    url: str, cfg: EndpointConfig, start: datetime, end: datetime, *, now: datetime | None = None,
    groups: list[GroupPartial] | None = None,
) -> IntervalReport:
    """Compute and store every summary of [start, end) for one endpoint; safe to repeat.

    `groups` are the window's feature-group results (`compute.groups.partials.summarise_group`) when the
    endpoint is split over workers; without them every feature is read here.
    """
    start, end = check_window(start, end)
    now = now or datetime.now(timezone.utc)
    started_at = datetime.now(timezone.utc)
    stage = StageTimer()

    with connect(url) as conn:
        ensure_endpoint(conn, cfg)
        # the version that served the window, not the one in service now: a recompute after a promotion keeps it
        model_version = window_version(conn, cfg, start, end)
        profile = load_active_profile(conn, cfg.endpoint_id, model_version)
        conn.commit()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlmon-estimate") as pool:
        # a bounded sample and small trees: read and evaluated while the mode computes the rest
        pending = pool.submit(_estimate, url, cfg, profile, start, end, stage) if estimation_wanted(profile, cfg) \
            else None
        if groups is not None:
            results = compute_with_groups(url, cfg, profile, model_version, start, end, now, stage, groups)
        else:
            compute = compute_in_database if cfg.compute == "database" else compute_in_memory
            results = compute(url, cfg, profile, start, end, now, stage)
        estimated = pending.result() if pending is not None else None
    if isinstance(estimated, AppResult):
        results = replace(results, apps=(*results.apps, estimated))
    elif estimated is not None and results.rows:
        results = replace(results, estimate=estimated, apps=(*results.apps, estimate_app_result(estimated)))
    elif cfg.performance.estimation.enabled and profile is not None and results.rows:
        log.warning("%s: performance.estimation is on but reference profile v%s has no estimator; refit it",
                    cfg.endpoint_id, profile.version)
        results = replace(results, apps=(*results.apps, no_estimator_result(profile)))

    with stage("write"), connect(url) as conn:
        with conn.transaction():
            current = anomaly_inputs(results) if results.rows else {}
            anomalies = anomaly_results(metric_history(conn, cfg, start), current, cfg) if current else []
            write_window(conn, cfg, start, end, model_version, profile, results, anomalies, started_at, stage.timings)
            lines = _stage_dynatrace(conn, cfg, start, end, model_version)
            refresh_endpoint_totals(conn, cfg.endpoint_id, results.first_ts, results.last_ts)

    report = _report(cfg, start, end, model_version, profile.version if profile else None, results, lines, stage)
    if results.dq_state == "failed":
        enforce_quality_gate(cfg, start, end, results.failed_critical)
    return report


def _estimate(url: str, cfg: EndpointConfig, profile: ReferenceProfile, start: datetime, end: datetime,
              stage: StageTimer) -> Estimate | AppResult:
    """The window's estimate; an estimator that fails on this window's data is recorded as an error result
    and leaves the window's other results standing (a database outage still fails the run, to be retried)."""
    with stage("estimation"), query_errors(cfg.endpoint_id, "performance estimation sample"):
        try:
            return window_estimate(url, cfg, profile, start, end)
        except (DatabaseUnavailableError, SourceError):
            raise
        except Exception as exc:  # noqa: BLE001 - one failing method must not lose the window
            log.exception("%s: performance estimation failed for [%s, %s)", cfg.endpoint_id, start, end)
            return AppResult("performance", "estimated", "estimated_performance", "error", None,
                             {"error": f"{type(exc).__name__}: {exc}"})


def _report(cfg: EndpointConfig, start: datetime, end: datetime, model_version: str, reference_version: int | None,
            results: WindowResults, lines: int, stage: StageTimer) -> IntervalReport:
    drift = results.drift
    return IntervalReport(
        endpoint_id=cfg.endpoint_id,
        window_start=start,
        window_end=end,
        status="ok" if results.rows else "no_data",
        rows=results.rows,
        bad_rows=results.bad.bad_rows,
        dq_state=results.dq_state,
        drift_status=results.drift_status,
        general_drift=drift.summary.get("general_drift") if drift else None,
        drifted_features=list(drift.drifted_features) if drift else [],
        model_version=model_version,
        reference_version=reference_version,
        dynatrace_lines=lines,
        timings=stage.timings,
        reasons=list(drift.reasons) if drift else no_drift_reasons(results.drift_status, model_version),
    )


def enforce_quality_gate(cfg: EndpointConfig, start: datetime, end: datetime, failed_critical: list[str],
                  stored: bool = False) -> None:
    """`on_failure: fail_task` fails the task for a failed window, whether computed now or reused."""
    if cfg.quality.on_failure == "fail_task":
        raise QualityGateFailed(
            f"{cfg.endpoint_id} [{start.isoformat()}, {end.isoformat()}): critical data-quality checks failed "
            f"({', '.join(failed_critical)}); results are stored in monitoring.data_quality_results"
            + ("; this is the stored result of the unchanged window: after changing the checks, run with"
               " force_recompute" if stored else "")
        )


def _stage_dynatrace(conn: psycopg.Connection, cfg: EndpointConfig, start: datetime, end: datetime,
                     model_version: str) -> int:
    """Queue this window's Dynatrace lines in the same transaction as its summaries (the outbox)."""
    if not cfg.dynatrace.enabled:
        return 0
    batch = build_interval_lines(conn, cfg, start, end, model_version)
    # the performance series of this window are staged by the performance task: leave them
    return stage_lines(conn, cfg.endpoint_id, start, end, batch, family=(performance_key_prefix(cfg), False))
