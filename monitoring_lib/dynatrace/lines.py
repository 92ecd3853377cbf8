"""The lines pushed for one interval, built from the summary rows already written for that window.

Reading the stored rows (not the in-memory results) means the push can never disagree with what
Grafana shows, and a re-run of the interval rebuilds exactly the same series.

`METRIC_TABLE` is the one list of what is pushed; dashboards and alerts in `dashboards/dynatrace`
may only reference these keys and dimensions (a test checks it).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg

from monitoring_lib.config import EndpointConfig
from monitoring_lib.dynatrace.protocol import (
    MetricLine,
    format_count_delta,
    format_gauge,
    key_section,
    metric_key,
)
from monitoring_lib.results.performance import latest_labelled_window, performance_values
from monitoring_lib.results.window import (
    stored_app_status,
    stored_app_statuses,
    stored_drift_summary,
    stored_feature_drift,
    stored_operational,
    stored_quality_counts,
)

log = logging.getLogger(__name__)

BASE_DIMENSIONS: tuple[str, ...] = ("endpoint_id", "project", "model", "model_version")
FEATURE_DIMENSIONS: tuple[str, ...] = (*BASE_DIMENSIONS, "feature")
SEGMENT_DIMENSIONS: tuple[str, ...] = (*BASE_DIMENSIONS, "segment")

# drift_status text -> numeric level for alerting; 'skipped' and unknown statuses are not pushed.
DRIFT_STATUS_LEVELS: dict[str, int] = {"no_drift": 0, "possible_drift": 1, "drift_detected": 2}


@dataclass(frozen=True)
class MetricDef:
    """One pushed metric: config name, key suffix after the prefix, payload type and where it comes from.

    A `key` containing `{metric}` is a family: one series per row name (model performance metrics).
    """

    name: str
    key: str
    payload: Literal["gauge", "count"]
    dimensions: tuple[str, ...]
    source: str


METRIC_TABLE: tuple[MetricDef, ...] = (
    MetricDef("general_drift", "drift.general", "gauge", BASE_DIMENSIONS, "drift_summary.general_drift"),
    MetricDef("tvd_mean", "drift.tvd_mean", "gauge", BASE_DIMENSIONS, "drift_summary.tvd_mean"),
    MetricDef("hellinger_mean", "drift.hellinger_mean", "gauge", BASE_DIMENSIONS, "drift_summary.hellinger_mean"),
    MetricDef("kld_mean", "drift.kld_mean", "gauge", BASE_DIMENSIONS, "drift_summary.kld_mean"),
    MetricDef("drift_status", "drift.status", "gauge", BASE_DIMENSIONS,
              "drift_summary.drift_status: 0 no_drift, 1 possible_drift, 2 drift_detected"),
    MetricDef("feature_drift", "feature.drift", "gauge", FEATURE_DIMENSIONS,
              "feature_drift.value for drift.feature.metric, features listed in dynatrace.features"),
    MetricDef("failed_expectations", "quality.failed_expectations", "gauge", BASE_DIMENSIONS,
              "data_quality_results: number of rows with success = false"),
    MetricDef("predictions", "predictions.count", "count", BASE_DIMENSIONS,
              "operational_metrics.predictions summed over the window's buckets"),
    MetricDef("predictions_per_second", "predictions.per_second", "gauge", BASE_DIMENSIONS,
              "predictions summed over the window / window length in seconds"),
    MetricDef("latency_avg", "latency.avg", "gauge", BASE_DIMENSIONS,
              "operational_metrics.latency_avg averaged over buckets, weighted by bucket predictions"),
    MetricDef("latency_p95", "latency.p95", "gauge", BASE_DIMENSIONS,
              "operational_metrics.latency_p95: maximum over buckets (an upper bound of the window's p95)"),
    MetricDef("errors", "errors.count", "count", BASE_DIMENSIONS,
              "operational_metrics.errors summed over the window's buckets"),
    MetricDef("prediction_mean", "prediction.mean", "gauge", BASE_DIMENSIONS, "drift_summary.prediction_mean"),
    MetricDef("reconstruction_error", "drift.multivariate.reconstruction_error", "gauge", BASE_DIMENSIONS,
              "drift_summary.reconstruction_error: mean PCA reconstruction error, with drift.multivariate"),
    MetricDef("domain_classifier_auc", "drift.domain_classifier.auc", "gauge", BASE_DIMENSIONS,
              "drift_summary.domain_classifier_auc: the classifier's ROC AUC, with drift.domain_classifier"),
    MetricDef("estimated_performance", "estimated_performance.{metric}", "gauge", BASE_DIMENSIONS,
              "model_performance rows with estimated true of segment 'all' of the window, one key per metric"
              " (CBPE or direct loss estimation, with performance.estimation)"),
    MetricDef("estimated_performance_status", "estimated_performance.status", "gauge", BASE_DIMENSIONS,
              "app_results performance/estimated status: 0 no_drop, 1 possible_drop, 2 drop_detected"),
    MetricDef("segment_drift_status", "segment.drift.status", "gauge", SEGMENT_DIMENSIONS,
              "app_results segment rows (segments): 0 no_drift, 1 possible_drift, 2 drift_detected per segment"
              " 'column=value'; too_small segments are not pushed"),
    MetricDef("model_performance", "performance.{metric}", "gauge", BASE_DIMENSIONS,
              "model_performance rows of segment 'all' of the latest labelled window, one key per metric name,"
              " stamped with the end of the run's window (labels land after the window's own lines are sent)"),
)
METRICS_BY_NAME: dict[str, MetricDef] = {m.name: m for m in METRIC_TABLE}

# the estimated-performance verdict -> numeric level; 'not_judged' is not pushed
DROP_STATUS_LEVELS: dict[str, int] = {"no_drop": 0, "possible_drop": 1, "drop_detected": 2}

# drift_summary rows pushed as they are: config name == drift_summary.metric
_DRIFT_SUMMARY_METRICS = ("general_drift", "tvd_mean", "hellinger_mean", "kld_mean", "prediction_mean",
                          "reconstruction_error", "domain_classifier_auc")


@dataclass(frozen=True)
class LineBatch:
    """Lines for one interval and how many values were skipped because they were NaN or infinite."""

    lines: tuple[MetricLine, ...]
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.lines)


class _Builder:
    def __init__(self, cfg: EndpointConfig, model_version: str, window_end: datetime):
        self.prefix = cfg.dynatrace.prefix
        self.wanted = set(cfg.dynatrace.metrics)
        self.timestamp = window_end
        self.dims = {
            "endpoint_id": cfg.endpoint_id,
            "project": cfg.project,
            "model": cfg.model.name,
            "model_version": model_version,
        }
        self.lines: list[MetricLine] = []
        self.skipped = 0

    def add(self, name: str, value: float | None, *, metric: str = "", feature: str | None = None,
            segment: str | None = None) -> None:
        if name not in self.wanted or value is None:
            return
        spec = METRICS_BY_NAME[name]
        try:
            key = metric_key(self.prefix, spec.key.format(metric=key_section(metric)) if metric else spec.key)
        except ValueError as exc:
            # a row name that cannot become a key must not stop the interval's other lines
            log.warning("not pushing %s %r: %s", name, metric, exc)
            self.skipped += 1
            return
        dims = {**self.dims, "feature": feature} if feature is not None else self.dims
        dims = {**dims, "segment": segment} if segment is not None else dims
        fmt = format_count_delta if spec.payload == "count" else format_gauge
        line = fmt(key, value, dims, self.timestamp)
        if line is None:
            self.skipped += 1
        else:
            self.lines.append(line)


def build_interval_lines(
    conn: psycopg.Connection,
    cfg: EndpointConfig,
    window_start: datetime,
    window_end: datetime,
    model_version: str,
) -> LineBatch:
    """Read the window's summary rows in the caller's transaction and format the configured metrics.

    Values that are NaN or infinite (and row names that cannot form a metric key) are counted in
    `skipped`, never sent. With `dynatrace.enabled: false` the batch is empty.
    """
    if not cfg.dynatrace.enabled:
        return LineBatch(())
    builder = _Builder(cfg, model_version, window_end)
    e = cfg.endpoint_id

    drift_rows = stored_drift_summary(conn, e, window_start, window_end)
    for metric, value, _status in drift_rows:
        if metric in _DRIFT_SUMMARY_METRICS:
            builder.add(metric, value)
    if drift_rows:
        builder.add("drift_status", DRIFT_STATUS_LEVELS.get(drift_rows[0][2]))

    if cfg.dynatrace.features:
        for feature, value in stored_feature_drift(conn, e, window_start, window_end, cfg.drift.feature.metric,
                                                   cfg.dynatrace.features):
            builder.add("feature_drift", value, feature=feature)

    total, failed = stored_quality_counts(conn, e, window_start, window_end)
    if total:
        builder.add("failed_expectations", failed)

    for metric, value in performance_values(conn, e, window_start, window_end, estimated=True):
        builder.add("estimated_performance", value, metric=metric)
    verdict = stored_app_status(conn, e, window_start, window_end, "performance", "estimated")
    builder.add("estimated_performance_status", DROP_STATUS_LEVELS.get(verdict or ""))

    for segment, status in stored_app_statuses(conn, e, window_start, window_end, "segment"):
        builder.add("segment_drift_status", DRIFT_STATUS_LEVELS.get(status), segment=segment)

    ops = stored_operational(conn, e, window_start, window_end)
    _add_operational(builder, ops, (window_end - window_start).total_seconds())

    return LineBatch(tuple(builder.lines), builder.skipped)


def performance_key_prefix(cfg: EndpointConfig) -> str:
    """Every performance series key starts with this: the outbox stages them apart from the interval's lines."""
    return metric_key(cfg.dynatrace.prefix, "performance") + "."


