"""The `alerting` section: who is told when a monitoring run fails or overruns, through Airflow notifiers."""

from __future__ import annotations

import importlib
import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from monitoring_lib.config.durations import Duration
from monitoring_lib.config.sections import _Frozen

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
