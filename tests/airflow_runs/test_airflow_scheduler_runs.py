"""The monitoring DAG run by the real Airflow components (api-server, scheduler, DAG processor, LocalExecutor) on
a PostgreSQL metadata database, triggered and read through the REST API as an operator's tools do.

What only this path shows: the run's note is written by the listener inside the scheduler's own session (the
one that holds the run's row), the trigger form's schema refuses a bad window before a run exists, and an
operator's own note survives a cleared and re-run window.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from airflow_server import api_server, token
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

from monitoring_lib.demo.orchestrate import ENDPOINT_ID
from tests.airflow_runs.test_dags import REPO, hour, seeded_url  # noqa: F401 - fixture
from tests.conftest import _with_dbname

DAG = f"monitor__{ENDPOINT_ID}"


def sqlalchemy_url(conninfo: str) -> str:
    """The metadata database's SQLAlchemy URL from a libpq conninfo (socket directory or host and port)."""
    parts = conninfo_to_dict(conninfo)
    host = parts.get("host", "")
    socket = host.startswith("/")
    return URL.create("postgresql+psycopg2", username=parts.get("user", "postgres"), password=parts.get("password"),
                      host=None if socket else host, port=None if socket else int(parts.get("port", 5432)),
                      database=parts["dbname"], query={"host": host} if socket else {}).render_as_string(
                          hide_password=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory, pg_server_url: str, seeded_url: str):  # noqa: F811
    name = f"airflow_meta_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    configs = tmp_path_factory.mktemp("configs")
    data = yaml.safe_load((REPO / "configs" / "claims-approved-amount.yaml").read_text())
    # no scheduled run of the current hour to wait in its sensor ahead of the triggered ones (max_active_runs=1)
    data["schedule"]["start_date"] = "2099-01-01T00:00:00Z"
    (configs / "claims-approved-amount.yaml").write_text(yaml.safe_dump(data))
    env = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(_with_dbname(pg_server_url, name)),
           "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "4",
           "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
           "MLMON_CONFIG_DIR": str(configs)}
    home = Path(tmp_path_factory.mktemp("airflow-real"))
    with api_server(home, seeded_url, extra_env=env, components=("scheduler", "dag-processor")) as base:
        yield base, {"Authorization": f"Bearer {token(base, 'admin')}"}
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def trigger(base: str, auth: dict, conf: dict, run_id: str) -> httpx.Response:
    return httpx.post(f"{base}/api/v2/dags/{DAG}/dagRuns", headers=auth, timeout=30,
                      json={"dag_run_id": run_id, "logical_date": None, "conf": conf})


def finished(base: str, auth: dict, run_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = httpx.get(f"{base}/api/v2/dags/{DAG}/dagRuns/{run_id}", headers=auth, timeout=30).json()
        if run["state"] in ("success", "failed"):
            return run
        time.sleep(2)
    raise AssertionError(f"{run_id} did not finish in {timeout_s}s: {run}")


def task_states(base: str, auth: dict, run_id: str) -> dict[str, str]:
    tis = httpx.get(f"{base}/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances", headers=auth, timeout=30).json()
    return {t["task_id"]: t["state"] for t in tis["task_instances"]}


def test_the_scheduler_writes_the_note_and_keeps_an_operators_own(server):
    base, auth = server
    window = {"window_start": hour(9)[0], "window_end": hour(9)[1], "force_recompute": True}
    assert trigger(base, auth, window, "incident").status_code == 200
    run = finished(base, auth, "incident")
    assert run["state"] == "success"
    assert task_states(base, auth, "incident")["quality_gate"] == "skipped"
    assert run["note"].startswith("Quality **failed** (") and "drift **skipped**" in run["note"], run["note"]
    events = httpx.get(f"{base}/api/v2/assets/events", params={"source_run_id": "incident"}, headers=auth,
                       timeout=30).json()["asset_events"]
    assert len(events) == 6 and all(e["extra"]["dq_state"] == "failed" for e in events)

    # an operator writes a note, then clears the run: the re-run leaves the operator's note alone
    patched = httpx.patch(f"{base}/api/v2/dags/{DAG}/dagRuns/incident", headers=auth, timeout=30,
                          json={"note": "looked at it: upstream ETL bug, ticket 123"})
    assert patched.status_code == 200, patched.text
    cleared = httpx.post(f"{base}/api/v2/dags/{DAG}/dagRuns/incident/clear", headers=auth, timeout=30,
                         json={"dry_run": False})
    assert cleared.status_code == 200, cleared.text
    time.sleep(3)
    again = finished(base, auth, "incident")
    assert again["state"] == "success" and again["note"] == "looked at it: upstream ETL bug, ticket 123"


def test_the_api_refuses_a_window_that_is_no_date_time_before_a_run_exists(server):
    base, auth = server
    refused = trigger(base, auth, {"window_start": "yesterday", "window_end": hour(1)[1]}, "bad-window")
    assert refused.status_code == 400 and "yesterday" in refused.text
    assert httpx.get(f"{base}/api/v2/dags/{DAG}/dagRuns/bad-window", headers=auth, timeout=30).status_code == 404
