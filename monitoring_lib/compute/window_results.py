"""What computing one window returns, whichever mode computed it: one frozen value the pipeline writes.

Each mode (`memory.window`, `database.window`, `groups.window`) reads the window and returns a
`WindowResults`; nothing is filled in afterwards but the performance estimate, which the runner computes
beside whichever mode ran (`compute.estimation`), and `results.window` stores it as it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from monitoring_lib.applications import AppResult
from monitoring_lib.compute.memory.bad_rows import BadRowReport
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.engine import DriftResult
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.drift.segments import SegmentResult
from monitoring_lib.estimation.estimator import Estimate
from monitoring_lib.quality.results import QualityOutcome

OperationalRow = tuple[datetime, str, float]  # (bucket_start, metric, value)


@dataclass(frozen=True)
class WindowResults:
    bad: BadRowReport
    first_ts: datetime | None = None  # the window's first and last prediction, for the endpoint's totals
    last_ts: datetime | None = None
    operational: tuple[OperationalRow, ...] = ()
    quality: QualityOutcome | None = None
    drift: DriftResult | None = None
    drift_status: str | None = None  # the drift verdict, or why drift was not computed
    apps: tuple[AppResult, ...] = ()  # KPIs, drift seen as an application, user applications
    estimate: Estimate | None = None  # performance estimated before labels land (`performance.estimation`)
    segments: tuple[SegmentResult, ...] = ()  # each segment against its own reference (`segments`)

    @property
    def rows(self) -> int:
        return self.bad.rows

    @property
    def dq_state(self) -> str | None:
        return self.quality.state if self.quality is not None else None

    @property
    def failed_critical(self) -> list[str]:
        if self.quality is None:
            return []
        return [r.expectation_id for r in self.quality.results if not r.success and r.severity == "critical"]


@dataclass
class StageTimer:
    """Seconds per stage of one window, stored with the run (`interval_runs.stage_timings`)."""

    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - began, 4)


def drift_not_computed(cfg: EndpointConfig, profile: ReferenceProfile | None, dq_state: str | None) -> str | None:
    """Why drift is not computed for this window, or None when it is."""
    if not cfg.drift.enabled:
        return "disabled"
    if profile is None:
        return "no_reference"
    if dq_state == "failed" and cfg.quality.on_failure != "compute_drift":
        return "skipped"
    return None


def drift_app_results(drift: DriftResult, feature_metric: str) -> list[AppResult]:
    """The built-in drift computation seen as one monitoring application, as the Applications dashboard expects."""
    results = [AppResult("drift", "general_drift", "data_drift", drift.status,
                         drift.summary.get("general_drift"), {"reasons": list(drift.reasons)})]
    for row in drift.feature_rows:
        if row["metric"] == feature_metric:
            # no status: the metric has no value (a feature without a finite value in the window)
            results.append(AppResult("drift", f"feature:{row['feature']}", "feature_drift", row["status"] or "unknown",
                                     row["value"], {"metric": row["metric"]}))
    mv = drift.multivariate
    if mv is not None and mv.value is not None:
        results.append(AppResult("drift", "multivariate", "multivariate_drift", mv.status or "unknown", mv.value,
                                 mv.details()))
    dc = drift.domain
    if dc is not None and dc.value is not None:
        results.append(AppResult("drift", "domain_classifier", "domain_classifier_drift", dc.status or "unknown",
                                 dc.value, dc.details()))
    return results


def segments_wanted(profile: ReferenceProfile | None, cfg: EndpointConfig) -> bool:
    """Whether the window's segments are summarised: configured, and drift computed against a profile."""
    return bool(cfg.segments.columns) and cfg.drift.enabled and profile is not None


def segment_app_results(cfg: EndpointConfig, profile: ReferenceProfile | None,
                        segments: tuple[SegmentResult, ...]) -> list[AppResult]:
    """One result per segment (application `segment`, metric `column=value`); a configured column the
    profile has no segments of says to refit."""
    out = [AppResult("segment", s.name, "segment_drift", s.status,
                     s.drift.summary.get("general_drift") if s.drift else None, s.details()) for s in segments]
    fitted = {seg.column for seg in profile.segments} if profile is not None else set()
    for column in cfg.segments.columns:
        if column not in fitted and profile is not None:
            out.append(AppResult("segment", column, "segment_drift", "not_computed", None,
                                 {"reason": f"reference profile v{profile.version} has no segments of '{column}':"
                                            " refit it with `mlmon fit-reference`"}))
    return out

