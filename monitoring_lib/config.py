"""Per-endpoint monitoring config: one YAML file per model endpoint, validated before any work starts.

Secrets never live here: database URLs and tokens come from the environment or Airflow Connections.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monitoring_lib.drift.registry import METRICS
from monitoring_lib.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SECRET_KEYS = re.compile(r"(password|secret|token|api[_-]?key)", re.IGNORECASE)


def parse_duration(value: Any) -> timedelta:
    """Accept '1h', '15m', '30s', '1d' or a timedelta/number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"'{value}' is not a duration like 30s, 15m, 1h or 1d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


_PARTS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def format_duration(value: timedelta) -> str:
    """A duration as a person writes it, largest units first: '1 day', '1 hour 30 minutes', '45 seconds'.

    For every message a user reads; `str(timedelta)` gives `1:00:00` or `1 day, 0:00:00`.
    """
    if value < timedelta(0):
        return f"minus {format_duration(-value)}"
    if value < timedelta(seconds=1):
        return f"{value.total_seconds():g} seconds"
    left, parts = int(value.total_seconds()), []
    for name, size in _PARTS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    return " ".join(parts)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


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


class PerformanceConfig(_Frozen):
    bucket_column: str | None = None
    buckets: tuple[float, ...] = ()


_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def _overrides(cls: type, method: str) -> bool:
    """Whether a class defines `method` below Airflow's BaseNotifier (whose own versions raise)."""
    return any(method in vars(c) for c in cls.__mro__ if c.__name__ not in ("BaseNotifier", "object"))


class NotifierConfig(_Frozen):
    """An Airflow notifier class (any BaseNotifier subclass) by dotted path, and its constructor's kwargs.

    The class is imported when the config is validated, so a missing provider is a config error naming
    this field (the endpoint's DAG is left out and the config-check DAG shows why), not a broken DAG file.
    Secrets stay in Airflow Connections: pass a connection id, never a password or a webhook token.
    """

    notifier: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("notifier")
    @classmethod
    def _importable_notifier(cls, v: str) -> str:
        if not _DOTTED.match(v):
            raise ValueError(f"'{v}' is not a dotted path like airflow.providers.smtp.notifications.smtp.SmtpNotifier")
        module, name = v.rsplit(".", 1)
        try:
            found = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import '{v}' ({type(exc).__name__}: {exc}); is its provider installed?") from exc
        if not isinstance(found, type) or not (_overrides(found, "notify") or _overrides(found, "async_notify")):
            raise ValueError(f"'{v}' is not a notifier class (a BaseNotifier subclass implementing notify)")
        return v


class DeadlineConfig(_Frozen):
    """Alert when a window is not computed by its end + `schedule.grace_period` + `after`."""

    after: Duration
    on_miss: tuple[NotifierConfig, ...] = Field(min_length=1)
    # executor: the notifier's `notify` runs on the executor (LocalExecutor, Celery, ...);
    # triggerer: its `async_notify` runs in the triggerer
    run_in: Literal["executor", "triggerer"] = "executor"

    @field_validator("after")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("after must be positive")
        return v

    @model_validator(mode="after")
    def _runnable_where_configured(self) -> DeadlineConfig:
        method = "notify" if self.run_in == "executor" else "async_notify"
        for i, n in enumerate(self.on_miss):
            module, name = n.notifier.rsplit(".", 1)
            if not _overrides(getattr(importlib.import_module(module), name), method):
                raise ValueError(f"on_miss.{i}.notifier: '{n.notifier}' does not implement {method}, which "
                                 f"run_in: {self.run_in} calls; use run_in: "
                                 f"{'triggerer' if self.run_in == 'executor' else 'executor'}")
        return self


class AlertingConfig(_Frozen):
    """Who owns the endpoint's DAG, and who hears of a failed run or a window computed too late.

    Nothing notifies by default: `on_failure` and `deadline` are opt-in.
    """

    owner: str = Field("mlmon", min_length=1)
    on_failure: tuple[NotifierConfig, ...] = ()  # called by a task that failed after its last retry
    deadline: DeadlineConfig | None = None


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


