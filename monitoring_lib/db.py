"""Database access: one place that knows how to reach PostgreSQL and how to fail clearly when it can't."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from monitoring_lib import migrations
from monitoring_lib.errors import ConfigError, DatabaseUnavailableError

DATABASE_URL_ENV = "MLMON_DATABASE_URL"
# the `monitoring_db` Connection as Airflow reads it from the environment (a URI or JSON)
AIRFLOW_CONN_ENV = "AIRFLOW_CONN_MONITORING_DB"
_SHOWN = ("host", "port", "dbname", "user")
# extras PostgresHook reads itself; it passes every other extra to libpq as a connection parameter
# extras PostgresHook reads itself and never hands to libpq (its `ignored_extra_options`, less the cloud logins)
_HOOK_EXTRAS = {"cursor", "sqlalchemy_scheme", "sqlalchemy_query", "cluster-identifier", "workgroup-name",
                "aws_conn_id"}
_UNSUPPORTED_EXTRAS = {"iam", "redshift", "redshift-serverless", "azure_conn_id"}


def redact(url: str) -> str:
    """Where a connection string points, fit for logs and error messages: host, port, database and user
    only, whatever form the string has (URL, key=value, `?password=` parameter), never a secret."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(a connection string that cannot be parsed)"
    return " ".join(f"{k}={parts[k]}" for k in _SHOWN if parts.get(k)) or "(default connection parameters)"


def connection_url(conn_type: str | None, host: str | None, login: str | None, password: str | None,
                   port: int | str | None, schema: str | None, extra: Mapping[str, Any] | None = None) -> str:
    """A postgresql URL from an Airflow Connection's fields, connecting as PostgresHook's `get_conn` does: login
    and password URL-encoded, the extras as libpq parameters. Shared by the DAG tasks and the CLI (which
    imports no Airflow) so both reach the same database from the same Connection.

    Not `Connection.get_uri()` (it renders non-string extras as one `__extra__` JSON parameter, which libpq
    rejects) nor `PostgresHook.get_uri()` (a SQLAlchemy URL: `postgresql+psycopg`, which libpq and ADBC
    reject, and without the libpq extras such as `sslmode` that the hook's own connections use)."""
    if conn_type not in ("postgres", "postgresql"):
        raise ConfigError([f"the monitoring_db Connection is of type '{conn_type or ''}', expected postgres"])
    extra = dict(extra or {})
    unsupported = sorted(k for k in _UNSUPPORTED_EXTRAS if extra.get(k))
    if unsupported:
        raise ConfigError([f"the monitoring_db Connection sets {unsupported}: cloud token logins are not supported,"
                           f" set {DATABASE_URL_ENV} instead"])
    user = quote(login or "", safe="") + (f":{quote(password, safe='')}" if password else "")
    where = quote(host or "", safe="")
    if ":" in (host or "") and not (host or "").startswith("/"):
        where = f"[{host}]"  # an IPv6 address
    try:
        where += f":{int(port)}" if port not in (None, "") else ""
    except ValueError:
        raise ConfigError([f"the monitoring_db Connection's port is not a number: {port!r}"]) from None
    query = urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in extra.items()
                       if k not in _HOOK_EXTRAS and k not in _UNSUPPORTED_EXTRAS and v is not None})
    path = f"/{quote(schema, safe='')}" if schema else "/"
    return f"postgresql://{f'{user}@' if user else ''}{where}{path}{f'?{query}' if query else ''}"


def airflow_connection_url(value: str) -> str:
    """The URL of a Connection written the ways Airflow reads `AIRFLOW_CONN_*`: JSON
    (`{"conn_type": "postgres", "host": ..., "login": ..., "password": ..., "port": ..., "schema": ...}`)
    or a URI (`postgresql://login:password@host:port/schema?extra=value`, `__extra__` holding JSON).
    Errors never quote the value: it holds a password."""
    text = value.strip()
    try:
        if text.startswith("{"):
            fields = json.loads(text)
            extra = fields.get("extra") or {}
            extra = json.loads(extra) if isinstance(extra, str) else extra
            return connection_url(fields.get("conn_type"), fields.get("host"), fields.get("login"),
                                  fields.get("password"), fields.get("port"), fields.get("schema"), extra)
        parts = urlsplit(text)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        extra = json.loads(query["__extra__"]) if "__extra__" in query else query
        return connection_url(parts.scheme.replace("-", "_"), _uri_host(parts),
                              unquote(parts.username or ""), unquote(parts.password or ""), parts.port,
                              unquote(parts.path[1:]), extra)
    except ConfigError as exc:
        raise ConfigError([f"{AIRFLOW_CONN_ENV}: {p}" for p in exc.problems]) from None
    except (ValueError, AttributeError, TypeError):  # JSONDecodeError is a ValueError; so is a bad port
        raise ConfigError([f"{AIRFLOW_CONN_ENV}: neither a connection URI nor a JSON connection"]) from None


