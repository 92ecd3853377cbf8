"""Alerting glue for the monitoring DAGs: failure notifiers and the window deadline, from `alerting:` in config.

- `on_failure`: every task's on_failure_callback (default_args), so an operator hears when a task failed
  for good, after its last retry, never once per retry, with the task's own context (`ti`, `exception`).
  Tasks that only report another task's failure (`performance_failed`, trigger rule one_failed) stay quiet:
  a failed run gives one notification per failed task (per failed group of a mapped task), normally exactly
  one, naming it. (A DAG-level
  callback would also be one per run, but Airflow gives it only the last task to fail, here the reporter.)
- `deadline`: an Airflow Deadline Alert at the run's window end + `schedule.grace_period` + `deadline.after`.
  The scheduler checks it whatever the run is doing (a sensor stuck in reschedule, retries, a queue that never
  drains) and calls the notifiers when it passes before the run succeeded; a successful run in time removes
  it. A failed run keeps it: the window was not computed. Backfill runs of old windows get none.

Imported by the DAG file at parse time; it builds no notifier there (config validation has imported the classes),
only the callback objects Airflow serializes.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import DeadlineAlert, SyncCallback
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import BaseDeadlineReference

if TYPE_CHECKING:
    from monitoring_lib.config import EndpointConfig, NotifierConfig

log = logging.getLogger(__name__)


class WindowEndDeadline(BaseDeadlineReference):
    """A run's window end: its data interval's end (the window a scheduled run covers ends there).

    None for backfill runs, whose old windows were late before the runs existed: a deadline there would only
    page someone for every window of the backfill at once. Evaluated by the scheduler when a run is created.
    """

    required_kwargs = {"dag_id", "run_id"}

    def _evaluate_with(self, *, session: Any, **kwargs: Any) -> datetime | None:
        from airflow.models import DagRun
        from airflow.utils.types import DagRunType
        from sqlalchemy import select

        row = session.execute(select(DagRun.data_interval_end, DagRun.run_after, DagRun.run_type).where(
            DagRun.dag_id == kwargs["dag_id"], DagRun.run_id == kwargs["run_id"])).one_or_none()
        if row is None or row.run_type == DagRunType.BACKFILL_JOB:
            return None
        return row.data_interval_end or row.run_after


class MlmonAlertingPlugin(AirflowPlugin):
    """Registers the window-end deadline reference with the scheduler and the DAG processor."""

    name = "mlmon_alerting"
    deadline_references = [WindowEndDeadline]


class TaskFailureAlert:
    """Every task's on_failure_callback: calls each configured notifier when a task has failed for good.

    Airflow calls it after the last retry (a retry calls on_retry_callback, which stays unset), in the task's
    own process, with the full task context (`ti`, `exception`, `dag_run`). A task whose trigger rule is
    `one_failed` only reports that another task failed, which was notified already: it calls no one. So a run
    that fails gives one notification per task that failed (normally one), naming it.
    Notifiers are built per call from their class path and kwargs: a notifier renders its templates in place,
    so one instance must not serve two failures.
    """

    def __init__(self, notifiers: list[tuple[str, dict[str, Any]]]):
        self.notifiers = notifiers

    def __call__(self, context: dict[str, Any]) -> None:
        from airflow.sdk._shared.module_loading import import_string

        if str(getattr(context["task"], "trigger_rule", "")) in ("one_failed", "TriggerRule.ONE_FAILED"):
            return
        errors = []
        for path, kwargs in self.notifiers:
            try:
                import_string(path)(**kwargs)(context)
            except Exception as exc:  # noqa: BLE001 - every notifier gets its turn; the first error is raised
                log.exception("failure notifier %s failed", path)
                errors.append(exc)
        if errors:
            raise errors[0]


def _paths(notifiers: tuple[NotifierConfig, ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(n.notifier, dict(n.kwargs)) for n in notifiers]


def task_alerting(cfg: EndpointConfig) -> dict[str, Any]:
    """The DAG's default_args for alerting: the owner, and the failure notifiers when configured."""
    args: dict[str, Any] = {"owner": cfg.alerting.owner}
    if cfg.alerting.on_failure:
        args["on_failure_callback"] = TaskFailureAlert(_paths(cfg.alerting.on_failure))
    return args


def failure_callbacks(cfg: EndpointConfig, *own: Any) -> list[Any]:
    """A task's own failure callbacks and the endpoint's notifiers: a task-level callback replaces default_args'."""
    notifiers = task_alerting(cfg).get("on_failure_callback")
    return [*own, *([notifiers] if notifiers else [])]


def alerting_args(cfg: EndpointConfig) -> dict[str, Any]:
    """The @dag keyword arguments for an endpoint's deadline: none unless `alerting.deadline` is set."""
    alerting, args = cfg.alerting, {}
    if alerting.deadline:
        callback = SyncCallback if alerting.deadline.run_in == "executor" else AsyncCallback
        after = cfg.schedule.grace_period + alerting.deadline.after
        args["deadline"] = [
            DeadlineAlert(reference=WindowEndDeadline(), interval=after, callback=callback(path, kwargs=kwargs),
                          name=f"window not computed by its end + {_words(after)}")
            for path, kwargs in _paths(alerting.deadline.on_miss)]
    return args


def alerting_doc(cfg: EndpointConfig) -> str:
    """One paragraph for the DAG's doc_md: who owns it and what alerts fire when."""
    alerting = cfg.alerting
    failure = (f"a task that fails after its retries calls {', '.join(f'`{n.notifier}`' for n in alerting.on_failure)}"
               if alerting.on_failure else "a failed run notifies no one (set `alerting.on_failure`)")
    if alerting.deadline:
        grace, after = cfg.schedule.grace_period, alerting.deadline.after
        late = (f"a window not computed by its end + {_words(grace + after)} "
                f"(grace {_words(grace)} + {_words(after)}) calls "
                f"{', '.join(f'`{n.notifier}`' for n in alerting.deadline.on_miss)} (a Deadline Alert; none for"
                " backfills)")
    else:
        late = "no deadline (set `alerting.deadline`)"
    return f"\nAlerting (owner `{alerting.owner}`): {failure}; {late}.\n"


def _words(span: timedelta) -> str:
    """35 min, 2 h 30 min: a duration as an operator reads it (not 0:35:00)."""
    hours, rest = divmod(int(span.total_seconds()), 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min"), (seconds, "s")) if n]
    return " ".join(parts) or "0 s"
