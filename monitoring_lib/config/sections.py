"""The sections of an endpoint's config file (source, schedule, drift, quality, Dynatrace, ...), each validated
on its own; checks across sections live on `EndpointConfig`.

One file past 400 lines on purpose: it is two dozen small models of a few fields each, read top to bottom as
the reference of every setting and its default; split, the defaults would be scattered over as many files.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitoring_lib.config.durations import Duration
from monitoring_lib.drift.registry import METRICS

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ModelInfo(_Frozen):
    name: str
    version: str = "1"
    model_class: str = Field("", alias="class")
    function_uri: str = ""
    task: Literal["regression", "classification"] = "regression"

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, v: Any) -> str:
        return str(v)


class SourceConfig(_Frozen):
    """Where the inference log lives. `table` may be schema-qualified; `sql` is a SELECT used as a view."""

    table: str | None = None
    sql: str | None = None
    timestamp_column: str = "timestamp"
    request_id_column: str = "request_id"
    numeric_features: tuple[str, ...] = ()
    categorical_features: tuple[str, ...] = ()
    prediction_column: str = "prediction"
    latency_column: str | None = "latency_ms"
    error_column: str | None = "error"
    # the model version that served each row, when the log has it: a window belongs to its most frequent
    # value (else to the version the promotion history says served it, `results.endpoints.window_version`)
    model_version_column: str | None = None

    @model_validator(mode="after")
    def _one_of_table_or_sql(self) -> SourceConfig:
        if bool(self.table) == bool(self.sql):
            raise ValueError("give exactly one of 'table' or 'sql'")
        if not self.numeric_features and not self.categorical_features:
            raise ValueError("list at least one numeric or categorical feature")
        overlap = set(self.numeric_features) & set(self.categorical_features)
        if overlap:
            raise ValueError(f"features listed as both numeric and categorical: {sorted(overlap)}")
        if self.model_version_column and self.model_version_column in (
                self.timestamp_column, self.request_id_column, self.prediction_column, *self.features):
            raise ValueError(f"model_version_column: '{self.model_version_column}' is already the timestamp, request"
                             " id, prediction or a feature; name the column that logs the serving model's version")
        return self

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric_features + self.categorical_features

    def columns(self) -> list[str]:
        """Every source column the monitoring reads, in a stable order, without duplicates."""
        cols = [self.timestamp_column, self.request_id_column, *self.features, self.prediction_column]
        cols += [c for c in (self.latency_column, self.error_column) if c]
        return list(dict.fromkeys(cols))


class LabelConfig(_Frozen):
    """Ground truth that lands later, joined to predictions by request id."""

    table: str
    join_key: str = "request_id"
    label_column: str = "label"
    timestamp_column: str | None = None
    lookback: Duration = timedelta(hours=24)  # how far back late labels still recompute performance
    # labels a window needs before its performance is pushed to Dynatrace as the current value
    min_count: int = Field(30, ge=1)


class ScheduleConfig(_Frozen):
    interval: Duration = timedelta(hours=1)
    start_date: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    catchup: bool = False
    grace_period: Duration = timedelta(minutes=5)

    @field_validator("start_date")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v if v.tzinfo else v.replace(tzinfo=UTC)

    @field_validator("interval")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("interval must be positive")
        return v


class Band(_Frozen):
    possible: float
    detected: float

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.detected < self.possible:
            raise ValueError("'detected' must be >= 'possible'")
        return self


class FeatureThresholds(_Frozen):
    """Per-feature tiers on one metric; `calibrated` learns them from reference chunks instead."""

    metric: str = "hellinger"
    mode: Literal["constant", "calibrated"] = "constant"
    # None: the metric's registered default for that tier (hellinger 0.1 / 0.15)
    possible: float | None = None
    detected: float | None = None
    calibration_k: float = 3.0
    calibration_chunks: int = Field(10, ge=2)
    overrides: dict[str, Band] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> FeatureThresholds:
        """Checked after the metric's defaults fill a tier left unset: `possible: 0.3` alone under hellinger's
        default `detected` of 0.15 would make every value above 0.15 `drift_detected` and none `possible`."""

        spec = METRICS.get(self.metric)
        if spec is None or (self.possible is None and self.detected is None):
            return self
        possible = spec.possible if self.possible is None else self.possible
        detected = spec.detected if self.detected is None else self.detected
        if (detected < possible) if spec.higher_is_worse else (detected > possible):
            def said(tier: str, value: float, given: float | None) -> str:
                return f"'{tier}' {value}" if given is not None else f"{self.metric}'s default '{tier}' {value}"
            relation = ">=" if spec.higher_is_worse else "<="
            raise ValueError(
                f"'detected' must be {relation} 'possible' ({spec.name} {'rises' if spec.higher_is_worse else 'falls'}"
                f" with drift): {said('possible', possible, self.possible)} against"
                f" {said('detected', detected, self.detected)}; set both")
        return self

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:

        if v not in METRICS:
            raise ValueError(f"unknown metric '{v}'; known: {sorted(METRICS)}")
        return v


class MultivariateConfig(_Frozen):
    """Drift in how the numeric features move together: PCA reconstruction error against reference chunks.

    `features`: the numeric features it covers (empty: every numeric feature). `variance_share`: the
    principal components kept explain at least this share of the reference's standardised variance.
    `possible_k` / `detected_k`: a window's mean error this many chunk standard deviations from the
    reference chunks' mean is `possible_drift` / `drift_detected`.
    """

    enabled: bool = False
    features: tuple[str, ...] = ()
    variance_share: float = Field(0.9, gt=0, lt=1)
    possible_k: float = Field(3.0, gt=0)
    detected_k: float = Field(4.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> MultivariateConfig:
        if self.detected_k < self.possible_k:
            raise ValueError(f"'detected_k' ({self.detected_k}) must be >= 'possible_k' ({self.possible_k})")
        return self


class DomainClassifierConfig(_Frozen):
    """Drift as separability: the cross-validated ROC AUC of a classifier telling a bounded sample of the
    window's rows from one of the reference's (0.5: indistinguishable). `sample_rows` per side; a window
    with fewer than `min_rows` rows is not judged (the AUC's noise grows as the sample shrinks)."""

    enabled: bool = False
    sample_rows: int = Field(5000, ge=100, le=100_000)
    min_rows: int = Field(500, ge=50)
    possible: float = Field(0.55, gt=0.5, le=1)
    detected: float = Field(0.6, gt=0.5, le=1)
    folds: int = Field(3, ge=2, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> DomainClassifierConfig:
        if self.detected < self.possible:
            raise ValueError(f"'detected' ({self.detected}) must be >= 'possible' ({self.possible})")
        return self


class DriftConfig(_Frozen):
    enabled: bool = True
    metrics: tuple[str, ...] = ("tvd", "hellinger", "kld", "psi", "jensen_shannon", "wasserstein", "ks", "chi_square")
    bins: int = Field(20, ge=2, le=1000)
    general: Band = Band(possible=0.5, detected=0.7)
    feature: FeatureThresholds = FeatureThresholds()
    endpoint_rule: Literal["worst_feature", "weighted", "worst_or_weighted"] = "worst_feature"
    feature_importance: dict[str, float] = Field(default_factory=dict)
    band_k: float = 3.0
    anomaly_window: int = Field(24, ge=3)
    anomaly_z: float = 3.0
    multivariate: MultivariateConfig = MultivariateConfig()
    domain_classifier: DomainClassifierConfig = DomainClassifierConfig()

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: tuple[str, ...]) -> tuple[str, ...]:

        unknown = [m for m in v if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
        return v


def _crossed(low: Any, high: Any) -> bool:
    """Both bounds given, comparable (numbers, or instants) and the lower one above the upper one."""
    numbers = all(isinstance(b, int | float) and not isinstance(b, bool) for b in (low, high))
    instants = all(isinstance(b, datetime) for b in (low, high))
    try:
        return (numbers or instants) and low > high
    except TypeError:  # a naive and an aware instant: left to the check itself
        return False


class ExtraExpectation(_Frozen):
    type: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    severity: Literal["critical", "warning"] = "warning"

    @model_validator(mode="after")
    def _bounds_in_order(self) -> ExtraExpectation:
        # no value lies between crossed bounds: a typo, which the modes would otherwise report differently
        low, high = self.kwargs.get("min_value"), self.kwargs.get("max_value")
        if _crossed(low, high):
            raise ValueError(f"kwargs.min_value ({low}) is above kwargs.max_value ({high})")
        return self


class RowCountBounds(_Frozen):
    min: int = Field(1, ge=0)
    max: int | None = None

    @model_validator(mode="after")
    def _bounds_in_order(self) -> RowCountBounds:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class QualityConfig(_Frozen):
    enabled: bool = True
    on_failure: Literal["compute_drift", "skip_drift", "fail_task"] = "skip_drift"
    range_tolerance: float = Field(0.1, ge=0)
    max_unseen_share: float = Field(0.05, ge=0, le=1)
    row_count: RowCountBounds = RowCountBounds()
    future_tolerance: Duration = timedelta(minutes=10)
    extra_expectations: tuple[ExtraExpectation, ...] = ()
    # The built-in check types are answered with vectorised pandas (the results GX gives, ~5x faster);
    # false sends every check through Great Expectations.
    native_checks: bool = True


# the push follows the grace period and the computation; Dynatrace refuses points older than an hour
DYNATRACE_LATEST_GRACE = timedelta(minutes=40)


class DynatraceConfig(_Frozen):
    enabled: bool = True
    prefix: str = "mlmon"
    metrics: tuple[str, ...] = (
        "general_drift",
        "tvd_mean",
        "hellinger_mean",
        "kld_mean",
        "drift_status",
        "feature_drift",
        "failed_expectations",
        "predictions",
        "predictions_per_second",
        "latency_avg",
        "latency_p95",
        "errors",
        "prediction_mean",
        "model_performance",
        "estimated_performance",
        "estimated_performance_status",
        "segment_drift_status",
        "reconstruction_error",
        "domain_classifier_auc",
    )
    features: tuple[str, ...] = ()


class RetrainingConfig(_Frozen):
    enabled: bool = True
    target_dag: str = "model_retraining"
    lookback_intervals: int = Field(3, ge=1)
    min_detected: int = Field(2, ge=1)
    cooldown: Duration = timedelta(hours=24)
    daily_cap: int = Field(1, ge=0)
    training_callable: str | None = None
    training_window: Duration = timedelta(days=7)
    holdout_fraction: float = Field(0.25, gt=0, lt=1)
    # a window whose estimated performance dropped (`performance.estimation`, drop_detected) counts as drift does
    performance_drop: bool = False
    # a window where a segment (`segments`) reached drift_detected counts as drift does, naming the segment
    segment_drift: bool = False

    @field_validator("training_callable")
    @classmethod
    def _callable(cls, v: str | None) -> str | None:
        if v is not None and not _CALLABLE.match(v):
            raise ValueError(f"'{v}' is not of the form module.path:function")
        return v


class ApplicationConfig(_Frozen):
    name: str
    callable: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("callable")
    @classmethod
    def _callable(cls, v: str) -> str:
        if not _CALLABLE.match(v):
            raise ValueError(f"'{v}' is not of the form module.path:function")
        return v


class KpiConfig(_Frozen):
    name: str
    column: str
    agg: Literal["sum", "mean", "min", "max", "count"] = "sum"


class ScaleOutConfig(_Frozen):
    """How one interval of a wide model is spread over Airflow workers (dynamic task mapping).

    With `feature_group_size`, each mapped task reads only its group's feature columns, summarises
    them and runs their quality checks; the interval task merges the groups (disjoint columns, so
    exactly) and counts distinct bad and failed rows in PostgreSQL.
    """

    feature_group_size: int | None = Field(None, ge=1)


ESTIMATED_METRICS = {"classification": ("accuracy", "precision", "recall", "f1", "roc_auc"),
                     "regression": ("mae", "rmse")}


class EstimationConfig(_Frozen):
    """Performance estimated from each window's predictions before its labels land (README, "Estimated
    performance"): CBPE for a binary classifier's scores, direct loss estimation for a regressor.

    Fitted with the reference from labelled training data. `metric` (default `roc_auc` for a classifier,
    `mae` for a regressor) is judged: a relative fall from its reference value (a rise for an error) of
    `possible_drop` / `detected_drop`, beyond the sampling band, is a `possible_drop` / `drop_detected`.
    A window is estimated from at most `sample_rows` of its rows; fewer than `min_rows` are not judged.
    """

    enabled: bool = False
    metric: str | None = None
    possible_drop: float = Field(0.05, gt=0, lt=1)
    detected_drop: float = Field(0.1, gt=0, lt=1)
    band_k: float = Field(3.0, gt=0)
    sample_rows: int = Field(20_000, ge=100, le=1_000_000)
    min_rows: int = Field(100, ge=10)

    @model_validator(mode="after")
    def _ordered(self) -> EstimationConfig:
        if self.detected_drop < self.possible_drop:
            raise ValueError(f"'detected_drop' ({self.detected_drop}) must be >= 'possible_drop'"
                             f" ({self.possible_drop})")
        known = {m for ms in ESTIMATED_METRICS.values() for m in ms}
        if self.metric is not None and self.metric not in known:
            raise ValueError(f"metric '{self.metric}' is not estimated; choose one of {sorted(known)}")
        return self


class SegmentsConfig(_Frozen):
    """Each window also summarised per value of categorical `columns` (README, "Per-segment monitoring"):
    drift against the reference's own segment, quality and operational counts, realised and estimated
    performance. A column keeps the `top_k` most frequent reference values (or its `values`), the rest
    pooled as `other`; a segment with fewer than `min_rows` rows in the window or the reference is
    `too_small`, not judged."""

    columns: tuple[str, ...] = ()
    values: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    top_k: int = Field(10, ge=1, le=50)
    # at 1,000 rows a side, the Hellinger distance over 20 bins between two samples of one distribution is
    # about 0.07, under the default thresholds; at 300 it is about 0.12: sampling noise that reads as drift
    min_rows: int = Field(1000, ge=10)

    @model_validator(mode="after")
    def _values_named(self) -> SegmentsConfig:
        stray = sorted(set(self.values) - set(self.columns))
        if stray:
            raise ValueError(f"values: {stray} not among the segment columns {list(self.columns)}")
        for column, values in self.values.items():
            if "other" in values:
                raise ValueError(f"values.{column}: 'other' is the pool of every value not listed; do not list it")
            if len(values) > 50:
                raise ValueError(f"values.{column}: {len(values)} values; at most 50 segments a column")
        return self


class PerformanceConfig(_Frozen):
    bucket_column: str | None = None
    buckets: tuple[float, ...] = ()
    estimation: EstimationConfig = EstimationConfig()