def build_performance_lines(
    conn: psycopg.Connection, cfg: EndpointConfig, run_end: datetime, since: datetime, model_version: str
) -> LineBatch:
    """The newest window's performance with `labels.min_count` labels (segment 'all'), stamped with the run's
    window end, and the count as `performance.labels`.

    A window's own lines leave before its labels land, and Dynatrace takes no point over an hour old, so
    each run re-sends the newest known performance as a current gauge: the series stays continuous and
    alertable. The model version dimension is the one that served the labelled window (`model_version`
    when no run of it is recorded).
    """
    if not cfg.dynatrace.enabled or "model_performance" not in cfg.dynatrace.metrics:
        return LineBatch(())
    # a window whose first few labels just landed would make the series flap: it needs labels.min_count
    latest = latest_labelled_window(conn, cfg.endpoint_id, run_end, since, cfg.labels.min_count if cfg.labels else 1)
    if latest is None:
        return LineBatch(())
    builder = _Builder(cfg, latest.model_version or model_version, run_end)
    builder.add("model_performance", latest.label_count, metric="labels")  # how many labels the values rest on
    for metric, value in performance_values(conn, cfg.endpoint_id, latest.window_start, latest.window_end):
        builder.add("model_performance", value, metric=metric)
    return LineBatch(tuple(builder.lines), builder.skipped)


