import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from monitoring_lib import migrations
from monitoring_lib.cli import EXIT_CONFIG, EXIT_UNAVAILABLE, main
from monitoring_lib.db import airflow_connection_url
from tests.sources import WINDOW_END, WINDOW_START, seed_source

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "p@ss/w:rd#1 %x"

GOOD = """
endpoint_id: claims-test
project: insurance-claims
model: {name: claims_model, version: "1"}
source:
  table: public.inference
  timestamp_column: ts
  numeric_features: [claimed_amount, vehicle_age]
  categorical_features: [region]
quality: {enabled: false}
dynatrace: {enabled: false}
"""


@pytest.fixture()
def config_dir(tmp_path, monkeypatch):
    (tmp_path / "claims.yaml").write_text(GOOD)
    monkeypatch.setenv("MLMON_CONFIG_DIR", str(tmp_path))
    return tmp_path


def test_bad_config_prints_file_field_reason(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.yaml").write_text(textwrap.dedent("""
        endpoint_id: bad
        project: p
        model: {name: m}
        source: {table: t, numeric_features: [a]}
        schedule: {interval: often}
        drift: {metrics: [tvd, nonsense]}
    """))
    monkeypatch.setenv("MLMON_CONFIG_DIR", str(tmp_path))
    code = main(["validate-config", "--no-db"])
    out = capsys.readouterr().out
    assert code == EXIT_CONFIG
    assert f"{tmp_path / 'bad.yaml'}: schedule.interval: 'often' is not a duration" in out
    assert f"{tmp_path / 'bad.yaml'}: drift.metrics: unknown metric(s) ['nonsense']" in out


def test_secrets_in_config_are_rejected(tmp_path, monkeypatch, capsys):
    (tmp_path / "s.yaml").write_text(GOOD + "dynatrace: {api_token: abc}\n")
    monkeypatch.setenv("MLMON_CONFIG_DIR", str(tmp_path))
    assert main(["validate-config", "--no-db"]) == EXIT_CONFIG
    assert "dynatrace.api_token: secrets do not belong in config" in capsys.readouterr().out


def test_validate_config_checks_columns_against_the_live_database(config_dir, conn, db_url, monkeypatch, capsys):
    seed_source(conn)
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    assert main(["validate-config"]) == 0
    (config_dir / "claims.yaml").write_text(GOOD.replace("vehicle_age]", "vehicle_age, wheel_count]"))
    assert main(["validate-config"]) == EXIT_CONFIG
    out = capsys.readouterr().out
    assert "source.numeric_features: column 'wheel_count' not found in public.inference" in out


@pytest.mark.parametrize("form", ["postgresql://mlmon:secret-pw@127.0.0.1:{port}/mlmon",
                                  "host=127.0.0.1 port={port} user=mlmon password=secret-pw dbname=mlmon",
                                  "postgresql://127.0.0.1:{port}/mlmon?user=mlmon&password=secret-pw",
                                  "host=127.0.0.1 port={port} password='secret-pw"])
def test_down_database_gives_one_clear_line(config_dir, monkeypatch, capsys, form):
    """Whatever form the connection string has (a URL, key=value pairs, a password parameter, a broken
    quote), the error names where it tried to connect and never the password."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLMON_DATABASE_URL", form.format(port=port))
    code = main(["run-interval", "--endpoint", "claims-test", "--start", WINDOW_START.isoformat(),
                 "--end", WINDOW_END.isoformat()])
    err = capsys.readouterr().err
    assert code == EXIT_UNAVAILABLE
    named, *errors = err.strip().splitlines()  # which database, then one line for the error
    assert named.startswith("mlmon: database ") and named.endswith("(from MLMON_DATABASE_URL)")
    assert len(errors) == 1 and errors[0].startswith("mlmon: database unavailable: cannot connect to database")
    assert "secret-pw" not in err and "Traceback" not in err


