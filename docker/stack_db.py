"""Databases, logins and grants of the compose stack, run by the one-shot init as the PostgreSQL superuser.

`roles` (before any migration): the Airflow metadata database and its owner, and one login per use:
  - the Airflow metadata owner (`AIRFLOW_DB_USER`), which owns only the Airflow database;
  - the monitoring login (`MLMON_DB_USER`) the tasks and the CLI use: writes schema `monitoring`, reads
    the source tables (`grants`), creates nothing elsewhere;
  - Grafana's login (`MLMON_GRAFANA_DB_USER`), a member of `mlmon_readonly` (SELECT on `monitoring`);
  - the demo model service (`DEMO_DB_USER`), which writes the demo's inference log.
Passwords are (re)set on every run, so a changed `.env` takes effect at the next `docker compose up`.
`grants` (after `mlmon db upgrade` and `mlmon init-demo`): the privileges above, idempotently.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import psycopg
from psycopg import sql

DEMO_TABLES = ("claims_inference", "claims_labels", "claims_training")
READONLY_ROLE = "mlmon_readonly"


def _logins(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Role purpose -> (name, password), from the init's environment."""
    pairs = {"airflow": ("AIRFLOW_DB_USER", "AIRFLOW_DB_PASSWORD"),
             "monitoring": ("MLMON_DB_USER", "MLMON_DB_PASSWORD"),
             "grafana": ("MLMON_GRAFANA_DB_USER", "MLMON_GRAFANA_DB_PASSWORD"),
             "demo": ("DEMO_DB_USER", "DEMO_DB_PASSWORD")}
    missing = [v for pair in pairs.values() for v in pair if not env.get(v)]
    if missing:
        raise SystemExit(f"stack_db: set {', '.join(missing)} in .env")
    return {purpose: (env[user], env[password]) for purpose, (user, password) in pairs.items()}


def _exists(conn: psycopg.Connection, catalog: str, column: str, name: str) -> bool:
    query = sql.SQL("SELECT 1 FROM {} WHERE {} = %s").format(sql.Identifier(catalog), sql.Identifier(column))
    return conn.execute(query, (name,)).fetchone() is not None


def ensure_login(conn: psycopg.Connection, name: str, password: str) -> None:
    verb = "ALTER" if _exists(conn, "pg_roles", "rolname", name) else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
        sql.Identifier(name), sql.Literal(password)))


def roles(conn: psycopg.Connection, env: Mapping[str, str]) -> None:
    logins = _logins(env)
    names = [name for name, _ in logins.values()]
    if len(set(names)) != len(names) or conn.info.user in names:
        raise SystemExit(f"stack_db: the logins {names} must differ from each other and from the superuser "
                         f"{conn.info.user}: each one gets only its own privileges")
    for name, password in logins.values():
        ensure_login(conn, name, password)
    if not _exists(conn, "pg_roles", "rolname", READONLY_ROLE):
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(READONLY_ROLE)))
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READONLY_ROLE), sql.Identifier(logins["grafana"][0])))
    airflow_db, owner = env.get("AIRFLOW_DB_NAME") or "airflow", sql.Identifier(logins["airflow"][0])
    if not _exists(conn, "pg_database", "datname", airflow_db):
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(airflow_db), owner))
    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(airflow_db), owner))
    # Only the Airflow login reaches the Airflow metadata database.
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(airflow_db)))


def grants(conn: psycopg.Connection, env: Mapping[str, str]) -> None:
    logins = _logins(env)
    monitoring, demo = sql.Identifier(logins["monitoring"][0]), sql.Identifier(logins["demo"][0])
    admin = sql.Identifier(conn.info.user)
    statements = [
        "GRANT USAGE ON SCHEMA monitoring TO {monitoring}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA monitoring TO {monitoring}",
        "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA monitoring TO {monitoring}",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {admin} IN SCHEMA monitoring"
        " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {monitoring}",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {admin} IN SCHEMA monitoring GRANT USAGE, SELECT, UPDATE ON SEQUENCES"
        " TO {monitoring}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        "GRANT USAGE ON SCHEMA public TO {monitoring}",
        "GRANT USAGE, CREATE ON SCHEMA public TO {demo}",
        # tables the demo service creates later are readable by the monitoring login too
        "ALTER DEFAULT PRIVILEGES FOR ROLE {demo} IN SCHEMA public GRANT SELECT ON TABLES TO {monitoring}",
    ]
    for statement in statements:
        conn.execute(sql.SQL(statement).format(monitoring=monitoring, demo=demo, admin=admin))
    for table in DEMO_TABLES:
        if conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()[0] is None:
            continue
        name = sql.Identifier("public", table)
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(name, demo))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(name, monitoring))


def main(argv: list[str]) -> int:
    actions = {"roles": roles, "grants": grants}
    if len(argv) != 1 or argv[0] not in actions:
        print(f"usage: stack_db.py {{{'|'.join(actions)}}}", file=sys.stderr)
        return 2
    with psycopg.connect(os.environ["MLMON_ADMIN_DATABASE_URL"], autocommit=True) as conn:
        actions[argv[0]](conn, os.environ)
    print(f"stack_db {argv[0]}: done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
