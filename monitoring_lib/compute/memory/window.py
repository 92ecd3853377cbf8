"""`compute: memory`: one Arrow read of the window, then every check and summary on the DataFrame.

`frame_results` is also the feature-groups mode's core: there the features' summaries and the merged
quality outcome arrive as values (`summaries`, `quality`) and only the core columns are in the frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pandas as pd

from monitoring_lib.applications import kpi_only_columns, kpi_reads_type, run_user_applications
from monitoring_lib.compute.domain import domain_wanted, window_domain
from monitoring_lib.compute.memory.bad_rows import BadRowReport, categorical_prediction, normalise_frame
from monitoring_lib.compute.memory.kpis import compute_kpis
from monitoring_lib.compute.memory.multivariate import frame_error
from monitoring_lib.compute.memory.operational import bucket_metrics
from monitoring_lib.compute.memory.quality import run_quality
from monitoring_lib.compute.memory.segments import frame_segment_counts
from monitoring_lib.compute.memory.summaries import summarise_and_compute, summarise_frame
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
from monitoring_lib.drift.domain import DomainResult
from monitoring_lib.drift.engine import DriftResult, compute_drift, multivariate_model, prediction_columns
from monitoring_lib.drift.multivariate import WindowError
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.drift.segments import SegmentCounts, SegmentResult, judge_segments
from monitoring_lib.drift.summaries import ColumnSummary
from monitoring_lib.quality.results import QualityOutcome
from monitoring_lib.source import describe_source, read_window
from monitoring_lib.sql_common import query_errors


def kpi_types(url: str, cfg: EndpointConfig) -> dict[str, str]:
    """The source's SQL types when a KPI's rule depends on them (one query without rows), else none."""
    if not any(kpi_reads_type(cfg, kpi.column) for kpi in cfg.kpis):
        return {}
    with connect(url) as conn, query_errors(cfg.endpoint_id, "description of the source"):
        return describe_source(conn, cfg.source)


def with_kpi_columns(cfg: EndpointConfig, columns: list[str], types: dict[str, str]) -> list[str]:
    """`columns` and the source's `kpi_only_columns`, read with them in one query."""
    return [*columns, *(c for c in kpi_only_columns(cfg) if c in types and c not in columns)]


def read_frame(
    url: str, cfg: EndpointConfig, profile: ReferenceProfile | None, start: datetime, end: datetime,
    columns: list[str], stage: StageTimer,
) -> tuple[pd.DataFrame, BadRowReport, dict[str, str]]:
    """The window's `columns` (and KPI-only ones) as a normalised frame, its bad-row report and the KPI types."""
    with stage("extract"):
        types = kpi_types(url, cfg)
        raw = read_window(url, cfg, start, end, with_kpi_columns(cfg, columns, types))
    with stage("normalise"):
        df, bad = normalise_frame(raw, cfg, categorical_prediction=categorical_prediction(profile))
    return df, bad, types


def compute_in_memory(
    url: str, cfg: EndpointConfig, profile: ReferenceProfile | None, start: datetime, end: datetime,
    now: datetime, stage: StageTimer,
) -> WindowResults:
    df, bad, types = read_frame(url, cfg, profile, start, end, cfg.source.columns(), stage)
    if df.empty:
        return WindowResults(bad=bad)
    domain = (lambda: window_domain(url, cfg, profile, start, end)) if domain_wanted(profile, cfg) else None
    return frame_results(df, cfg, profile, start, end, now, stage, bad, types, domain=domain)


