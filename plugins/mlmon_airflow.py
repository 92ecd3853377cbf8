"""Airflow glue for the monitoring DAGs: where the database is, and how library errors become task states.

Kept out of `monitoring_lib` (which never imports Airflow) and out of the DAG files (which stay thin).
Imported by the DAG file for callbacks and inside task bodies; nothing here runs at import, so DAG parsing
touches no database or network.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from airflow.sdk.exceptions import AirflowFailException

from monitoring_lib.db import DATABASE_URL_ENV
from monitoring_lib.errors import (
    ConfigError,
    DynatraceError,
    DynatraceUnavailableError,
    QualityGateFailed,
    WindowParamError,
)

MONITORING_CONN_ID = "monitoring_db"
DYNATRACE_CONN_ID = "dynatrace_default"
log = logging.getLogger(__name__)


def database_url() -> str:
    """`MLMON_DATABASE_URL` if set, else the `monitoring_db` Airflow Connection (environment, secrets backend
    or metadata database), turned into a URL the way `mlmon` reads `AIRFLOW_CONN_MONITORING_DB`."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    from airflow.sdk import BaseHook

    from monitoring_lib.db import connection_url

    conn = BaseHook.get_connection(MONITORING_CONN_ID)
    return connection_url(conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema,
                          conn.extra_dejson)


def refuse_paused_target(context) -> None:  # noqa: ANN001 - Airflow's task context
    """pre_execute of trigger_retraining: a paused target fails at once (no retry) and says how to unpause it."""
    dag_id = context["task"].trigger_dag_id
    if context["ti"].get_dag(dag_id).is_paused:
        raise AirflowFailException(
            f"the retraining DAG '{dag_id}' is paused (Airflow pauses a new DAG unless"
            f" dags_are_paused_at_creation is off), so no retraining run was started: unpause it with"
            f" `airflow dags unpause {dag_id}` (or its toggle in the UI), then clear this task. The decision is"
            " recorded as trigger_failed, so it does not start the retraining cooldown")


def record_retraining_trigger(context) -> None:  # noqa: ANN001 - Airflow's task context
    """Success, skipped and failure callback of trigger_retraining: stores whether the retraining run started
    (skipped means the run already exists), so a failed trigger never starts a cooldown."""
    from monitoring_lib.tasks import record_trigger

    ti = context["ti"]
    conf = ti.xcom_pull(task_ids="decide_retraining")
    error = None
    if str(getattr(ti.state, "value", ti.state)) == "failed":
        exc = context.get("exception")
        error = (str(exc) or type(exc).__name__) if exc is not None else "the trigger failed"
    outcome = record_trigger(database_url(), conf, error)
    log.info("retraining run %s for %s: %s", conf["run_id"], conf["endpoint_id"], outcome)


def fail_naming_failed_tasks(ti, watched: list[str]) -> None:  # noqa: ANN001 - the RuntimeTaskInstance
    """performance_failed's body (trigger rule one_failed): fail the run, naming the task that really failed.

    It runs when model_performance failed or never ran because something before it failed.
    """
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=watched, run_ids=[ti.run_id]).get(ti.run_id, {})
    failed = sorted(t for t, state in states.items() if str(state) in ("failed", "TaskInstanceState.FAILED"))
    cause = ", ".join(failed) or "an upstream task"
    tail = ("results and lines are unaffected" if failed == ["model_performance"]
            else "so model_performance did not run")
    raise AirflowFailException(f"{cause} failed: see its log; {tail}")


@contextlib.contextmanager
def task_errors() -> Iterator[None]:
    """Failures that a retry cannot fix fail the task at once; transient ones stay retryable."""
    try:
        yield
    except (QualityGateFailed, ConfigError, WindowParamError) as exc:
        raise AirflowFailException(str(exc)) from exc
    except DynatraceUnavailableError:
        raise
    except DynatraceError as exc:
        raise AirflowFailException(str(exc)) from exc


def dynatrace_client():  # noqa: ANN201 - IngestClient, imported lazily
    """The ingest client from the `dynatrace_default` Connection or the environment; None if neither is set."""
    from monitoring_lib.dynatrace.client import client_from_env

    if os.environ.get("DYNATRACE_URL"):
        return client_from_env()
    from airflow.exceptions import AirflowNotFoundException

    from dynatrace_hook import DynatraceIngestHook

    try:
        return DynatraceIngestHook(DYNATRACE_CONN_ID).get_client()
    except AirflowNotFoundException:
        return None
