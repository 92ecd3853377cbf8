"""Connection strings for the compose services, built from parts so that any password works.

Prints `export NAME='value'` lines for docker/entrypoint.sh (and `unset NAME` for an empty optional
setting). A password is percent-encoded into URLs and JSON-encoded into the Airflow Connection, so
`@ / : # %` or quotes in it cannot break them. A service given no password for a login gets no URL for it.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from urllib.parse import quote

# Optional integrations: left empty in .env they are unset, so the code sees "not configured".
OPTIONAL = ("DYNATRACE_URL", "DYNATRACE_API_TOKEN", "AIRFLOW_CONN_DYNATRACE_DEFAULT")


def url(scheme: str, user: str, password: str, host: str, port: str, dbname: str) -> str:
    """A libpq/SQLAlchemy URL; a host starting with '/' is a Unix socket directory."""
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}"
    if host.startswith("/"):
        return f"{scheme}://{auth}@/{quote(dbname, safe='')}?host={quote(host, safe='')}&port={port}"
    return f"{scheme}://{auth}@{host}:{port}/{quote(dbname, safe='')}"


def exports(env: Mapping[str, str]) -> dict[str, str]:
    host = env.get("MLMON_POSTGRES_HOST") or "postgres"
    port = env.get("MLMON_POSTGRES_PORT") or "5432"
    out: dict[str, str] = {}
    if env.get("AIRFLOW_DB_PASSWORD") and env.get("AIRFLOW_DB_USER"):
        out["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url(
            "postgresql+psycopg2", env["AIRFLOW_DB_USER"], env["AIRFLOW_DB_PASSWORD"], host, port,
            env.get("AIRFLOW_DB_NAME") or "airflow")
    dbname = env.get("MLMON_DB_NAME") or "mlmon"
    if env.get("MLMON_DB_PASSWORD") and env.get("MLMON_DB_USER"):
        user, password = env["MLMON_DB_USER"], env["MLMON_DB_PASSWORD"]
        out["MLMON_DATABASE_URL"] = url("postgresql", user, password, host, port, dbname)
        out["AIRFLOW_CONN_MONITORING_DB"] = json.dumps({
            "conn_type": "postgres", "host": host, "port": int(port), "schema": dbname,
            "login": user, "password": password})
    if env.get("POSTGRES_PASSWORD") and env.get("POSTGRES_USER"):  # the one-shot init only
        out["MLMON_ADMIN_DATABASE_URL"] = url("postgresql", env["POSTGRES_USER"], env["POSTGRES_PASSWORD"],
                                              host, port, dbname)
    return out


def main() -> int:
    for name, value in exports(os.environ).items():
        print(f"export {name}={shlex.quote(value)}")
    for name in OPTIONAL:
        if name in os.environ and not os.environ[name].strip():
            print(f"unset {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
