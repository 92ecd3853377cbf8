"""The "Model Monitoring" page inside the Airflow UI: each endpoint's recent windows, what failed and why.

A small FastAPI app mounted by the Airflow API server under `/mlmon` and shown in the navigation as an
external view. Access: every route but `/health` needs the same login as the rest of the UI (Airflow's
`get_user`: bearer header or the UI's `_token` cookie), and an endpoint is shown only to a user the auth
manager lets read the runs of its monitoring DAG `monitor__<endpoint_id>` (GET on DAG runs). Anonymous:
the JSON API answers 401 like `/api/v2`, the HTML pages redirect to the auth manager's login page (the way
the UI sends a signed-out person to log in) and come back after it. `/health` is anonymous and says only
"ok" or "unavailable".

Database: one short-lived connection per request with a connect and a statement timeout, and at most
`MAX_CONNECTIONS` at once (a busy view answers 503 rather than opening more). Reads the summary tables only.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlencode

import psycopg
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

import monitoring_view_airflow as af
import monitoring_view_html as views
from monitoring_lib import operator_view
from monitoring_lib.db import connect
from monitoring_lib.errors import DatabaseUnavailableError
from monitoring_lib.results.endpoints import list_endpoints
from monitoring_lib.results.view import schema_readable

GRAFANA_URL_ENV = "MLMON_GRAFANA_URL"
OVERVIEW_DASHBOARD_UID = "mlmon-overview"
DETAILS_DASHBOARD_UID = "mlmon-details"
URL_PREFIX = "/mlmon"
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 10_000
MAX_CONNECTIONS = 4

log = logging.getLogger(__name__)
T = TypeVar("T")


class MonitoringDataUnavailable(Exception):
    """The page cannot be built from the database; the message is safe to show (no credentials)."""


def _default_database_url() -> str:
    """The same resolution as the DAGs: `MLMON_DATABASE_URL`, else the `monitoring_db` Connection."""
    from mlmon_airflow import database_url

    return database_url()


def grafana_links(endpoint_id: str | None = None) -> dict[str, str] | None:
    """Dashboard URLs when `MLMON_GRAFANA_URL` is set (read per call), else None: no link to a guessed host."""
    base = (os.environ.get(GRAFANA_URL_ENV) or "").rstrip("/")
    if not base:
        return None
    links = {"overview": f"{base}/d/{OVERVIEW_DASHBOARD_UID}"}
    if endpoint_id is not None:
        links["details"] = f"{base}/d/{DETAILS_DASHBOARD_UID}?{urlencode({'var-endpoint': endpoint_id})}"
    return links


class Database:
    """Short-lived, bounded connections: never more than `limit` open at once from this view."""

    def __init__(self, url_factory: Callable[[], str], limit: int = MAX_CONNECTIONS) -> None:
        self._factory = url_factory
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        if not self._slots.acquire(timeout=CONNECT_TIMEOUT_S):
            raise MonitoringDataUnavailable("the monitoring view is busy; try again")
        try:
            try:
                url = self._factory()
            except Exception as exc:  # any lookup failure (e.g. a missing Connection) means "not configured"
                log.exception("monitoring database URL could not be resolved")
                raise MonitoringDataUnavailable(f"monitoring database is not configured: {exc}") from exc
            with connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(STATEMENT_TIMEOUT_MS),))
                yield conn
        finally:
            self._slots.release()

    def read(self, reader: Callable[[psycopg.Connection], T]) -> T:
        """Run `reader`, turning every database failure into one message fit for a 503."""
        try:
            with self._connection() as conn:
                return reader(conn)
        except DatabaseUnavailableError as exc:
            log.warning("%s", exc)
            raise MonitoringDataUnavailable(str(exc)) from exc
        except psycopg.errors.UndefinedTable as exc:
            raise MonitoringDataUnavailable("the monitoring schema is missing: run `mlmon db upgrade` first") from exc
        except psycopg.OperationalError as exc:
            log.warning("monitoring database failed during the query: %s", exc)
            raise MonitoringDataUnavailable("the monitoring database failed during the query; try again") from exc


def dag_access(user: Any = Depends(af.current_user)) -> af.DagFilter:
    """The signed-in user's DAG filter (a dependency, so every route but /health needs a login)."""
    return af.dag_filter_for(user)


async def html_access(request: Request) -> af.DagFilter | None:
    """As `dag_access`, but None for a signed-out person, whom the HTML pages send to the login page."""
    try:
        user = await af.current_user(request)
    except HTTPException as exc:
        if exc.status_code in (401, 403):
            return None
        raise
    return af.dag_filter_for(user)


def airflow_metadata() -> af.MetadataReader:
    return af.read_metadata


def _ui_base(request: Request) -> tuple[str, str]:
    """(this view's base path, the Airflow UI's base path), both from where the app is mounted."""
    root = request.scope.get("root_path", "").rstrip("/")
    return root, root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else ""


