"""The Model Monitoring view behind Airflow's auth: a real `airflow api-server` with SimpleAuthManager.

The api-server runs as a subprocess on a loopback port with the project's plugins and a migrated temporary
AIRFLOW_HOME; requests go over real HTTP. Anonymous requests are refused like `/api/v2`, a token from
`POST /auth/token` is served, and the page reads Airflow's metadata (a paused retraining DAG, a failed run).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from airflow_server import api_server
from airflow_server import token as login
from psycopg import sql
from psycopg.conninfo import make_conninfo

ENDPOINT = "claims-approved-amount"  # defined in configs/, so its monitoring DAG exists


def _seed(url: str) -> None:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(url) as conn:
        conn.execute(
            """INSERT INTO monitoring.model_endpoints (endpoint_id, project, model_name, model_version, drift_status,
                   dq_state, last_window_start, last_window_end) VALUES (%s, 'claims', 'amount', 'v1', 'skipped',
                   'failed', %s, %s)""", (ENDPOINT, end - timedelta(hours=1), end))
        conn.execute(
            """INSERT INTO monitoring.interval_runs (endpoint_id, window_start, window_end, status, rows_seen, bad_rows,
                   dq_state, drift_status, library_version, started_at, finished_at, duration_s)
               VALUES (%s, %s, %s, 'ok', 500, 3, 'failed', 'skipped', 'test', now(), now(), 1)""",
            (ENDPOINT, end - timedelta(hours=1), end))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pg_server_url: str, template_db: str) -> Iterator[str]:
    dbname = "plugin_auth"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(dbname),
                                                                     sql.Identifier(template_db)))
    url = make_conninfo(pg_server_url, dbname=dbname)
    _seed(url)
    with api_server(tmp_path_factory.mktemp("airflow-auth") / "home", url) as base:
        yield base


def test_anonymous_requests_are_refused_like_the_rest_of_the_api(server: str) -> None:
    assert httpx.get(f"{server}/api/v2/dags", timeout=10).status_code == 401
    api = httpx.get(f"{server}/mlmon/api/endpoints", timeout=10)
    assert api.status_code == 401
    assert ENDPOINT not in api.text
    assert httpx.get(f"{server}/mlmon/api/endpoints/{ENDPOINT}", timeout=10).status_code == 401
    bad = httpx.get(f"{server}/mlmon/api/endpoints", headers={"Authorization": "Bearer not-a-jwt"}, timeout=10)
    assert bad.status_code == 403

    page = httpx.get(f"{server}/mlmon/", timeout=10)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/auth/login?next=")
    assert ENDPOINT not in page.text


def test_health_is_anonymous_and_minimal(server: str) -> None:
    resp = httpx.get(f"{server}/mlmon/health", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_a_token_is_served_by_header_and_by_the_ui_cookie(server: str) -> None:
    token = login(server, "viewer")
    assert httpx.get(f"{server}/api/v2/dags", headers={"Authorization": f"Bearer {token}"},
                     timeout=10).status_code == 200

    api = httpx.get(f"{server}/mlmon/api/endpoints", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert api.status_code == 200, api.text
    [e] = api.json()["endpoints"]
    assert e["endpoint_id"] == ENDPOINT and e["dq_state"] == "failed"
    assert e["windows"][-1]["rows_seen"] == 500 and e["windows"][-1]["bad_rows"] == 3
    assert e["airflow"]["monitor"]["exists"] is True
    assert e["retraining_dag"] == "model_retraining"
    assert e["airflow"]["retraining"] == {"exists": True, "paused": True, "last_failed_run": None}
    assert e["grafana"] is None and api.json()["grafana"] is None

    page = httpx.get(f"{server}/mlmon/", cookies={"_token": token}, timeout=30)
    assert page.status_code == 200
    assert f'data-endpoint="{ENDPOINT}"' in page.text
    assert '<span class="badge bad">paused</span>' in page.text
    assert f'href="/dags/monitor__{ENDPOINT}"' in page.text
    assert f'href="/mlmon/endpoints/{ENDPOINT}"' in page.text
    assert "Grafana" not in page.text

    detail = httpx.get(f"{server}/mlmon/endpoints/{ENDPOINT}", cookies={"_token": token}, timeout=30)
    assert detail.status_code == 200 and "Windows (1, newest first)" in detail.text


def test_a_failed_monitoring_run_is_linked(server: str) -> None:
    """A run failed through Airflow's own API shows with a link to its run page."""
    admin = {"Authorization": f"Bearer {login(server, 'admin')}"}
    dag_id = f"monitor__{ENDPOINT}"
    resp = httpx.post(f"{server}/api/v2/dags/{dag_id}/dagRuns", headers=admin, timeout=30,
                      json={"logical_date": None, "conf": {}})
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]
    resp = httpx.patch(f"{server}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=admin, timeout=30,
                       json={"state": "failed"})
    assert resp.status_code == 200, resp.text

    viewer = {"Authorization": f"Bearer {login(server, 'viewer')}"}
    e = httpx.get(f"{server}/mlmon/api/endpoints/{ENDPOINT}", headers=viewer, timeout=30).json()
    assert e["airflow"]["monitor"]["last_failed_run"]["run_id"] == run_id
    assert e["links"]["run"].startswith(f"/dags/{dag_id}/runs/")