def test_run_interval_backfill_and_status(config_dir, conn, db_url, monkeypatch, capsys):
    seed_source(conn)
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    assert main(["run-interval", "--endpoint", "claims-test", "--start", "2026-03-01T10:00:00Z",
                 "--end", "2026-03-01T11:00:00Z"]) == 0
    assert "rows=600" in capsys.readouterr().out
    assert main(["backfill", "--endpoint", "claims-test", "--start", "2026-03-01T08:00:00Z",
                 "--end", "2026-03-01T12:00:00Z"]) == 0
    assert "backfilled 4 interval(s)" in capsys.readouterr().out
    runs = conn.execute("SELECT status, rows_seen FROM monitoring.interval_runs ORDER BY window_start").fetchall()
    # the boundary rows (one microsecond before the window, and exactly at its end) land next door
    assert runs == [("no_data", 0), ("ok", 1), ("ok", 600), ("ok", 1)]
    assert main(["status"]) == 0
    table = capsys.readouterr().out
    assert "claims-test" in table and "insurance-claims" in table
    assert main(["status", "--endpoint", "claims-test"]) == 0
    assert "2026-03-01 10:00" in capsys.readouterr().out


def test_unknown_endpoint_and_bad_window(config_dir, db_url, monkeypatch, capsys):
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    assert main(["run-interval", "--endpoint", "nope", "--start", "2026-03-01T10:00:00Z",
                 "--end", "2026-03-01T11:00:00Z"]) == EXIT_CONFIG
    assert "no valid config for 'nope' (valid: claims-test)" in capsys.readouterr().err
    assert main(["run-interval", "--endpoint", "claims-test", "--start", "2026-03-01T11:00:00Z",
                 "--end", "2026-03-01T10:00:00Z"]) == 1
    assert "must be after its start" in capsys.readouterr().err


def test_db_upgrade_is_idempotent_from_the_cli(empty_db_url, monkeypatch, capsys):
    monkeypatch.setenv("MLMON_DATABASE_URL", empty_db_url)
    assert main(["db", "upgrade"]) == 0
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in migrations.available())
    assert f"applied {len(migrations.available())} migration(s): {names}" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "applied 0 migration(s)" in capsys.readouterr().out


@pytest.fixture()
def conn_login(db_url, conn):
    """A login with a password full of URL delimiters on the test database, holding the seeded source."""
    seed_source(conn)
    conn.commit()
    role = f"mlmon_conn_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD)))
    conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    conn.commit()
    yield {**conninfo_to_dict(db_url), "user": role}
    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    conn.commit()


