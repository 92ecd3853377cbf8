"""Database access: one place that knows how to reach PostgreSQL and how to fail clearly when it can't."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from monitoring_lib.errors import DatabaseUnavailableError

DATABASE_URL_ENV = "MLMON_DATABASE_URL"
_SHOWN = ("host", "port", "dbname", "user")


def redact(url: str) -> str:
    """Where a connection string points, fit for logs and error messages: host, port, database and user
    only, whatever form the string has (URL, key=value, `?password=` parameter), never a secret."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(a connection string that cannot be parsed)"
    return " ".join(f"{k}={parts[k]}" for k in _SHOWN if parts.get(k)) or "(default connection parameters)"


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
        import pgserver

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
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def database_url(env_var: str = DATABASE_URL_ENV, embedded_dir: str | Path | None = None) -> Iterator[str]:
    """Yield the configured database URL, or start an embedded server for the duration."""
    url = os.environ.get(env_var)
    if url:
        yield url
        return
    with EmbeddedPostgres(embedded_dir) as embedded_url:
        yield embedded_url