def _decorate(items: list[dict[str, Any]], metadata: af.MetadataReader, ui_base: str) -> list[dict[str, Any]]:
    """Add the Airflow side: monitor and retraining DAG state, failed-run links, Grafana links."""
    for e in items:
        e["monitor_dag"] = af.monitor_dag_id(e["endpoint_id"])
        e["retraining_dag"] = af.retraining_dag_id(e["endpoint_id"])
    state = metadata(sorted({d for e in items for d in (e["monitor_dag"], e["retraining_dag"])}))
    for e in items:
        monitor = state.get(e["monitor_dag"], {})
        failed = monitor.get("last_failed_run") or {}
        e["airflow"] = {"monitor": monitor, "retraining": state.get(e["retraining_dag"], {})}
        e["links"] = {**af.ui_links(ui_base, e["monitor_dag"], failed.get("run_id"), failed.get("task_id")),
                      "retraining_dag": af.ui_links(ui_base, e["retraining_dag"])["dag"]}
        e["grafana"] = grafana_links(e["endpoint_id"])
    return items


def _check(state: str | None, sort: str | None) -> None:
    if state and state not in (*operator_view.STATES, "fresh"):
        raise HTTPException(400, f"unknown state {state!r}; one of {', '.join((*operator_view.STATES, 'fresh'))}")
    if sort and sort not in operator_view.SORTS:
        raise HTTPException(400, f"unknown sort {sort!r}; one of {', '.join(operator_view.SORTS)}")


def _login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(af.login_url(str(request.url)), status_code=303)


def create_app(database_url_factory: Callable[[], str] | None = None) -> FastAPI:
    """The monitoring view app; the URL factory runs per request (default: env var or Airflow Connection)."""
    db = Database(database_url_factory or _default_database_url)
    app = FastAPI(title="Model Monitoring", docs_url=None, redoc_url=None, openapi_url=None)

    def visible(conn: psycopg.Connection, allowed: af.DagFilter, endpoint_id: str | None = None) -> set[str]:
        ids = [endpoint_id] if endpoint_id else [r["endpoint_id"] for r in list_endpoints(conn)]
        permitted = allowed([af.monitor_dag_id(i) for i in ids])
        return {i for i in ids if af.monitor_dag_id(i) in permitted}

    def listing(allowed: af.DagFilter, metadata: af.MetadataReader, request: Request, state: str | None,
                sort: str | None, windows: int) -> list[dict[str, Any]]:
        _check(state, sort)
        items = db.read(lambda c: operator_view.overviews(c, windows=windows, endpoint_ids=visible(c, allowed)))
        return operator_view.filter_and_sort(_decorate(items, metadata, _ui_base(request)[1]), state, sort)

    def detail(allowed: af.DagFilter, metadata: af.MetadataReader, request: Request, endpoint_id: str,
               windows: int) -> dict[str, Any]:
        def read(c: psycopg.Connection) -> dict[str, Any] | None:
            if not visible(c, allowed, endpoint_id):
                raise HTTPException(403, "Forbidden")
            return operator_view.endpoint_detail(c, endpoint_id, windows=windows)

        item = db.read(read)
        if item is None:
            raise HTTPException(404, f"no endpoint {endpoint_id!r}")
        return _decorate([item], metadata, _ui_base(request)[1])[0]

    def html_route(render: Callable[[], str]) -> Response:
        try:
            return HTMLResponse(render())
        except MonitoringDataUnavailable as exc:
            return HTMLResponse(views.error_page(str(exc)), status_code=503)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, allowed: af.DagFilter | None = Depends(html_access),
              metadata: af.MetadataReader = Depends(airflow_metadata),
              state: str | None = None, sort: str | None = None,
              windows: int = Query(operator_view.DEFAULT_WINDOWS, ge=1, le=500)) -> Response:
        if allowed is None:
            return _login_redirect(request)
        return html_route(lambda: views.render_list(listing(allowed, metadata, request, state, sort, windows),
                                                    _ui_base(request)[0], state, sort, grafana_links()))

    @app.get("/endpoints/{endpoint_id:path}", response_class=HTMLResponse)
    def endpoint_page(request: Request, endpoint_id: str, allowed: af.DagFilter | None = Depends(html_access),
                      metadata: af.MetadataReader = Depends(airflow_metadata),
                      windows: int = Query(96, ge=1, le=2000)) -> Response:
        if allowed is None:
            return _login_redirect(request)
        return html_route(lambda: views.render_detail(detail(allowed, metadata, request, endpoint_id, windows),
                                                      _ui_base(request)[0], grafana_links()))

    @app.get("/api/endpoints")
    def api_endpoints(request: Request, allowed: af.DagFilter = Depends(dag_access),
                      metadata: af.MetadataReader = Depends(airflow_metadata), state: str | None = None,
                      sort: str | None = None, windows: int = Query(operator_view.DEFAULT_WINDOWS, ge=1, le=500)
                      ) -> JSONResponse:
        try:
            items = listing(allowed, metadata, request, state, sort, windows)
        except MonitoringDataUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse(jsonable_encoder({"endpoints": items, "grafana": grafana_links()}))

    @app.get("/api/endpoints/{endpoint_id:path}")
    def api_endpoint(request: Request, endpoint_id: str, allowed: af.DagFilter = Depends(dag_access),
                     metadata: af.MetadataReader = Depends(airflow_metadata),
                     windows: int = Query(96, ge=1, le=2000)) -> JSONResponse:
        try:
            item = detail(allowed, metadata, request, endpoint_id, windows)
        except MonitoringDataUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse(jsonable_encoder(item))

    @app.get("/health")
    def health() -> JSONResponse:
        """Anonymous and minimal: a status word, nothing about endpoints or the database error."""
        try:
            db.read(schema_readable)
        except MonitoringDataUnavailable:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

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