def _mlmon(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The CLI as an operator runs it: a fresh process whose environment holds only what is given."""
    (tmp_path / "configs").mkdir(exist_ok=True)
    (tmp_path / "configs" / "claims.yaml").write_text(GOOD)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLMON"))}
    return subprocess.run([sys.executable, "-m", "monitoring_lib.cli", *args], cwd=tmp_path, text=True,
                          capture_output=True, timeout=120, check=False,
                          env={**base, "PYTHONPATH": str(REPO), "MLMON_CONFIG_DIR": str(tmp_path / "configs"),
                               "MLMON_HOME": str(tmp_path / "home"), **env})


def _connection(info: dict, form: str) -> str:
    """`monitoring_db` written as Airflow takes it from AIRFLOW_CONN_MONITORING_DB (host: the socket directory)."""
    if form == "uri":
        return (f"postgres://{quote(info['user'], safe='')}:{quote(PASSWORD, safe='')}@"
                f"{quote(info['host'], safe='')}:{info.get('port', 5432)}/{quote(info['dbname'], safe='')}")
    return json.dumps({"conn_type": "postgres", "host": info["host"], "login": info["user"], "password": PASSWORD,
                       "port": int(info.get("port", 5432)), "schema": info["dbname"]})


@pytest.mark.parametrize("form", ["uri", "json"])
def test_validate_config_checks_the_database_of_the_monitoring_db_connection(tmp_path, conn_login, form):
    """Only AIRFLOW_CONN_MONITORING_DB set, as in an Airflow deployment: the CLI checks that database, says
    which one it checked, and never prints the password."""
    value = _connection(conn_login, form)
    url = airflow_connection_url(value)
    assert {k: conninfo_to_dict(url).get(k) for k in ("user", "password", "dbname", "host")} == {
        "user": conn_login["user"], "password": PASSWORD, "dbname": conn_login["dbname"], "host": conn_login["host"]}
    done = _mlmon(tmp_path, {"AIRFLOW_CONN_MONITORING_DB": value}, "validate-config")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"mlmon: database host={conn_login['host']} port={conn_login.get('port', 5432)}"
            f" dbname={conn_login['dbname']} user={conn_login['user']}"
            " (from AIRFLOW_CONN_MONITORING_DB (the monitoring_db Connection))") in done.stderr
    assert "1 config file(s) checked, 0 problem(s)" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr and quote(PASSWORD, safe="") not in done.stdout + done.stderr
    with psycopg.connect(url) as login:  # the login really reaches that database
        assert login.execute("SELECT current_user, current_database()").fetchone() == (
            conn_login["user"], conn_login["dbname"])


@pytest.mark.parametrize("form", ["uri", "json"])
def test_the_tasks_read_the_monitoring_db_connection_as_the_cli_does(tmp_path, form):
    """The DAG tasks resolve `monitoring_db` through Airflow (plugins/mlmon_airflow.database_url): the same URL,
    and extras only PostgresHook understands (`cursor`) are not handed to libpq."""
    info = {"user": "ml@mon", "host": "/tmp/Sock Dir", "port": 6543, "dbname": "monitoring"}
    value = _connection(info, form)
    if form == "uri":
        value += "?sslmode=disable&cursor=dictcursor"
    else:
        value = json.dumps({**json.loads(value), "extra": {"sslmode": "disable", "cursor": "dictcursor"}})
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLMON"))}
    done = subprocess.run([sys.executable, "-c", "from mlmon_airflow import database_url; print(database_url())"],
                          env={**base, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'plugins'}",
                               "AIRFLOW_HOME": str(tmp_path), "AIRFLOW_CONN_MONITORING_DB": value},
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == airflow_connection_url(value)
    parts = conninfo_to_dict(airflow_connection_url(value))
    assert parts == {"user": "ml@mon", "password": PASSWORD, "host": "/tmp/Sock Dir", "port": "6543",
                     "dbname": "monitoring", "sslmode": "disable"}


def test_without_a_database_the_cli_says_it_checks_an_embedded_one(tmp_path):
    done = _mlmon(tmp_path, {}, "validate-config")
    assert ("mlmon: no MLMON_DATABASE_URL or AIRFLOW_CONN_MONITORING_DB (monitoring_db Connection) set: using the"
            f" embedded database under {tmp_path / 'home'}, not the one the DAGs use") in done.stderr
    assert done.returncode == EXIT_CONFIG and "public.inference" in done.stdout


@pytest.mark.parametrize(("value", "problem"), [
    ("mysql://u:secret-pw@h/db", "the monitoring_db Connection is of type 'mysql', expected postgres"),
    ('{"conn_type": "postgres", "password": "secret-pw"', "neither a connection URI nor a JSON connection"),
])
def test_a_monitoring_db_connection_that_cannot_be_used_is_a_config_error(tmp_path, value, problem):
    done = _mlmon(tmp_path, {"AIRFLOW_CONN_MONITORING_DB": value}, "validate-config")
    assert done.returncode == EXIT_CONFIG
    assert f"mlmon: config error: AIRFLOW_CONN_MONITORING_DB: {problem}" in done.stderr
    assert "secret-pw" not in done.stderr and "Traceback" not in done.stderr


def test_the_extras_postgres_hook_keeps_from_libpq_are_kept_from_it_here_too():
    """Every extra PostgresHook does not pass to libpq is dropped or refused here, and the hook's own URI is
    no substitute: it names the SQLAlchemy driver and loses `sslmode`."""
    from airflow.models.connection import Connection
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from monitoring_lib.db import _HOOK_EXTRAS, _UNSUPPORTED_EXTRAS, connection_url

    assert PostgresHook.ignored_extra_options <= _HOOK_EXTRAS | _UNSUPPORTED_EXTRAS
    extra = {"sslmode": "disable", "keepalives": 1, "aws_conn_id": "aws_default", "cursor": "dictcursor"}
    url = connection_url("postgres", "db.example", "ml", "pw", 5432, "monitoring", extra)
    assert conninfo_to_dict(url) == {"host": "db.example", "user": "ml", "password": "pw", "port": "5432",
                                     "dbname": "monitoring", "sslmode": "disable", "keepalives": "1"}
    hook = PostgresHook(connection=Connection(conn_id="m", conn_type="postgres", host="db.example", login="ml",
                                              password="pw", port=5432, schema="monitoring", extra=extra))
    assert "sslmode" not in hook.get_uri()
