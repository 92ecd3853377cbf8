"""Versioned SQL migrations for schema `monitoring`: `mlmon db upgrade` applies the missing ones."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).parent
_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")
_LOCK_KEY = 7_301_042  # advisory lock so two schedulers upgrading at once do not race


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def available() -> list[Migration]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _NAME.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    return found


def applied(conn: psycopg.Connection) -> set[int]:
    exists = conn.execute("SELECT to_regclass('monitoring.schema_migrations')").fetchone()[0]
    if exists is None:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM monitoring.schema_migrations")}


def installed(conn: psycopg.Connection) -> bool:
    """Whether the summary tables exist in this database (`mlmon db upgrade` has run at least once)."""
    return conn.execute("SELECT to_regclass('monitoring.interval_runs')").fetchone()[0] is not None


def upgrade(conn: psycopg.Connection) -> list[Migration]:
    """Apply missing migrations in order, each in its own transaction; returns what was applied."""
    done: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS monitoring")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS monitoring.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        already = applied(conn)
        for migration in available():
            if migration.version in already:
                continue
            with conn.transaction():
                conn.execute(migration.path.read_text())
                conn.execute(
                    "INSERT INTO monitoring.schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            done.append(migration)
    return done
