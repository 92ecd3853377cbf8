"""The "Model Monitoring" page inside the Airflow UI: every endpoint's latest state, with links to Grafana.

A small FastAPI app mounted by the Airflow API server under `/mlmon` and shown in the navigation as an
external view. It reads the summary tables only (never the source), renders server-side HTML with every
value escaped, and resolves the database URL per request so importing the plugin touches no database.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import psycopg
from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse

from monitoring_lib.db import connect
from monitoring_lib.endpoints import list_endpoints
from monitoring_lib.errors import DatabaseUnavailableError

GRAFANA_URL_ENV = "MLMON_GRAFANA_URL"
DEFAULT_GRAFANA_URL = "http://localhost:3000"
OVERVIEW_DASHBOARD_UID = "mlmon-overview"
DETAILS_DASHBOARD_UID = "mlmon-details"
URL_PREFIX = "/mlmon"
CONNECT_TIMEOUT_S = 5

DRIFT_BADGES = {"no_drift": "badge-green", "possible_drift": "badge-yellow", "drift_detected": "badge-red"}
DQ_BADGES = {"passed": "badge-green", "warning": "badge-yellow", "failed": "badge-red"}

log = logging.getLogger(__name__)
T = TypeVar("T")


class MonitoringDataUnavailable(Exception):
    """The page cannot be built from the database; the message is safe to show (no credentials)."""


def _default_database_url() -> str:
    """The same resolution as the DAGs: `MLMON_DATABASE_URL`, else the `monitoring_db` Connection."""
    from mlmon_airflow import database_url

    return database_url()


def grafana_links(endpoint_id: str | None = None) -> dict[str, str]:
    """Dashboard URLs; the base is read per call so a changed environment needs no restart."""
    base = (os.environ.get(GRAFANA_URL_ENV) or DEFAULT_GRAFANA_URL).rstrip("/")
    links = {"overview": f"{base}/d/{OVERVIEW_DASHBOARD_UID}"}
    if endpoint_id is not None:
        links["details"] = f"{base}/d/{DETAILS_DASHBOARD_UID}?{urlencode({'var-endpoint': endpoint_id})}"
    return links


def _latest_retraining(conn: psycopg.Connection, endpoint_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per endpoint, the newest training run or triggering decision (a training wins a tie)."""
    if not endpoint_ids:
        return {}
    rows = conn.execute(
        """
        SELECT DISTINCT ON (endpoint_id) endpoint_id, event_type, outcome, created_at, model_version_after
        FROM monitoring.retraining_events
        WHERE endpoint_id = ANY(%s) AND (event_type = 'training' OR (event_type = 'decision' AND triggered))
        ORDER BY endpoint_id, created_at DESC, (event_type = 'training') DESC, event_id DESC
        """,
        (endpoint_ids,),
    ).fetchall()
    return {
        r[0]: {"event_type": r[1], "outcome": r[2], "at": r[3], "model_version_after": r[4]} for r in rows
    }