def frame_results(
    df: pd.DataFrame,
    cfg: EndpointConfig,
    profile: ReferenceProfile | None,
    start: datetime,
    end: datetime,
    now: datetime,
    stage: StageTimer,
    bad: BadRowReport,
    types: dict[str, str],
    *,
    quality: QualityOutcome | None = None,
    summaries: Mapping[str, ColumnSummary] | None = None,
    domain: Callable[[], DomainResult] | None = None,
    multivariate: Callable[[], WindowError | None] | None = None,
    segment_counts: Callable[[], list[SegmentCounts]] | None = None,
) -> WindowResults:
    """Every check and summary of the window's frame.

    `quality`: the outcome already known (feature groups), else the suite runs on the frame.
    `summaries`: columns already summarised elsewhere (feature groups); the frame's own drift columns
    are summarised here. `domain`: the domain classifier's job, run on the drift thread.
    `multivariate`: the reconstruction error from elsewhere (feature groups: in SQL), else from the frame.
    `segment_counts`: the segments' counts from elsewhere (feature groups: in SQL), else from the frame.
    """
    # columns read for KPIs alone leave the frame the checks, drift and user applications see
    kpi_only = pd.DataFrame({c: df.pop(c) for c in kpi_only_columns(cfg) if c in df}, index=df.index)
    drift_wanted = cfg.drift.enabled and profile is not None
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlmon-drift") as pool:
        # Drift (and the segments' counts, on the second worker) is NumPy work that releases the GIL; run it
        # beside Great Expectations (mostly Python) and keep it only if the quality policy lets drift through.
        pending = (pool.submit(_drift, df, profile, cfg, stage, summaries, domain, multivariate)
                   if drift_wanted else None)
        counting = segment_counts or (lambda: frame_segment_counts(df, profile, cfg))  # type: ignore[arg-type]
        by_segment = pool.submit(_timed, stage, "segments", counting) if segments_wanted(profile, cfg) else None
        with stage("operational"):
            operational = tuple(bucket_metrics(df, cfg, start, end))
        if cfg.quality.enabled and quality is None:
            with stage("quality"):
                ids = bad.repeated_ids  # the bad-row count already hashed the request ids
                repeated = None if ids is None else {cfg.source.request_id_column: ids}
                quality = run_quality(df, cfg, profile, start, end, now=now, repeated=repeated)
        drift_status = drift_not_computed(cfg, profile, quality.state if quality else None)
        drift = None
        segments: tuple[SegmentResult, ...] = ()
        if drift_status is None and pending is not None:
            drift = pending.result()
            drift_status = drift.status
            if by_segment is not None:
                segments = judge_segments(by_segment.result(), profile, cfg)  # type: ignore[arg-type]
        else:
            for job in (pending, by_segment):
                if job is not None:
                    job.cancel()
    with stage("applications"):
        apps = compute_kpis(df, cfg, types, kpi_only)
        if drift is not None:
            apps += drift_app_results(drift, cfg.drift.feature.metric)
            apps += segment_app_results(cfg, profile, segments)
        apps += run_user_applications(df, profile, cfg)
    ts = df[cfg.source.timestamp_column]
    return WindowResults(bad=bad, first_ts=ts.min().to_pydatetime(), last_ts=ts.max().to_pydatetime(),
                         operational=operational, quality=quality, drift=drift, drift_status=drift_status,
                         apps=tuple(apps), segments=segments)


def _timed(stage: StageTimer, name: str, job: Callable[[], list[SegmentCounts]]) -> list[SegmentCounts]:
    with stage(name):
        return job()


def _drift(df: pd.DataFrame, profile: ReferenceProfile, cfg: EndpointConfig, stage: StageTimer,
           known: Mapping[str, ColumnSummary] | None, domain: Callable[[], DomainResult] | None,
           multivariate: Callable[[], WindowError | None] | None) -> DriftResult:
    """The frame's drift columns summarised, merged with the `known` summaries, compared with the profile."""
    with stage("drift"):
        model = multivariate_model(profile, cfg)
        if multivariate is not None:
            error = multivariate()
        else:
            error = frame_error(df, model) if model is not None else None
        verdict = domain() if domain is not None else None
        if known is None:
            return summarise_and_compute(df, profile, cfg, error, verdict)
        own = summarise_frame(df, profile, prediction_columns(profile, cfg), cfg.drift.band_k)
        return compute_drift({**known, **own}, profile, cfg, error, verdict)
