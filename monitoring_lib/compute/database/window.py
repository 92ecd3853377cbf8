"""`compute: database`: the same results as the memory mode from aggregate queries in one snapshot.

No row of the window leaves PostgreSQL. Bad rows, quality row checks and KPIs add their counts to the
summaries' moments scan; the grouping by request id (shared with its uniqueness check), the operational
buckets and the moments run on a second session of the same snapshot while PostgreSQL hashes the
summaries' counts on one core.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from monitoring_lib.compute.database.aggregates import AggregatePlan
from monitoring_lib.compute.database.bad_rows import BadRowsPlan
from monitoring_lib.compute.database.kpis import KpiPlan
from monitoring_lib.compute.database.multivariate import error_in_database
from monitoring_lib.compute.database.quality import QualityPlan
from monitoring_lib.compute.database.scan import summaries_in_database
from monitoring_lib.compute.database.segments import segments_in_database
from monitoring_lib.compute.database.snapshot import beside, window_snapshot
from monitoring_lib.compute.domain import domain_wanted, window_domain
from monitoring_lib.compute.window_results import (
    StageTimer,
    WindowResults,
    drift_app_results,
    drift_not_computed,
    segment_app_results,
    segments_wanted,
)
from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.drift.engine import compute_drift, multivariate_model
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.drift.segments import SegmentResult, judge_segments
from monitoring_lib.sql_common import query_errors


def compute_in_database(
    url: str, cfg: EndpointConfig, profile: ReferenceProfile | None, start: datetime, end: datetime,
    now: datetime, stage: StageTimer,
) -> WindowResults:
    with connect(url) as conn, window_snapshot(conn, cfg) as types:
        plan = AggregatePlan(cfg, start, end)
        bad_rows, kpis = BadRowsPlan(cfg, types, plan), KpiPlan(cfg, types, plan)
        quality_plan = QualityPlan(cfg, profile, types, plan, now=now) if cfg.quality.enabled else None
        model = multivariate_model(profile, cfg)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlmon-domain") as pool, \
                stage("summaries"), beside(conn, url) as side:
            # the classifier is Python CPU on a bounded sample: it runs while PostgreSQL scans
            domain = (pool.submit(window_domain, url, cfg, profile, start, end)  # type: ignore[arg-type]
                      if domain_wanted(profile, cfg) else None)
            with query_errors(cfg.endpoint_id, "bad-row query"):
                repeated = side.submit(bad_rows.repeated_ids)
            with query_errors(cfg.endpoint_id, "multivariate drift query"):
                # its own scan, beside the counts scan as the memory mode's drift runs beside the checks
                error = (side.submit(lambda c: error_in_database(c, cfg, model, types, start, end))
                         if model is not None else None)
            with query_errors(cfg.endpoint_id, "segment query"):
                by_segment = (side.submit(lambda c: segments_in_database(c, cfg, profile, types, start, end))
                              if segments_wanted(profile, cfg) else None)
            pushed = summaries_in_database(conn, cfg, profile, start, end, cfg.drift.band_k, non_finite_as_null=True,
                                           plan=plan, beside=side)
            with query_errors(cfg.endpoint_id, "segment query"):
                segment_counts = by_segment.result() if by_segment is not None else []
            with query_errors(cfg.endpoint_id, "bad-row query"):
                repeated_ids = repeated.result()
            with query_errors(cfg.endpoint_id, "multivariate drift query"):
                multivariate_error = error.result() if error is not None else None
            verdict = domain.result() if domain is not None else None
        with stage("bad_rows"):
            bad, duplicates = bad_rows.report(conn, repeated_ids)
        if not bad.rows:
            return WindowResults(bad=bad)
        quality = None
        if quality_plan is not None:
            with stage("quality"):
                quality = quality_plan.outcome(conn, duplicates)
        drift_status = drift_not_computed(cfg, profile, quality.state if quality else None)
        drift = None
        segments: tuple[SegmentResult, ...] = ()
        if drift_status is None:
            with stage("drift"):
                drift = compute_drift(pushed.summaries, profile, cfg, multivariate_error, verdict)  # type: ignore[arg-type]
                segments = judge_segments(segment_counts, profile, cfg) if segment_counts else ()  # type: ignore[arg-type]
            drift_status = drift.status
        with stage("applications"):
            apps = kpis.results(conn)
            if drift is not None:
                apps += drift_app_results(drift, cfg.drift.feature.metric)
                apps += segment_app_results(cfg, profile, segments)
    return WindowResults(bad=bad, first_ts=pushed.first_ts, last_ts=pushed.last_ts,
                         operational=tuple(pushed.operational), quality=quality, drift=drift,
                         drift_status=drift_status, apps=tuple(apps), segments=segments)