def load_endpoints(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The endpoint registry joined with its last window and last retraining, plus Grafana links."""
    rows = list_endpoints(conn)
    retraining = _latest_retraining(conn, [r["endpoint_id"] for r in rows])
    return [
        {**row, "last_retraining": retraining.get(row["endpoint_id"]), "grafana": grafana_links(row["endpoint_id"])}
        for row in rows
    ]


def _read(database_url_factory: Callable[[], str], reader: Callable[[psycopg.Connection], T]) -> T:
    """Run `reader` on a fresh connection, turning every database failure into one message fit for a 503."""
    try:
        url = database_url_factory()
    except Exception as exc:  # any lookup failure (e.g. a missing Connection) means "not configured"
        log.exception("monitoring database URL could not be resolved")
        raise MonitoringDataUnavailable(f"monitoring database is not configured: {exc}") from exc
    try:
        with connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            return reader(conn)
    except DatabaseUnavailableError as exc:
        log.warning("%s", exc)
        raise MonitoringDataUnavailable(str(exc)) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise MonitoringDataUnavailable("the monitoring schema is missing: run `mlmon db upgrade` first") from exc
    except psycopg.OperationalError as exc:
        log.warning("monitoring database failed during the query: %s", exc)
        raise MonitoringDataUnavailable("the monitoring database failed during the query; try again") from exc


def _count_endpoints(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM monitoring.model_endpoints").fetchone()[0])


def _fmt_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _text(value: object) -> str:
    return "-" if value is None else html.escape(str(value))


def _badge(value: str | None, classes: dict[str, str]) -> str:
    css = classes.get(value or "", "badge-grey")
    return f'<span class="badge {css}">{_text(value or "unknown")}</span>'


def _retraining_cell(event: dict[str, Any] | None) -> str:
    if event is None:
        return "never"
    return f"{_text(event['outcome'])} ({_text(event['event_type'])})<br><small>{_text(_fmt_time(event['at']))}</small>"


def _row_html(e: dict[str, Any]) -> str:
    window = f"{_fmt_time(e['last_window_start'])} &rarr; {_fmt_time(e['last_window_end'])}"
    if e["last_window_end"] is None:
        window = "-"
    details = html.escape(e["grafana"]["details"], quote=True)
    cells = [
        _text(e["endpoint_id"]), _text(e["project"]), _text(e["model_name"]), _text(e["model_version"]),
        _badge(e["drift_status"], DRIFT_BADGES), window, _text(e["last_rows"]), _badge(e["dq_state"], DQ_BADGES),
        _retraining_cell(e["last_retraining"]),
        f'<a href="{details}" target="_blank" rel="noopener">details</a>',
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a1a1a; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.4rem 0.6rem; border-bottom: 1px solid #ddd; vertical-align: top; }
.badge { padding: 0.1rem 0.5rem; border-radius: 0.6rem; font-size: 0.85rem; color: #fff; }
.badge-green { background: #2e7d32; } .badge-yellow { background: #f9a825; color: #1a1a1a; }
.badge-red { background: #c62828; } .badge-grey { background: #757575; }
.error { padding: 1rem; border: 1px solid #c62828; background: #fdecea; }
"""

_HEADERS = ["Endpoint", "Project", "Model", "Version", "Drift", "Last window", "Rows", "Data quality",
            "Last retraining", "Grafana"]


def _page(body: str) -> str:
    overview = html.escape(grafana_links()["overview"], quote=True)
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Model Monitoring</title>"
        f"<style>{_STYLE}</style></head><body><h1>Model Monitoring</h1>"
        f'<p><a href="{overview}" target="_blank" rel="noopener">Grafana overview</a> &middot; '
        '<a href="api/endpoints">JSON</a></p>'
        f"{body}</body></html>"
    )


def render_page(endpoints: list[dict[str, Any]]) -> str:
    """The endpoint table as a complete HTML document; every database value is escaped."""
    if not endpoints:
        return _page("<p>No endpoints are monitored yet: the first monitoring run registers them.</p>")
    head = "".join(f"<th>{h}</th>" for h in _HEADERS)
    rows = "".join(_row_html(e) for e in endpoints)
    return _page(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")


def create_app(database_url_factory: Callable[[], str] | None = None) -> FastAPI:
    """The monitoring view app; the URL factory runs per request (default: env var or Airflow Connection)."""
    factory = database_url_factory or _default_database_url
    app = FastAPI(title="Model Monitoring", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        try:
            endpoints = _read(factory, load_endpoints)
        except MonitoringDataUnavailable as exc:
            body = f'<div class="error"><strong>Monitoring data unavailable.</strong> {html.escape(str(exc))}</div>'
            return HTMLResponse(_page(body), status_code=503)
        return HTMLResponse(render_page(endpoints))

    @app.get("/api/endpoints")
    def api_endpoints() -> JSONResponse:
        try:
            endpoints = _read(factory, load_endpoints)
        except MonitoringDataUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse(jsonable_encoder({"endpoints": endpoints, "grafana": grafana_links()}))

    @app.get("/health")
    def health() -> JSONResponse:
        try:
            count = _read(factory, _count_endpoints)
        except MonitoringDataUnavailable as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "endpoints": count})

    return app


class MonitoringViewPlugin(AirflowPlugin):
    """Mounts the view under `/mlmon` and adds "Model Monitoring" to the UI navigation (Browse menu)."""

    name = "mlmon_monitoring_view"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Model Monitoring"}]
    external_views = [
        {
            "name": "Model Monitoring",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "model-monitoring",
        }
    ]
