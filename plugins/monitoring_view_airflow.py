"""Airflow's side of the Model Monitoring view: who may see what, paused DAGs, failed runs, and UI links.

Everything here goes through Airflow's own code: the api-server's `get_user` dependency (Authorization bearer
header, else the `_token` cookie the UI sets), the configured auth manager's `is_authorized_dag`, and the
metadata ORM session. Imports are lazy so loading the plugin in the scheduler or dag-processor stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import Request

MONITOR_DAG_PREFIX = "monitor__"
DEFAULT_RETRAINING_DAG = "model_retraining"

DagFilter = Callable[[list[str]], set[str]]
MetadataReader = Callable[[list[str]], dict[str, dict[str, Any]]]


def monitor_dag_id(endpoint_id: str) -> str:
    return f"{MONITOR_DAG_PREFIX}{endpoint_id}"


def retraining_dag_id(endpoint_id: str) -> str:
    """The endpoint's configured retraining target; the default when its config cannot be read here."""
    try:
        from monitoring_lib.config import get_endpoint

        return get_endpoint(endpoint_id).retraining.target_dag
    except Exception:  # an api-server without the configs still shows the page
        return DEFAULT_RETRAINING_DAG


async def current_user(request: Request) -> Any:
    """Airflow's own `get_user`: 401 without a credential, 403 for an invalid token (as `/api/v2` answers)."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


def login_url(next_url: str) -> str:
    """Where the configured auth manager logs a person in, coming back to `next_url`."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_url)


def dag_filter_for(user: Any) -> DagFilter:
    """The DAG ids among those given whose runs `user` may read (GET on DAG runs, as the Runs tab needs)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.configuration import conf
    from airflow.models.dag import DagModel

    def permitted(dag_ids: list[str]) -> set[str]:
        teams = DagModel.get_dag_id_to_team_name_mapping(dag_ids) if conf.getboolean("core", "multi_team") else {}
        manager = get_auth_manager()
        return {d for d in dag_ids if manager.is_authorized_dag(
            method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=d, team_name=teams.get(d)),
            user=user)}

    return permitted


def read_metadata(dag_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per DAG id: whether it exists and is paused, and its newest failed run with the first failed task."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    out: dict[str, dict[str, Any]] = {}
    with create_session() as session:
        paused = dict(session.execute(select(DagModel.dag_id, DagModel.is_paused)
                                      .where(DagModel.dag_id.in_(dag_ids))).all())
        for dag_id in dag_ids:
            run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.state == DagRunState.FAILED)
                                  .order_by(DagRun.run_after.desc()).limit(1)).first()
            failed = None
            if run is not None:
                task = session.scalars(select(TaskInstance.task_id).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id,
                    TaskInstance.state.in_([TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED]))
                    .order_by(TaskInstance.state, TaskInstance.end_date)).first()
                failed = {"run_id": run.run_id, "at": run.end_date or run.run_after, "task_id": task}
            out[dag_id] = {"exists": dag_id in paused, "paused": paused.get(dag_id), "last_failed_run": failed}
    return out


def ui_links(ui_base: str, dag_id: str, run_id: str | None = None, task_id: str | None = None) -> dict[str, str]:
    """Airflow 3 UI routes: /dags/{dag_id}, /dags/{dag_id}/runs/{run_id}, .../tasks/{task_id} (its log tab)."""
    links = {"dag": f"{ui_base}/dags/{quote(dag_id, safe='')}"}
    if run_id:
        links["run"] = f"{links['dag']}/runs/{quote(run_id, safe='')}"
        if task_id:
            links["task_log"] = f"{links['run']}/tasks/{quote(task_id, safe='')}"
    return links
