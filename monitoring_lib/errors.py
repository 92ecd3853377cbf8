"""One error hierarchy so callers (CLI, DAG tasks) can map failures to exit codes and retry policy."""

from __future__ import annotations


class MonitoringError(Exception):
    """Base class for every error the library raises on purpose."""


class ConfigError(MonitoringError):
    """A config file is missing, unreadable or invalid; the message names file, field and reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class WindowParamError(MonitoringError):
    """A run's window_start/window_end cannot be a window (not a date-time, or end before start): no retry fixes it."""


class DatabaseUnavailableError(MonitoringError):
    """The database cannot be reached: transient, worth a retry."""


class SourceError(MonitoringError):
    """The source table or its columns do not match the config."""


class ProfileNotFittedError(MonitoringError):
    """Drift or quality was asked for but no reference profile is stored for the model version."""


class QualityGateFailed(MonitoringError):
    """Critical data-quality expectations failed and config says to stop (no retry makes sense)."""


class DynatraceError(MonitoringError):
    """Dynatrace rejected the request for a reason a retry will not fix (token, scope, ingest off)."""


class DynatraceUnavailableError(DynatraceError):
    """Dynatrace did not accept the lines after all retries: transient, retry later.

    `settled` leading lines were answered before the outage (a batch split on 413 whose first part
    went through), `invalid` maps positions among them to Dynatrace's reasons: they must not be resent.
    """

    def __init__(self, message: str, *, settled: int = 0, invalid: dict[int, str] | None = None):
        super().__init__(message)
        self.settled = settled
        self.invalid = dict(invalid or {})
