"""Airflow hook that turns a Connection into a Dynatrace Metric Ingest client, at execute time only.

Connection fields: host = environment URL or host name (a path such as `/e/<env-id>` for Managed, or
`/metrics/ingest` for the OneAgent local endpoint, may follow), schema = URL scheme (default https),
port = optional port, password = API token with the `metrics.ingest` scope (empty for OneAgent).
Extra `{"timeout": 10, "max_retries": 5}` tunes the client.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.bases.hook import BaseHook

from monitoring_lib.dynatrace.client import IngestClient

_CLIENT_EXTRAS = ("timeout", "max_retries", "backoff_base", "max_backoff")


class DynatraceIngestHook(BaseHook):
    conn_name_attr = "conn_id"
    default_conn_name = "dynatrace_default"
    conn_type = "dynatrace"
    hook_name = "Dynatrace Metric Ingest"

    def __init__(self, conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.conn_id = conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["login"],
            "relabeling": {"host": "Environment URL", "password": "API token (metrics.ingest)"},
            "placeholders": {"host": "https://abc12345.live.dynatrace.com", "schema": "https"},
        }

    def get_url(self) -> str:
        conn = self.get_connection(self.conn_id)
        return connection_url(conn.host or "", conn.schema or None, conn.port)

    def get_client(self, **client_kwargs: Any) -> IngestClient:
        """A client for the Connection; Extra values fill in arguments the caller did not give."""
        conn = self.get_connection(self.conn_id)
        extra = conn.extra_dejson or {}
        options = {name: extra[name] for name in _CLIENT_EXTRAS if name in extra}
        options.update(client_kwargs)
        url = connection_url(conn.host or "", conn.schema or None, conn.port)
        return IngestClient(url, conn.password or None, **options)


def connection_url(host: str, schema: str | None, port: int | None) -> str:
    """Build the environment URL from Connection parts; a host that already is a URL keeps its scheme."""
    host = host.strip()
    if not host:
        raise ValueError("the Dynatrace Connection has no host: set it to the environment URL")
    if "://" in host:
        scheme, _, rest = host.partition("://")
    else:
        scheme, rest = (schema or "https"), host
    netloc, slash, path = rest.partition("/")
    if port and ":" not in netloc:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{slash}{path}".rstrip("/")
