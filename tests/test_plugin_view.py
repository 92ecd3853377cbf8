"""The Model Monitoring UI view: HTML and JSON from a real PostgreSQL, escaping, 503s and plugin registration."""

from __future__ import annotations

import importlib
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
GRAFANA = "http://grafana.example:3000"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
HOSTILE_ID = '<script>alert("x")</script>&'
HOSTILE_MODEL = '"><img src=x onerror=alert(1)>'


@pytest.fixture()
def view(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    monkeypatch.setenv("MLMON_GRAFANA_URL", GRAFANA + "/")
    monkeypatch.delenv("MLMON_DATABASE_URL", raising=False)
    return importlib.import_module("monitoring_view")


def _endpoint(conn: psycopg.Connection, endpoint_id: str, project: str, model: str, drift: str | None,
              dq: str | None, window_end: datetime | None = None) -> None:
    start = None if window_end is None else window_end - timedelta(hours=1)
    conn.execute(
        """
        INSERT INTO monitoring.model_endpoints (endpoint_id, project, model_name, model_version, drift_status,
            dq_state, last_window_start, last_window_end)
        VALUES (%s, %s, %s, 'v3', %s, %s, %s, %s)
        """,
        (endpoint_id, project, model, drift, dq, start, window_end),
    )


def _run(conn: psycopg.Connection, endpoint_id: str, window_end: datetime, rows: int) -> None:
    conn.execute(
        """
        INSERT INTO monitoring.interval_runs (endpoint_id, window_start, window_end, status, rows_seen,
            library_version, started_at, finished_at, duration_s)
        VALUES (%s, %s, %s, 'ok', %s, 'test', %s, %s, 1.0)
        """,
        (endpoint_id, window_end - timedelta(hours=1), window_end, rows, window_end, window_end),
    )


def _event(conn: psycopg.Connection, endpoint_id: str, window_end: datetime, event_type: str, triggered: bool,
           outcome: str, created_at: datetime) -> None:
    conn.execute(
        """
        INSERT INTO monitoring.retraining_events (endpoint_id, window_start, window_end, event_type, triggered,
            outcome, created_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        """,
        (endpoint_id, window_end - timedelta(hours=1), window_end, event_type, triggered, outcome, created_at),
    )


@pytest.fixture()
def seeded(conn: psycopg.Connection) -> psycopg.Connection:
    """Four endpoints covering every badge colour and the three retraining cases."""
    w1, w2 = T0, T0 + timedelta(hours=1)
    _endpoint(conn, "claims-a", "claims", "severity", "no_drift", "passed", w2)
    _endpoint(conn, "claims-b", "claims", "frequency", "possible_drift", "warning", w2)
    _endpoint(conn, "fraud-1", "fraud", "detector", "drift_detected", "failed", w2)
    _endpoint(conn, HOSTILE_ID, "zzz", HOSTILE_MODEL, "skipped", None)
    for endpoint_id, rows in (("claims-a", 1234), ("claims-b", 56), ("fraud-1", 7)):
        _run(conn, endpoint_id, w1, 999)
        _run(conn, endpoint_id, w2, rows)
    # claims-a: a triggering decision, then the training it started (the training is newer and wins).
    _event(conn, "claims-a", w1, "decision", True, "trigger", w1 + timedelta(minutes=5))
    _event(conn, "claims-a", w1, "training", True, "promoted", w1 + timedelta(minutes=30))
    # claims-b: the triggering decision stays the answer although a later decision did not trigger.
    _event(conn, "claims-b", w1, "decision", True, "trigger", w1 + timedelta(minutes=5))
    _event(conn, "claims-b", w2, "decision", False, "no_trigger", w2 + timedelta(minutes=5))
    # fraud-1: only a decision that did not trigger, so no retraining to show.
    _event(conn, "fraud-1", w2, "decision", False, "no_trigger", w2 + timedelta(minutes=5))
    conn.commit()
    return conn


def _row(page: str, endpoint_cell: str) -> str:
    matches = [r for r in page.split("<tr>") if f"<td>{endpoint_cell}</td>" in r]
    assert len(matches) == 1, f"expected one row for {endpoint_cell}"
    return matches[0]


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_lists_endpoints_with_badges_windows_and_retraining(view: ModuleType, seeded, db_url: str) -> None:
    client = TestClient(view.create_app(lambda: db_url))
    resp = client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    page = resp.text

    a = _row(page, "claims-a")
    assert '<span class="badge badge-green">no_drift</span>' in a
    assert '<span class="badge badge-green">passed</span>' in a
    assert "<td>severity</td>" in a and "<td>v3</td>" in a and "<td>claims</td>" in a
    assert "<td>1234</td>" in a
    assert "2024-05-01 10:00 UTC &rarr; 2024-05-01 11:00 UTC" in a
    assert "promoted (training)<br><small>2024-05-01 10:30 UTC</small>" in a
    assert f'href="{GRAFANA}/d/mlmon-details?var-endpoint=claims-a"' in a

    b = _row(page, "claims-b")
    assert '<span class="badge badge-yellow">possible_drift</span>' in b
    assert '<span class="badge badge-yellow">warning</span>' in b
    assert "<td>56</td>" in b
    assert "trigger (decision)<br><small>2024-05-01 10:05 UTC</small>" in b

    f = _row(page, "fraud-1")
    assert '<span class="badge badge-red">drift_detected</span>' in f
    assert '<span class="badge badge-red">failed</span>' in f
    assert "<td>never</td>" in f

    assert f'href="{GRAFANA}/d/mlmon-overview"' in page
    assert page.index("claims-a") < page.index("claims-b") < page.index("fraud-1")


def test_hostile_values_are_escaped_in_text_and_links(view: ModuleType, seeded, db_url: str) -> None:
    page = TestClient(view.create_app(lambda: db_url)).get("/").text

    assert "<script>" not in page
    assert "<img" not in page
    row = _row(page, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;")
    assert "<td>&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</td>" in row
    assert '<span class="badge badge-grey">skipped</span>' in row
    assert '<span class="badge badge-grey">unknown</span>' in row
    assert "var-endpoint=%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E%26" in row


def test_json_matches_the_page(view: ModuleType, seeded, db_url: str) -> None:
    resp = TestClient(view.create_app(lambda: db_url)).get("/api/endpoints")
    assert resp.status_code == 200
    body = resp.json()
    assert body["grafana"] == {"overview": f"{GRAFANA}/d/mlmon-overview"}
    by_id = {e["endpoint_id"]: e for e in body["endpoints"]}
    assert [e["endpoint_id"] for e in body["endpoints"]] == ["claims-a", "claims-b", "fraud-1", HOSTILE_ID]

    a = by_id["claims-a"]
    assert (a["project"], a["model_name"], a["model_version"]) == ("claims", "severity", "v3")
    assert (a["drift_status"], a["dq_state"], a["last_rows"]) == ("no_drift", "passed", 1234)
    assert datetime.fromisoformat(a["last_window_start"]) == T0
    assert datetime.fromisoformat(a["last_window_end"]) == T0 + timedelta(hours=1)
    assert a["last_retraining"]["event_type"] == "training"
    assert a["last_retraining"]["outcome"] == "promoted"
    assert datetime.fromisoformat(a["last_retraining"]["at"]) == T0 + timedelta(minutes=30)
    assert a["grafana"]["details"] == f"{GRAFANA}/d/mlmon-details?var-endpoint=claims-a"

    assert by_id["claims-b"]["last_retraining"]["outcome"] == "trigger"
    assert by_id["claims-b"]["drift_status"] == "possible_drift"
    assert by_id["fraud-1"]["last_retraining"] is None
    assert by_id[HOSTILE_ID]["model_name"] == HOSTILE_MODEL
    assert by_id[HOSTILE_ID]["last_window_end"] is None


def test_empty_registry_and_health(view: ModuleType, db_url: str) -> None:
    client = TestClient(view.create_app(lambda: db_url))
    page = client.get("/")
    assert page.status_code == 200
    assert "No endpoints are monitored yet" in page.text
    assert client.get("/api/endpoints").json()["endpoints"] == []
    assert client.get("/health").json() == {"status": "ok", "endpoints": 0}


def test_unreachable_database_is_a_clear_503(view: ModuleType) -> None:
    url = f"postgresql://mlmon:s3cret@127.0.0.1:{_closed_port()}/mlmon"
    client = TestClient(view.create_app(lambda: url), raise_server_exceptions=False)

    page = client.get("/")
    assert page.status_code == 503
    assert "Monitoring data unavailable" in page.text
    assert "cannot connect to database" in page.text
    assert "Traceback" not in page.text and "s3cret" not in page.text

    api = client.get("/api/endpoints")
    assert api.status_code == 503 and "cannot connect to database" in api.json()["error"]
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"


def test_unconfigured_database_is_a_503(view: ModuleType) -> None:
    def missing() -> str:
        raise LookupError("The conn_id `monitoring_db` isn't defined")

    resp = TestClient(view.create_app(missing), raise_server_exceptions=False).get("/")
    assert resp.status_code == 503
    assert "not configured" in resp.text and "monitoring_db" in resp.text


def test_unmigrated_database_names_the_fix(view: ModuleType, empty_db_url: str) -> None:
    resp = TestClient(view.create_app(lambda: empty_db_url)).get("/api/endpoints")
    assert resp.status_code == 503
    assert resp.json() == {"error": "the monitoring schema is missing: run `mlmon db upgrade` first"}


def test_database_url_is_resolved_per_request(view: ModuleType, seeded, db_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The default factory reads MLMON_DATABASE_URL at request time, not when the app is built."""
    client = TestClient(view.create_app())
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    assert client.get("/health").json() == {"status": "ok", "endpoints": 4}


def test_plugin_registers_app_and_external_view(view: ModuleType, seeded, db_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse, FastAPIAppResponse
    from airflow.plugins_manager import AirflowPlugin

    plugin = view.MonitoringViewPlugin
    assert issubclass(plugin, AirflowPlugin) and plugin.name
    [app_entry] = plugin.fastapi_apps
    assert set(app_entry) == {"app", "url_prefix", "name"}
    assert app_entry["url_prefix"] == "/mlmon" and isinstance(app_entry["app"], FastAPI)
    [ext] = plugin.external_views
    assert ext["name"] == "Model Monitoring" and ext["destination"] == "nav"
    assert ext["href"] == "/mlmon/" and ext["url_route"]
    ExternalViewResponse.model_validate(ext)
    FastAPIAppResponse.model_validate({**app_entry, "app": "monitoring_view.app"})

    # Mounted the way the API server mounts plugin apps, the view's href serves the page.
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    server = FastAPI()
    server.mount(app_entry["url_prefix"], app_entry["app"])
    resp = TestClient(server).get(ext["href"])
    assert resp.status_code == 200
    assert "<td>claims-a</td>" in resp.text
