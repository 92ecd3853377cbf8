"""One window's estimated performance, the same in every compute mode (`performance.estimation`).

Every mode estimates from the same bounded sample of the window (`source.sample_window`), read while
the mode computes the rest: so the modes store the same estimate, the database mode's client memory
stays flat, and the memory mode does not wait on its frame being held twice. With `segments`, each
segment is estimated from its own rows of the sample.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np

from monitoring_lib.applications import AppResult
from monitoring_lib.compute.memory.segments import segment_positions
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.estimation.estimator import DEFAULT_METRIC, Estimate, estimate, row_losses
from monitoring_lib.source import sample_window


def estimation_wanted(profile: ReferenceProfile | None, cfg: EndpointConfig) -> bool:
    """Whether the endpoint estimates and its profile holds an estimator (a refit adds one)."""
    return cfg.performance.estimation.enabled and profile is not None and profile.estimator is not None


def window_estimate(url: str, cfg: EndpointConfig, profile: ReferenceProfile, start: datetime,
                    end: datetime) -> Estimate:
    est, settings = profile.estimator, cfg.performance.estimation
    assert est is not None
    segments = [seg for seg in profile.segments if seg.column in cfg.segments.columns]
    columns = [est.prediction] if est.method == "cbpe" else [*est.numeric, *est.categories, est.prediction]
    columns = list(dict.fromkeys([*columns, *(seg.column for seg in segments)]))
    frame = sample_window(url, cfg, start, end, columns, settings.sample_rows)
    metric = settings.metric or DEFAULT_METRIC[cfg.model.task]
    if metric not in est.metrics:  # the task changed since the fit: judge what the estimator has
        metric = est.metrics[0] if est.method == "dle" else DEFAULT_METRIC["classification"]

    losses = row_losses(est, frame) if est.method == "dle" else None  # the trees walk each sampled row once

    def judged(rows: np.ndarray | None) -> Estimate:
        part = frame if rows is None else frame.iloc[rows]
        own = None if losses is None else (losses if rows is None else {m: v[rows] for m, v in losses.items()})
        return estimate(est, part, metric, settings.possible_drop, settings.detected_drop, settings.band_k,
                        settings.min_rows, losses=own)

    per_segment = []
    for seg in segments:  # the segments the window's drift is cut into, each from its rows of the sample
        for value, rows in zip(seg.values, segment_positions(frame[seg.column], seg), strict=True):
            per_segment.append((f"{seg.column}={value}", judged(rows)))
    return replace(judged(None), segments=tuple(per_segment))


def estimate_app_result(result: Estimate) -> AppResult:
    """The verdict on the judged metric, as the Applications dashboard and the retraining policy read it."""
    judged = result.judged()
    return AppResult("performance", "estimated", "estimated_performance", result.status,
                     judged.value if judged else None, result.details())


def no_estimator_result(profile: ReferenceProfile) -> AppResult:
    """Estimation is on but the profile was fitted before it was (or from data without labels): say so."""
    return AppResult("performance", "estimated", "estimated_performance", "not_judged", None,
                     {"reason": f"reference profile v{profile.version} holds no performance estimator: refit it with"
                                " `mlmon fit-reference` from labelled training data"})