def _uri_host(parts: SplitResult) -> str:
    """The host as Airflow reads it from a URI: a socket directory (`%2Ftmp%2Fpg`) keeps its case."""
    host = unquote(parts.hostname or "")
    if "/" in host:
        host = unquote(parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0])
    return host


def configured_database() -> tuple[str, str] | None:
    """The monitoring database the DAGs use, outside Airflow: (url, where it was found), or None.

    `MLMON_DATABASE_URL` first, as in the tasks, then the `monitoring_db` Connection from
    `AIRFLOW_CONN_MONITORING_DB`. A Connection kept in Airflow's metadata database or a secrets
    backend is out of reach here (this library never imports Airflow): export one of the two.
    """
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url, DATABASE_URL_ENV
    value = os.environ.get(AIRFLOW_CONN_ENV)
    if value:
        return airflow_connection_url(value), f"{AIRFLOW_CONN_ENV} (the monitoring_db Connection)"
    return None


def connect(url: str, *, autocommit: bool = False, connect_timeout: int = 10) -> psycopg.Connection:
    """Open a psycopg connection; an unreachable server becomes one clear DatabaseUnavailableError."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout)
    except psycopg.ProgrammingError:  # its text may quote a fragment of the string, password included
        raise DatabaseUnavailableError("cannot connect to database: the connection string cannot be parsed") from None
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailableError(f"cannot connect to database {redact(url)}: {first_line}") from exc


class EmbeddedPostgres:
    """A throwaway PostgreSQL 16 from the pip-installed `pgserver`, so nothing needs a system server.

    `persistent_dir` keeps the data between runs (the demo); otherwise a temporary directory is
    created and deleted on stop (tests).
    """

    def __init__(self, persistent_dir: str | Path | None = None):
        self._persistent = persistent_dir is not None
        if persistent_dir is None:
            # Unix socket paths are limited to ~107 bytes, so keep the directory short.
            self._dir = Path(tempfile.mkdtemp(prefix="mlmon-pg-", dir="/tmp"))
        else:
            self._dir = Path(persistent_dir).resolve()
            self._dir.mkdir(parents=True, exist_ok=True)
        self._server = None

    def start(self) -> str:
        import pgserver  # the optional `embedded` extra: only a machine without a database server has it

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = pgserver.get_server(
                self._dir / "pgdata", cleanup_mode="stop" if self._persistent else "delete"
            )
        return self._server.get_uri()

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if not self._persistent:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mlmon_home() -> Path:
    """Where the project-local state of the commands lives (embedded database, local Airflow home)."""
    return Path(os.environ.get("MLMON_HOME") or Path.cwd() / ".mlmon")


@contextlib.contextmanager
def command_database(upgrade_embedded: bool = True, shared_with_dags: bool = False) -> Iterator[str]:
    """The database a command works on: the one the DAGs use, named on stderr (redacted); without one, the
    project-local embedded one (created and migrated on first use), said loudly: its tables are not the ones
    the DAGs write, unless the command hands it to the DAGs itself (`shared_with_dags`)."""
    found = configured_database()
    if found is not None:
        url, source = found
        print(f"mlmon: database {redact(url)} (from {source})", file=sys.stderr)
        yield url
        return
    home = mlmon_home()
    whose = "which this command's Airflow uses too" if shared_with_dags else "not the one the DAGs use"
    print(f"mlmon: no {DATABASE_URL_ENV} or {AIRFLOW_CONN_ENV} (monitoring_db Connection) set: using the embedded"
          f" database under {home}, {whose}", file=sys.stderr)
    with EmbeddedPostgres(home) as url:
        if upgrade_embedded:
            with connect(url) as conn:
                migrations.upgrade(conn)
        yield url
