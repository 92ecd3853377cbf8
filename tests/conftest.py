"""Shared fixtures: a real PostgreSQL for every test that needs one.

`TEST_DATABASE_URL` points at an existing server (the role needs CREATEDB); otherwise an embedded
server from the pip-installed `pgserver` is started once per session. Each test gets its own
database cloned from a migrated template, so tests are isolated and order does not matter.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from monitoring_lib import migrations
from monitoring_lib.db import EmbeddedPostgres

TEMPLATE_DB = "mlmon_test_template"


def _with_dbname(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    embedded = EmbeddedPostgres()
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> str:
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE_DB)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    with psycopg.connect(_with_dbname(pg_server_url, TEMPLATE_DB)) as conn:
        migrations.upgrade(conn)
        conn.commit()
    return TEMPLATE_DB


@pytest.fixture()
def db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test; dropped afterwards."""
    name = f"mlmon_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db))
        )
    try:
        yield _with_dbname(pg_server_url, name)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture()
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all, for migration tests."""
    name = f"mlmon_e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_dbname(pg_server_url, name)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture()
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as connection:
        yield connection


def dbname_of(url: str) -> str:
    return conninfo_to_dict(url)["dbname"]


_LAYER_MARKS = {
    "unit": "unit",
    "parity": "parity",
    "database": "database",
    "airflow_runs": "airflow",
    "dashboards": "dashboards",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder, so `-m unit` selects the fast layer without a database."""
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        try:
            layer = Path(item.fspath).resolve().relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        mark = _LAYER_MARKS.get(layer)
        if mark:
            item.add_marker(mark)
