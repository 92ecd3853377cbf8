"""The Model Monitoring view on a real PostgreSQL: strips, staleness, failures, filters, detail page, escaping.

Authentication itself is proven against a real api-server in test_plugin_auth.py; here the app's two
access dependencies are replaced through FastAPI's dependency overrides by "the user may read every DAG",
and the Airflow-metadata reader by a fixed answer, so each rendering case is set up exactly.
"""

from __future__ import annotations

import importlib
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from monitoring_lib.operator_view import human_age, staleness

PLUGINS_DIR = Path(__file__).resolve().parents[2] / "plugins"
GRAFANA = "http://grafana.example:3000"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
HOUR = timedelta(hours=1)
HOSTILE_ID = '<script>alert("x")</script>&'
HOSTILE_MODEL = '"><img src=x onerror=alert(1)>'


@pytest.fixture()
def view(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    monkeypatch.delenv("MLMON_GRAFANA_URL", raising=False)
    monkeypatch.delenv("MLMON_DATABASE_URL", raising=False)
    return importlib.import_module("monitoring_view")


def _client(view: ModuleType, url: str, metadata: dict[str, dict[str, Any]] | None = None,
            allowed: set[str] | None = None) -> TestClient:
    app = view.create_app(lambda: url)

    def dag_filter() -> Any:
        return lambda ids: {i for i in ids if allowed is None or i in allowed}

    app.dependency_overrides[view.dag_access] = dag_filter
    app.dependency_overrides[view.html_access] = dag_filter
    app.dependency_overrides[view.airflow_metadata] = lambda: lambda ids: {i: (metadata or {}).get(
        i, {"exists": True, "paused": False, "last_failed_run": None}) for i in ids}
    return TestClient(app, raise_server_exceptions=False)


def _endpoint(conn: psycopg.Connection, endpoint_id: str, model: str = "m") -> None:
    conn.execute("INSERT INTO monitoring.model_endpoints (endpoint_id, project, model_name, model_version) "
                 "VALUES (%s, 'proj', %s, 'v3')", (endpoint_id, model))


def _window(conn: psycopg.Connection, endpoint_id: str, end: datetime, dq: str = "passed", drift: str = "no_drift",
            rows: int = 100, bad: int = 0, status: str = "ok", details: dict | None = None) -> None:
    conn.execute(
        """INSERT INTO monitoring.interval_runs (endpoint_id, window_start, window_end, status, rows_seen, bad_rows,
               dq_state, drift_status, library_version, started_at, finished_at, duration_s, error)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'test', %s, %s, 1.0, %s)""",
        (endpoint_id, end - HOUR, end, status, rows, bad, dq, drift, end, end,
         "boom" if status == "failed" else None))
    if details is not None:
        conn.execute(
            """INSERT INTO monitoring.drift_summary (endpoint_id, window_start, window_end, metric, value,
                   drift_status, dq_state, details) VALUES (%s, %s, %s, 'general_drift', 0.4, %s, %s, %s)""",
            (endpoint_id, end - HOUR, end, drift, dq, Jsonb(details)))
    if status != "failed":
        conn.execute(
            """UPDATE monitoring.model_endpoints SET last_window_start = %s, last_window_end = %s, dq_state = %s,
                   drift_status = %s WHERE endpoint_id = %s""", (end - HOUR, end, dq, drift, endpoint_id))


def _check(conn: psycopg.Connection, endpoint_id: str, end: datetime, expectation: str, severity: str,
           success: bool = False) -> None:
    conn.execute(
        """INSERT INTO monitoring.data_quality_results (endpoint_id, window_start, window_end, expectation_id,
               expectation_type, column_name, success, unexpected_count, unexpected_percent, observed_value, severity)
           VALUES (%s, %s, %s, %s, 'expect_column_values_to_not_be_null', 'age', %s, 7, 1.4, %s, %s)""",
        (endpoint_id, end - HOUR, end, expectation, success, Jsonb({"max": 999}), severity))


def _event(conn: psycopg.Connection, endpoint_id: str, end: datetime, event_type: str, outcome: str,
           created_at: datetime) -> None:
    conn.execute(
        """INSERT INTO monitoring.retraining_events (endpoint_id, window_start, window_end, event_type, triggered,
               outcome, reasons, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (endpoint_id, end - HOUR, end, event_type, outcome in ("trigger", "promoted"), outcome,
         Jsonb(["drift_detected in 3 of the last 6 windows"]), created_at))


@pytest.fixture()
def seeded(conn: psycopg.Connection) -> psycopg.Connection:
    """healthy: 30 clean windows; incident: the last window failed quality with drift skipped; drifty: drift
    detected, 2 h behind; old: 2 days behind; broken: its last run failed; the hostile one has no window."""
    for e in ("healthy", "incident", "drifty", "old", "broken"):
        _endpoint(conn, e)
    _endpoint(conn, HOSTILE_ID, HOSTILE_MODEL)
    for i in range(30):
        _window(conn, "healthy", NOW - (29 - i) * HOUR, rows=1000 + i)
    _window(conn, "incident", NOW - HOUR)
    _window(conn, "incident", NOW, dq="failed", drift="skipped", rows=500, bad=12)
    for n in range(8):
        _check(conn, "incident", NOW, f"check_{n}", "critical" if n in (3, 5) else "warning")
    _check(conn, "incident", NOW, "passing_check", "critical", success=True)
    _window(conn, "drifty", NOW - 2 * HOUR, drift="drift_detected", details={
        "drifted_features": ["age"], "reasons": ["feature 'age' hellinger 0.61 >= 0.5 (drift_detected)"]})
    for metric, value, status in (("hellinger", 0.61, "drift_detected"), ("psi", 0.3, "possible_drift")):
        conn.execute(
            """INSERT INTO monitoring.feature_drift (endpoint_id, window_start, window_end, feature, metric, value,
                   threshold_possible, threshold_detected, status) VALUES ('drifty', %s, %s, 'age', %s, %s, 0.3,
                   0.5, %s)""", (NOW - 3 * HOUR, NOW - 2 * HOUR, metric, value, status))
    conn.execute(
        """INSERT INTO monitoring.feature_drift (endpoint_id, window_start, window_end, feature, metric, value,
               threshold_possible, threshold_detected, status)
           VALUES ('drifty', %s, %s, 'income', 'hellinger', 0.01, 0.3, 0.5, 'no_drift')""",
        (NOW - 3 * HOUR, NOW - 2 * HOUR))
    for app, metric, status in (("drift", "general_drift", "drift_detected"), ("kpi", "large_claims", "anomaly"),
                                ("kpi", "share", "ok")):
        conn.execute(
            """INSERT INTO monitoring.app_results (endpoint_id, window_start, window_end, application, metric, kind,
                   status, value, extra, schedule_time) VALUES ('drifty', %s, %s, %s, %s, 'kpi', %s, 0.42, %s, %s)""",
            (NOW - 3 * HOUR, NOW - 2 * HOUR, app, metric, status, Jsonb({"note": "<b>x</b>"}), NOW))
    for segment, status, extra in (
            ("region=north", "drift_detected", {"rows": 400, "reference_rows": 5000, "drifted_features": ["age"],
                                                "missing_values": 2, "errors": 1}),
            ("region=south", "no_drift", {"rows": 900, "reference_rows": 9000, "drifted_features": []}),
            ("region=other", "too_small", {"rows": 12, "reference_rows": 80, "drifted_features": []})):
        conn.execute(
            """INSERT INTO monitoring.app_results (endpoint_id, window_start, window_end, application, metric, kind,
                   status, value, extra, schedule_time)
               VALUES ('drifty', %s, %s, 'segment', %s, 'segment_drift', %s, 0.3, %s, %s)""",
            (NOW - 3 * HOUR, NOW - 2 * HOUR, segment, status, Jsonb(extra), NOW))
    conn.execute(
        """INSERT INTO monitoring.app_results (endpoint_id, window_start, window_end, application, metric, kind,
               status, value, extra, schedule_time)
           VALUES ('drifty', %s, %s, 'performance', 'estimated', 'estimated_performance', 'drop_detected', 912.5,
                   %s, %s)""",
        (NOW - 3 * HOUR, NOW - 2 * HOUR, Jsonb({"metric": "mae", "method": "dle", "rows": 1200, "lower": 850.0,
                                                "upper": 975.0, "reference": 700.0}), NOW))
    _event(conn, "drifty", NOW - 2 * HOUR, "decision", "trigger", NOW - 2 * HOUR + timedelta(minutes=5))
    _event(conn, "drifty", NOW - 2 * HOUR, "training", "promoted", NOW - 2 * HOUR + timedelta(minutes=30))
    _window(conn, "old", NOW - timedelta(days=2))
    _window(conn, "broken", NOW - HOUR)
    _window(conn, "broken", NOW, status="failed", dq=None, drift=None)
    conn.commit()
    return conn


def _row(page: str, endpoint_id: str) -> str:
    start = page.index(f'<tr data-endpoint="{endpoint_id}">')
    return page[start:page.index("</tr>", start)]


def _ids(page: str) -> list[str]:
    return [part.split('"', 1)[0] for part in page.split('<tr data-endpoint="')[1:]]


def test_incident_window_shows_failed_quality_and_its_checks(view: ModuleType, seeded, db_url: str) -> None:
    resp = _client(view, db_url).get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    row = _row(resp.text, "incident")
    cells = row.split('<div class="cell"')[1:]
    assert len(cells) == 2
    assert 'data-dq="failed" data-drift="skipped"><span class="bad"></span><span class="none"></span>' in cells[-1]
    assert "8 checks failed, 2 critical" in cells[-1] and "500 rows, 12 bad" in cells[-1]
    assert 'data-dq="passed" data-drift="no_drift"><span class="ok"></span><span class="ok"></span>' in cells[0]
    assert '<span class="badge bad">failed</span>' in row
    listed = row[row.index("<ul>"):row.index("</ul>")]
    assert listed.count("<li>") == 8 and "passing_check" not in listed
    assert listed.index("check_3") < listed.index("check_5") < listed.index("check_0")  # critical first
    assert '<span class="badge none">skipped</span>' in row


def test_strip_holds_the_last_n_windows(view: ModuleType, seeded, db_url: str) -> None:
    client = _client(view, db_url)
    row = _row(client.get("/").text, "healthy")
    assert row.count('<div class="cell"') == 24
    assert "1029 rows" in row and "1006 rows" in row and "1005 rows" not in row
    assert _row(client.get("/?windows=5").text, "healthy").count('<div class="cell"') == 5
    assert client.get("/?windows=0").status_code == 422


def test_staleness_against_the_interval(view: ModuleType, seeded, db_url: str) -> None:
    page = _client(view, db_url).get("/").text
    # NOW is the hour the module was imported in: a run that crosses the next hour sees the window an hour older
    hours = (datetime.now(UTC) - (NOW - 2 * HOUR)) // HOUR
    assert '<span class="badge ok">fresh</span>' in _row(page, "healthy")
    assert '<span class="badge warn">late</span>' in _row(page, "drifty")
    assert f"last window ended {hours} hours" in _row(page, "drifty")
    assert '<span class="badge bad">stale</span>' in _row(page, "old")
    assert "last window ended 2 days" in _row(page, "old")
    # the failed run does not count as a computed window: broken's last computed one ended an hour before NOW,
    # fresh until it is two hours old (a run that crosses the next hour sees it late)
    fresh = datetime.now(UTC) - (NOW - HOUR) < 2 * HOUR
    badge = '<span class="badge ok">fresh</span>' if fresh else '<span class="badge warn">late</span>'
    assert badge in _row(page, "broken")
    assert '<span class="badge dead">run failed</span>' in _row(page, "broken")


def test_staleness_wording() -> None:
    assert human_age(timedelta(days=3, hours=4, minutes=5)) == "3 days 4 hours"
    assert human_age(timedelta(minutes=1, seconds=5)) == "1 minute"
    assert human_age(timedelta(seconds=40)) == "40 seconds"
    assert staleness(NOW - 90 * timedelta(minutes=1), HOUR, NOW)["state"] == "fresh"
    assert staleness(NOW - 150 * timedelta(minutes=1), HOUR, NOW)["state"] == "late"
    assert staleness(NOW - 4 * HOUR, HOUR, NOW)["state"] == "stale"
    assert staleness(None, None, NOW) == {"state": "stale", "age_s": None, "age": "no window computed",
                                          "missed": None}


def test_filter_and_sort_by_state(view: ModuleType, seeded, db_url: str) -> None:
    client = _client(view, db_url)
    assert _ids(client.get("/?state=quality_failed").text) == ["incident"]
    assert _ids(client.get("/?state=drift_detected").text) == ["drifty"]
    assert _ids(client.get("/?state=failed_run").text) == ["broken"]
    hostile = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"
    assert set(_ids(client.get("/?state=stale").text)) == {"old", hostile}
    assert "No endpoint is in this state" in client.get("/?state=possible_drift").text
    by_age = _ids(client.get("/?sort=staleness").text)
    assert by_age[1:4] == ["old", "drifty", "broken"] and by_age[0].startswith("&lt;script")
    assert _ids(client.get("/?sort=severity").text)[:2] == ["broken", "incident"]
    assert client.get("/?state=nonsense").status_code == 400
    api = client.get("/api/endpoints", params={"state": "drift_detected"}).json()
    assert [e["endpoint_id"] for e in api["endpoints"]] == ["drifty"]
    assert api["endpoints"][0]["drifted_features"] == ["age"]
    assert api["endpoints"][0]["drift_reasons"] == ["feature 'age' hellinger 0.61 >= 0.5 (drift_detected)"]
    assert client.get("/api/endpoints?sort=sideways").status_code == 400


def test_drift_reasons_retraining_and_links_in_the_list(view: ModuleType, seeded, db_url: str) -> None:
    failed = {"run_id": "scheduled__2024-05-01T10:00:00+00:00", "at": NOW, "task_id": "quality_gate"}
    metadata = {"monitor__drifty": {"exists": True, "paused": False, "last_failed_run": failed},
                "model_retraining": {"exists": True, "paused": True, "last_failed_run": None}}
    row = _row(_client(view, db_url, metadata).get("/").text, "drifty")
    assert "<strong>age</strong>" in row and "hellinger 0.61 &gt;= 0.5" in row
    assert "decision: trigger" in row and "training: promoted" in row
    assert '<a href="/dags/model_retraining">model_retraining</a> <span class="badge bad">paused</span>' in row
    assert '<a href="/dags/monitor__drifty">DAG</a>' in row
    run = "/dags/monitor__drifty/runs/scheduled__2024-05-01T10%3A00%3A00%2B00%3A00"
    assert f'<a href="{run}">scheduled__2024-05-01T10:00:00+00:00</a>' in row
    assert f'<a href="{run}/tasks/quality_gate">quality_gate</a> (log)' in row
    assert "Grafana" not in row


def test_grafana_links_only_when_configured(view: ModuleType, seeded, db_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    client = _client(view, db_url)
    assert "Grafana" not in client.get("/").text
    assert client.get("/api/endpoints").json()["grafana"] is None
    monkeypatch.setenv("MLMON_GRAFANA_URL", GRAFANA + "/")
    page = client.get("/").text
    assert f'href="{GRAFANA}/d/mlmon-overview"' in page
    assert f'href="{GRAFANA}/d/mlmon-details?var-endpoint=drifty"' in _row(page, "drifty")


def test_endpoint_page_has_the_detail(view: ModuleType, seeded, db_url: str) -> None:
    client = _client(view, db_url)
    drifty = client.get("/endpoints/drifty")
    assert drifty.status_code == 200
    text = drifty.text
    features = text[text.index("Drifted features in the last window"):text.index("Failed checks in")]
    assert "<td><strong>age</strong></td><td>hellinger</td><td>0.61</td>" in features
    assert "<td>psi</td><td>0.3</td>" in features and '<span class="badge warn">possible_drift</span>' in features
    assert "income" not in features
    apps = text[text.index("Application findings"):text.index("Segments in the last window")]
    assert apps.index("general_drift") < apps.index("large_claims") and "share" not in apps
    assert '<span class="badge warn">anomaly</span>' in apps and "&lt;b&gt;x&lt;/b&gt;" in apps
    assert "region=" not in apps and "estimated" not in apps  # each has its own section
    segments = text[text.index("Segments in the last window"):text.index("Estimated performance in")]
    assert segments.index("region=north") < segments.index("region=south") < segments.index("region=other")
    assert '<span class="badge bad">drift_detected</span>' in segments and "<td>age</td>" in segments
    assert "<td>400</td><td>5000</td>" in segments and "too_small" in segments
    estimate = text[text.index("Estimated performance in"):text.index("Windows (")]
    assert '<span class="badge bad">drop_detected</span> estimated mae 912.5' in estimate
    assert "realised expected in 850 to 975) against 700 on the reference, by dle on 1200 rows" in estimate
    assert "no segments configured" in client.get("/endpoints/healthy").text
    history = text[text.index("Retraining history"):]
    assert history.index("promoted") < history.index("trigger")
    assert "drift_detected in 3 of the last 6 windows" in history

    incident = client.get("/endpoints/incident").text
    checks = incident[incident.index("Failed checks in"):incident.index("Windows (")]
    assert checks.count("<li>") == 8 and "observed {&quot;max&quot;: 999}" in checks and "7 unexpected" in checks
    windows = incident[incident.index("Windows ("):]
    assert windows.index("8 (2 critical)") < windows.index('<span class="badge ok">passed</span>')

    healthy = client.get("/endpoints/healthy").text
    assert "Windows (30, newest first)" in healthy and healthy.count('<div class="cell"') == 30
    assert client.get("/endpoints/nope").status_code == 404
    api = client.get("/api/endpoints/incident").json()
    assert len(api["failed_checks"]) == 8 and api["windows"][-1]["failed_critical"] == 2
    assert client.get("/api/endpoints/nope").status_code == 404


def test_endpoints_the_user_may_not_read_are_hidden(view: ModuleType, seeded, db_url: str) -> None:
    client = _client(view, db_url, allowed={"monitor__healthy"})
    assert _ids(client.get("/").text) == ["healthy"]
    assert [e["endpoint_id"] for e in client.get("/api/endpoints").json()["endpoints"]] == ["healthy"]
    assert client.get("/endpoints/incident").status_code == 403
    assert client.get("/api/endpoints/incident").status_code == 403


def test_hostile_values_are_escaped_in_text_and_links(view: ModuleType, seeded, db_url: str) -> None:
    client = _client(view, db_url)
    page = client.get("/").text
    assert "<script>" not in page and "<img" not in page
    row = _row(page, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;")
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in row
    assert 'href="/endpoints/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E%26"' in row
    assert "no windows" in row
    detail = client.get("/endpoints/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E%26")
    assert detail.status_code == 200 and "<script>" not in detail.text and "<img" not in detail.text


def test_empty_registry_and_health(view: ModuleType, db_url: str) -> None:
    client = _client(view, db_url)
    assert "No endpoints are monitored yet" in client.get("/").text
    assert client.get("/api/endpoints").json()["endpoints"] == []
    assert client.get("/health").json() == {"status": "ok"}


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_database_is_a_clear_503_and_health_says_nothing_more(view: ModuleType) -> None:
    url = f"postgresql://mlmon:s3cret@127.0.0.1:{_closed_port()}/mlmon"
    client = _client(view, url)
    page = client.get("/")
    assert page.status_code == 503
    assert "Monitoring data unavailable" in page.text and "cannot connect to database" in page.text
    assert "Traceback" not in page.text and "s3cret" not in page.text
    api = client.get("/api/endpoints")
    assert api.status_code == 503 and "cannot connect to database" in api.json()["error"]
    health = client.get("/health")
    assert health.status_code == 503 and health.json() == {"status": "unavailable"}


def test_unconfigured_and_unmigrated_databases_are_503s(view: ModuleType, empty_db_url: str) -> None:
    def missing() -> str:
        raise LookupError("The conn_id `monitoring_db` isn't defined")

    app = view.create_app(missing)
    app.dependency_overrides[view.html_access] = lambda: lambda ids: set(ids)
    resp = TestClient(app).get("/")
    assert resp.status_code == 503 and "not configured" in resp.text and "monitoring_db" in resp.text
    resp = _client(view, empty_db_url).get("/api/endpoints")
    assert resp.status_code == 503
    assert resp.json() == {"error": "the monitoring schema is missing: run `mlmon db upgrade` first"}


def test_connections_are_bounded_and_time_limited(view: ModuleType, db_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = view.Database(lambda: db_url, limit=1)
    assert db.read(lambda c: c.execute("SHOW statement_timeout").fetchone()[0]) == "10s"
    monkeypatch.setattr(view, "CONNECT_TIMEOUT_S", 0.2)
    with db._connection():
        with pytest.raises(view.MonitoringDataUnavailable, match="busy"):
            db.read(lambda c: c.execute("SELECT 1").fetchone())
    assert db.read(lambda c: c.execute("SELECT 1").fetchone()[0]) == 1


def test_database_url_is_resolved_per_request(view: ModuleType, seeded, db_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The default factory reads MLMON_DATABASE_URL at request time, not when the app is built."""
    client = TestClient(view.create_app())
    assert client.get("/health").status_code == 503
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    assert client.get("/health").json() == {"status": "ok"}


def test_plugin_registers_app_and_external_view(view: ModuleType) -> None:
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
