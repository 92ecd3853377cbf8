"""Feature groups as a compute mode: the core columns read here, the features' partials merged as values.

Each mapped task returns a `GroupPartial` (its features' summaries and checks, serialised for XCom);
this mode reads the columns no group holds, counts the window's distinct bad and failed rows in one
database snapshot (they span all columns) and hands the merged summaries and quality outcome to the
memory mode's `frame_results`. Groups that read another state of the window are handled by `_unmerged`.
Multivariate drift and the domain classifier need whole rows, which no task holds: the first is one
aggregate in SQL, the second classifies its bounded sample read in SQL, as in the other modes.
"""

from __future__ import annotations

import logging
from datetime import datetime

from monitoring_lib.compute.database.bad_rows import bad_rows_in_database
from monitoring_lib.compute.database.multivariate import error_in_database
from monitoring_lib.compute.database.segments import segments_in_database
from monitoring_lib.compute.database.snapshot import window_snapshot
from monitoring_lib.compute.database.window import compute_in_database
from monitoring_lib.compute.domain import domain_wanted, window_domain
from monitoring_lib.compute.groups import partials
from monitoring_lib.compute.groups.partials import GroupPartial, core_columns, merged_quality, mismatch
from monitoring_lib.compute.memory.window import compute_in_memory, frame_results, read_frame
from monitoring_lib.compute.window_results import StageTimer, WindowResults, segments_wanted
from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.drift.engine import multivariate_model
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.sql_common import NUMBER_TYPES, query_errors

log = logging.getLogger(__name__)


def compute_with_groups(
    url: str, cfg: EndpointConfig, profile: ReferenceProfile | None, model_version: str, start: datetime,
    end: datetime, now: datetime, stage: StageTimer, groups: list[GroupPartial], retry: bool = True,
) -> WindowResults:
    df, _, types = read_frame(url, cfg, profile, start, end, core_columns(cfg), stage)
    quality = None
    with connect(url) as conn, window_snapshot(conn, cfg) as source_types:
        with stage("bad_rows"):
            bad = bad_rows_in_database(conn, cfg, source_types, start, end)
        why = mismatch(cfg, groups, len(df), model_version, profile)
        if why is None and bad.rows != len(df):
            why = f"the window had {len(df)} rows when read and {bad.rows} when counted"
        if why is None and len(df) and cfg.quality.enabled:
            with stage("quality"):
                quality = merged_quality(conn, cfg, profile, source_types, df, groups, start, end, now)
        error = None
        model = multivariate_model(profile, cfg)
        if why is None and len(df) and model is not None and all(
                source_types.get(f) in NUMBER_TYPES for f in model.features):
            # no task holds a row's every feature: the error is one aggregate over the window in SQL,
            # the formula the frame would give (`compute.database.multivariate`)
            with stage("drift"), query_errors(cfg.endpoint_id, "multivariate drift query"):
                error = error_in_database(conn, cfg, model, source_types, start, end)
        segment_counts = None
        if why is None and len(df) and segments_wanted(profile, cfg):
            # a segment's rows span every group's features: counted in SQL, as the database mode does
            with stage("segments"), query_errors(cfg.endpoint_id, "segment query"):
                segment_counts = segments_in_database(conn, cfg, profile, source_types, start, end)  # type: ignore[arg-type]
    if why is not None:
        return _unmerged(url, cfg, profile, model_version, start, end, now, stage, why, retry)
    if df.empty:
        return WindowResults(bad=bad)
    stage.timings["feature_groups"] = float(len(groups))
    merged = {name: summary for g in groups for name, summary in g.summaries.items()}
    domain = (lambda: window_domain(url, cfg, profile, start, end)) if domain_wanted(profile, cfg) else None
    return frame_results(df, cfg, profile, start, end, now, stage, bad, types, quality=quality, summaries=merged,
                         domain=domain, multivariate=lambda: error,
                         segment_counts=None if segment_counts is None else lambda: segment_counts)


def _unmerged(
    url: str, cfg: EndpointConfig, profile: ReferenceProfile | None, model_version: str, start: datetime,
    end: datetime, now: datetime, stage: StageTimer, why: str, retry: bool,
) -> WindowResults:
    """Groups that cannot be merged (a row landed between the reads, a group missing or on another reference).

    The groups are summarised again here, one at a time, so memory stays that of one group, and the
    same checks decide the verdict. Only if the window changes again meanwhile is it computed in one
    database snapshot, where an expectation with no SQL form cannot be evaluated.
    """
    where = f"{cfg.endpoint_id} [{start.isoformat()}, {end.isoformat()})"
    if not cfg.feature_groups():
        log.warning("%s: feature groups not merged (%s); computing the window as configured", where, why)
        compute = compute_in_database if cfg.compute == "database" else compute_in_memory
        return compute(url, cfg, profile, start, end, now, stage)
    if retry:
        log.warning("%s: feature groups not merged (%s); summarising them again here, one at a time", where, why)
        fresh = [partials.summarise_group(url, cfg, i, start, end, now=now) for i in range(len(cfg.feature_groups()))]
        stage.timings["feature_groups_resummarised"] = float(len(fresh))
        return compute_with_groups(url, cfg, profile, model_version, start, end, now, stage, fresh, retry=False)
    log.warning("%s: feature groups not merged again (%s); computing the window in one database snapshot", where, why)
    computed = compute_in_database(url, cfg, profile, start, end, now, stage)
    stage.timings["feature_groups_fallback"] = 1.0
    return computed
