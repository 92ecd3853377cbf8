"""Per-endpoint monitoring config: one YAML file per model endpoint, validated before any work starts.

Secrets never live here: database URLs and tokens come from the environment or Airflow Connections.

- `sections`: each section of a file (source, labels, schedule, drift, quality, Dynatrace, retraining, ...);
- `alerting`: notifiers and deadlines; `endpoint`: the whole file and its cross-section checks;
- `loading`: files and directories, secrets refused, problems as `file: field: reason`;
- `durations`: '30s'/'15m'/'1h'/'1d' in, '1 hour 30 minutes' out.
"""

from monitoring_lib.config.alerting import AlertingConfig, DeadlineConfig, NotifierConfig
from monitoring_lib.config.durations import Duration, format_duration, parse_duration
from monitoring_lib.config.endpoint import EndpointConfig
from monitoring_lib.config.loading import (
    DEFAULT_CONFIG_DIR,
    config_dir,
    config_files,
    get_endpoint,
    load_all,
    load_each,
    load_endpoint_config,
)
from monitoring_lib.config.sections import (
    DYNATRACE_LATEST_GRACE,
    ApplicationConfig,
    Band,
    DriftConfig,
    DynatraceConfig,
    ExtraExpectation,
    FeatureThresholds,
    KpiConfig,
    LabelConfig,
    ModelInfo,
    PerformanceConfig,
    QualityConfig,
    RetrainingConfig,
    RowCountBounds,
    ScaleOutConfig,
    ScheduleConfig,
    SourceConfig,
)

__all__ = [
    "DEFAULT_CONFIG_DIR", "DYNATRACE_LATEST_GRACE", "AlertingConfig", "ApplicationConfig", "Band", "DeadlineConfig",
    "DriftConfig", "Duration", "DynatraceConfig", "EndpointConfig", "ExtraExpectation", "FeatureThresholds",
    "KpiConfig", "LabelConfig", "ModelInfo", "NotifierConfig", "PerformanceConfig", "QualityConfig",
    "RetrainingConfig", "RowCountBounds", "ScaleOutConfig", "ScheduleConfig", "SourceConfig", "config_dir",
    "config_files", "format_duration", "get_endpoint", "load_all", "load_each", "load_endpoint_config",
    "parse_duration",
]
