"""A window's outcome where Airflow operators look: the run's note, the summary assets' event extra, the
`quality_gate` task state and the task log.

compute_interval publishes the outcome (an XCom `outcome` of a few hundred bytes, the asset events' extra,
INFO log lines); `quality_gate` turns it into a task state; and this plugin's listener, which Airflow calls in
the scheduler (or in `dag.test()`) when a monitoring run ends, writes the run's note from it. A task cannot
set its own run's note through the Task SDK, so the listener is the one place that can. A note written by a
person in the UI (it carries a user id) is never replaced.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from airflow.sdk.exceptions import AirflowSkipException
from sqlalchemy.orm import object_session

from mlmon_airflow import database_url, task_errors
from monitoring_lib.config import EndpointConfig
from monitoring_lib.errors import QualityGateFailed
from monitoring_lib.run_summary import WindowOutcome, asset_extra, note_markdown, quality_verdict, summarise

OUTCOME_KEY = "outcome"
MONITOR_PREFIX = "monitor__"
REPORTERS = {"performance_failed"}  # tasks that only say another task failed
log = logging.getLogger(__name__)


def compute_task(cfg: EndpointConfig, window: dict[str, str], force: bool, groups: list[dict] | None,
                 context: dict[str, Any], assets: list) -> dict[str, Any]:
    """compute_interval's body: the interval's report for XCom, and its outcome published."""
    # the scheduler loads this plugin for its listener: the runner (pandas, SciPy) only where a task runs
    from monitoring_lib.tasks import compute_window

    url = database_url()
    try:
        with task_errors():
            report = compute_window(url, cfg, window, force=force, groups=groups)
    except Exception as exc:
        if isinstance(exc.__cause__, QualityGateFailed):  # fail_task: the window is stored, then the task fails
            publish_stored(url, cfg, window, context)
        raise
    publish_outcome(url, report, context, assets)
    return report


def publish_outcome(url: str, report: dict[str, Any], context: dict[str, Any], assets: list) -> None:  # noqa: ANN001
    """Called by compute_interval with its report: log lines, the XCom the note and gate read, asset extras."""
    outcome = summarise(url, report)
    context["ti"].xcom_push(key=OUTCOME_KEY, value=outcome.to_dict())
    for asset in assets:
        context["outlet_events"][asset].extra = asset_extra(outcome)


def publish_stored(url: str, cfg: EndpointConfig, window: dict[str, str], context: dict[str, Any]) -> None:
    """When compute_interval fails on its quality gate (`fail_task`), the window is stored all the same: its
    outcome still reaches the log and the run's note (a failed task emits no asset events)."""
    from monitoring_lib.results.report import stored_report  # as in compute_task
    from monitoring_lib.tasks import window_of

    stored = stored_report(url, cfg, *window_of(window))
    if stored is not None:
        outcome = summarise(url, {**stored.to_dict(), "reused": False})
        context["ti"].xcom_push(key=OUTCOME_KEY, value=outcome.to_dict())


def gate(cfg: EndpointConfig, context: dict[str, Any]) -> str:
    """quality_gate's body: skipped when a critical check failed (on_failure skip_drift or compute_drift)."""
    data = context["ti"].xcom_pull(task_ids="compute_interval", key=OUTCOME_KEY)
    verdict = quality_verdict(cfg, WindowOutcome(**data))
    if verdict:
        raise AirflowSkipException(verdict)
    return data["dq_state"] or "no_data"


def _failed_tasks(dag_run: Any, session: Any) -> list[str]:  # noqa: ANN401 - the scheduler's DagRun, Session
    failed = [ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else "")
              for ti in dag_run.get_task_instances(state=["failed"], session=session) if ti.task_id not in REPORTERS]
    return sorted(set(failed))


def _outcome(dag_run: Any, session: Any) -> dict[str, Any] | None:  # noqa: ANN401
    # the ORM only where the listener runs (scheduler, dag.test): task processes load this module too
    from airflow.models.xcom import XComModel

    row = session.scalars(XComModel.get_many(run_id=dag_run.run_id, key=OUTCOME_KEY, dag_ids=dag_run.dag_id,
                                             task_ids="compute_interval", map_indexes=-1)).first()
    return None if row is None else XComModel.deserialize_value(row)


def run_note(dag_run: Any, session: Any) -> str | None:  # noqa: ANN401
    """The note for a finished monitoring run: its window's outcome, or which task stopped it first."""
    failed = _failed_tasks(dag_run, session)
    data = _outcome(dag_run, session)
    if data is not None:
        return note_markdown(WindowOutcome(**data), failed)
    if not failed:
        return None
    return f"**Window not computed.** Failed: {', '.join(failed)} (see the task log)"


def _annotate(dag_run: Any, session: Any) -> None:  # noqa: ANN401
    existing = dag_run.dag_run_note
    if existing is not None and existing.user_id is not None:
        return  # an operator's own note stays
    note = run_note(dag_run, session)
    if note:
        dag_run.note = note


def annotate(dag_run: Any) -> None:  # noqa: ANN401
    """Write the note in the session that holds the run: the scheduler's, which has the run's row locked and
    commits it with the new state (a second session would wait on that lock). `dag.test()` hands over a
    detached run: then the note goes in through a session of its own."""
    if not dag_run.dag_id.startswith(MONITOR_PREFIX):
        return
    session = object_session(dag_run)
    if session is not None:
        _annotate(dag_run, session)
        return
    from airflow.models.dagrun import DagRun  # the ORM only where the listener runs, as in _outcome
    from airflow.utils.session import create_session

    with create_session() as own:
        _annotate(own.get(DagRun, dag_run.id), own)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:  # noqa: ANN401, ARG001
    annotate(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:  # noqa: ANN401, ARG001
    annotate(dag_run)


class MlmonRunOutcomePlugin(AirflowPlugin):
    name = "mlmon_run_outcome"
    listeners = [sys.modules[__name__]]