def _reject_secrets(data: Any, path: str = "") -> list[str]:
    """Config is shared and committed: a key that looks like a secret is an error, not a warning."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if _SECRET_KEYS.search(str(key)):
                found.append(f"{where}: secrets do not belong in config; use an Airflow Connection or env var")
            found += _reject_secrets(value, where)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            found += _reject_secrets(item, f"{path}[{i}]")
    return found


def _format_errors(file: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        reason = err["msg"].removeprefix("Value error, ")
        problems.append(f"{file}: {field}: {reason}")
    return problems


def load_endpoint_config(path: str | Path) -> EndpointConfig:
    """Load and validate one file; every problem is reported as `file: field: reason`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{path}: (file): cannot read: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: (file): not valid YAML: {exc}".replace("\n", " ")]) from exc
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: (top level): expected a mapping of settings"])
    secrets = _reject_secrets(data)
    if secrets:
        raise ConfigError([f"{path}: {s}" for s in secrets])
    try:
        return EndpointConfig.model_validate({**data, "source_file": str(path)})
    except ValidationError as exc:
        raise ConfigError(_format_errors(str(path), exc)) from exc


def config_dir() -> Path:
    return Path(os.environ.get("MLMON_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def config_files(directory: str | Path | None = None) -> list[Path]:
    directory = Path(directory) if directory else config_dir()
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def _age_key(file: Path) -> tuple[int, str]:
    """Older first: modification time, then file name when two files share one."""
    return file.stat().st_mtime_ns, file.name


def load_each(directory: str | Path | None = None) -> tuple[dict[str, EndpointConfig], list[str]]:
    """Every valid config by endpoint id, and every problem found, so a user fixes them in one pass.

    An endpoint_id defined in several files keeps the config of the oldest file (modification time, ties
    broken by file name) and reports the others: a copied config whose endpoint_id was not changed is
    newer, so it never takes the running endpoint's DAG away. Parsing may not ask a database which file
    served the endpoint before, so the file's age stands for it.
    """
    directory = Path(directory) if directory else config_dir()
    if not directory.is_dir():
        return {}, [f"{directory}: (directory): config directory does not exist"]
    problems: list[str] = []
    by_id: dict[str, list[EndpointConfig]] = {}
    for file in config_files(directory):
        try:
            cfg = load_endpoint_config(file)
        except ConfigError as exc:
            problems += exc.problems
            continue
        by_id.setdefault(cfg.endpoint_id, []).append(cfg)
    configs: dict[str, EndpointConfig] = {}
    for endpoint_id, defined in by_id.items():
        kept, *others = sorted(defined, key=lambda c: _age_key(Path(c.source_file)))
        configs[endpoint_id] = kept
        problems += [f"{other.source_file}: endpoint_id: '{endpoint_id}' is already defined in the older file "
                     f"{kept.source_file}, which is kept; this file is not used until its endpoint_id is changed"
                     for other in others]
    return configs, problems


def load_all(directory: str | Path | None = None) -> dict[str, EndpointConfig]:
    """Load every file; any problem in any file fails the whole load, listing them all."""
    configs, problems = load_each(directory)
    if problems:
        raise ConfigError(problems)
    return configs


def get_endpoint(endpoint_id: str, directory: str | Path | None = None) -> EndpointConfig:
    """One endpoint's config; a broken file elsewhere in the directory does not stop this endpoint.

    When the endpoint is not found, the directory's problems are listed first: it may be in a broken file.
    """
    configs, problems = load_each(directory)
    if endpoint_id not in configs:
        known = ", ".join(sorted(configs)) or "none"
        raise ConfigError([*problems, f"{config_dir() if directory is None else directory}: endpoint_id: "
                                      f"no valid config for '{endpoint_id}' (valid: {known})"])
    if problems:
        log.warning("config files with problems, not used (run `mlmon validate-config`): %s", "; ".join(problems))
    return configs[endpoint_id]