def _add_operational(builder: _Builder, rows: Iterable[tuple[datetime, str, float | None]], seconds: float) -> None:
    """Aggregate 5-minute buckets into one value per window (see METRIC_TABLE for each rule)."""
    buckets: dict[datetime, dict[str, float]] = defaultdict(dict)
    for bucket, metric, value in rows:
        if value is not None:
            buckets[bucket][metric] = value
    if not buckets:
        return
    predictions = _sum(b.get("predictions") for b in buckets.values())
    errors = _sum(b.get("errors") for b in buckets.values())
    builder.add("predictions", predictions)
    builder.add("errors", errors)
    if predictions is not None and seconds > 0:
        builder.add("predictions_per_second", predictions / seconds)

    weighted = [(b["latency_avg"], b.get("predictions") or 0.0) for b in buckets.values() if "latency_avg" in b]
    weight = sum(w for _, w in weighted)
    if weighted and weight > 0:
        builder.add("latency_avg", sum(v * w for v, w in weighted) / weight)
    elif weighted:
        builder.add("latency_avg", sum(v for v, _ in weighted) / len(weighted))
    p95 = [b["latency_p95"] for b in buckets.values() if "latency_p95" in b]
    if p95:
        builder.add("latency_p95", math.nan if any(math.isnan(v) for v in p95) else max(p95))


def _sum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(sum(present)) if present else None
