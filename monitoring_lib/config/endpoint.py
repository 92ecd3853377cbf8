"""One endpoint's whole config, and the checks that span its sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from monitoring_lib.config.alerting import AlertingConfig
from monitoring_lib.config.durations import format_duration
from monitoring_lib.config.sections import (
    DYNATRACE_LATEST_GRACE,
    ESTIMATED_METRICS,
    ApplicationConfig,
    DriftConfig,
    DynatraceConfig,
    KpiConfig,
    LabelConfig,
    ModelInfo,
    PerformanceConfig,
    QualityConfig,
    RetrainingConfig,
    ScaleOutConfig,
    ScheduleConfig,
    SegmentsConfig,
    SourceConfig,
    _Frozen,
)


class EndpointConfig(_Frozen):
    endpoint_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    project: str
    model: ModelInfo
    source: SourceConfig
    labels: LabelConfig | None = None
    schedule: ScheduleConfig = ScheduleConfig()
    # memory: one Arrow read per window, checks on the DataFrame. database: aggregate queries only, for
    # windows too large to hold (monitoring_lib.compute.database).
    compute: Literal["memory", "database"] = "memory"
    drift: DriftConfig = DriftConfig()
    quality: QualityConfig = QualityConfig()
    dynatrace: DynatraceConfig = DynatraceConfig()
    retraining: RetrainingConfig = RetrainingConfig()
    applications: tuple[ApplicationConfig, ...] = ()
    kpis: tuple[KpiConfig, ...] = ()
    scale_out: ScaleOutConfig = ScaleOutConfig()
    performance: PerformanceConfig = PerformanceConfig()
    segments: SegmentsConfig = SegmentsConfig()
    alerting: AlertingConfig = AlertingConfig()
    source_file: str = Field("", exclude=True)

    def feature_groups(self) -> list[list[str]]:
        """The features cut into `scale_out.feature_group_size` groups, in config order; empty when not split.

        Here rather than in `compute.groups` so the DAG file can size its mapped task without heavy imports.
        """
        size = self.scale_out.feature_group_size
        features = list(self.source.features)
        return [features[i:i + size] for i in range(0, len(features), size)] if size else []

    @model_validator(mode="after")
    def _cross_checks(self) -> EndpointConfig:
        features = set(self.source.features)
        for section, names in (
            ("drift.feature_importance", self.drift.feature_importance),
            ("drift.feature.overrides", self.drift.feature.overrides),
            ("dynatrace.features", self.dynatrace.features),
        ):
            missing = sorted(set(names) - features)
            if missing:
                raise ValueError(f"{section}: not a configured feature: {missing}")
        multivariate = self.drift.multivariate
        if multivariate.enabled:
            covered = multivariate.features or self.source.numeric_features
            not_numeric = sorted(set(covered) - set(self.source.numeric_features))
            if not_numeric:
                raise ValueError(f"drift.multivariate.features: not a configured numeric feature: {not_numeric}")
            if len(set(covered)) < 2:
                raise ValueError("drift.multivariate: needs at least two numeric features, how features move"
                                 f" together is not defined for {sorted(set(covered))}")
        not_categorical = sorted(set(self.segments.columns) - set(self.source.categorical_features))
        if not_categorical:
            raise ValueError(f"segments.columns: not a configured categorical feature: {not_categorical}"
                             " (a segment is a value of a categorical column the model already reads)")
        if self.retraining.segment_drift and not self.segments.columns:
            raise ValueError("retraining.segment_drift: needs `segments.columns`, the segments whose drift counts")
        estimation = self.performance.estimation
        if self.retraining.performance_drop and not estimation.enabled:
            raise ValueError("retraining.performance_drop: needs `performance.estimation.enabled`, the estimate whose"
                             " drop counts")
        if estimation.enabled:
            allowed = ESTIMATED_METRICS[self.model.task]
            if estimation.metric is not None and estimation.metric not in allowed:
                raise ValueError(f"performance.estimation.metric: '{estimation.metric}' is not estimated for a"
                                 f" {self.model.task} model; choose one of {list(allowed)}")
            if self.labels is None:
                raise ValueError("performance.estimation: needs `labels` (the label column of the training data"
                                 " it is fitted on, and the realised metrics it is compared with)")
        if self.compute == "database" and self.applications:
            raise ValueError("applications: user applications receive the interval's rows, which compute: database "
                             "never reads; use compute: memory for this endpoint or remove the applications")
        if self.scale_out.feature_group_size:
            if self.compute == "database":
                raise ValueError("scale_out.feature_group_size: feature groups split the in-memory work over workers; "
                                 "compute: database already leaves every row in PostgreSQL, remove one of them")
            if self.applications:
                raise ValueError("scale_out.feature_group_size: user applications receive the whole interval's "
                                 "rows, which no single feature-group task holds; remove the applications or "
                                 "the feature groups")
        if self.dynatrace.enabled and self.schedule.grace_period > DYNATRACE_LATEST_GRACE:
            raise ValueError(
                f"schedule.grace_period: {format_duration(self.schedule.grace_period)} is too long while"
                " dynatrace.enabled is true; Dynatrace accepts data points at most one hour old, lines carry the"
                " window end, and the push follows the grace period: keep it at most"
                f" {format_duration(DYNATRACE_LATEST_GRACE)} or disable dynatrace")
        return self
