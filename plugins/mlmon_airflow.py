"""Airflow glue for the monitoring DAGs: where the database is, and how library errors become task states.

Kept out of `monitoring_lib` (which never imports Airflow) and out of the DAG files (which stay thin).
Imported inside task bodies only, so DAG parsing touches no database or network.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from airflow.sdk.exceptions import AirflowFailException

from monitoring_lib.db import DATABASE_URL_ENV
from monitoring_lib.errors import ConfigError, DynatraceError, DynatraceUnavailableError, QualityGateFailed

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


@contextlib.contextmanager
def task_errors() -> Iterator[None]:
    """Failures that a retry cannot fix fail the task at once; transient ones stay retryable."""
    try:
        yield
    except (QualityGateFailed, ConfigError) as exc:
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
