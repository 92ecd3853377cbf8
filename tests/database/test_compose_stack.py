"""The compose stack's first start, run for real without Docker: the init service's script and the traffic
generator's command, with the environment docker-compose.yml gives them, against a real PostgreSQL whose
logins need their passwords (every password here holds `@ / : # % '` and a double quote)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import compose_stack as stack
import psycopg
import pytest
import sqlalchemy
from psycopg import errors, sql

from monitoring_lib.config import get_endpoint
from monitoring_lib.db import EmbeddedPostgres
from monitoring_lib.demo.orchestrate import ENDPOINT_ID
from monitoring_lib.demo.scenario import current_hour

NASTY = "p@ss/w:rd#1%'\""


@pytest.fixture(scope="module")
def server(tmp_path_factory):  # noqa: ANN201
    """A PostgreSQL that checks passwords (scram over its socket), acting as the `postgres` service."""
    embedded = EmbeddedPostgres()
    url = embedded.start()
    admin = f"superuser-{NASTY}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(admin)))
            hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
            hba.write_text("local all all scram-sha-256\n")
            conn.execute("SELECT pg_reload_conf()")
            socket_dir = conn.info.host
            port = str(conn.info.port)
        with psycopg.connect(host=socket_dir, port=port, user="postgres", password=admin, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE mlmon")  # POSTGRES_DB of the postgres service
        yield {"host": socket_dir, "port": port, "admin_password": admin}
    finally:
        embedded.stop()


@pytest.fixture(scope="module")
def dotenv(server) -> dict[str, str]:  # noqa: ANN001
    """`cp .env.example .env`, every change-me replaced by a password no URL could carry raw."""
    env = stack.env_example()
    for key, value in env.items():
        if "change-me" in value:
            env[key] = f"{key.lower()}-{NASTY}"
    env.update({"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": server["admin_password"],
                "AIRFLOW_UID": str(subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip())})
    return env


def _env(name: str, dotenv: dict, server: dict, tmp: Path) -> dict[str, str]:
    return stack.container_env(name, dotenv, tmp=tmp, pg_host=server["host"], pg_port=server["port"])


def _urls(name: str, dotenv: dict, server: dict, tmp: Path) -> dict[str, str]:
    """The environment docker/entrypoint.sh hands to the service's command."""
    done = stack.run_service(name, _env(name, dotenv, server, tmp), timeout=60,
                             extra=["python", "-c", "import json, os; print(json.dumps(dict(os.environ)))"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def _counts(url: str) -> dict[str, object]:
    tables = ["public.claims_training", "public.claims_inference", "public.claims_labels",
              "monitoring.reference_profiles", "monitoring.interval_runs", "monitoring.drift_summary",
              "monitoring.model_performance"]
    with _connect(url) as conn:
        counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*t.split("."))))
                  .fetchone()[0] for t in tables}
        counts["endpoint row"] = conn.execute("SELECT model_version, updated_at FROM monitoring.model_endpoints"
                                              " WHERE endpoint_id = %s", (ENDPOINT_ID,)).fetchone()
    return counts


@pytest.fixture(scope="module")
def first_start(server, dotenv, tmp_path_factory):  # noqa: ANN001, ANN201
    """`docker compose up`'s airflow-init, as its entrypoint runs it."""
    tmp = tmp_path_factory.mktemp("stack")
    env = _env("airflow-init", dotenv, server, tmp)
    done = stack.run_service("airflow-init", env, timeout=900)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return {"tmp": tmp, "env": env, "out": done.stdout}


def test_entrypoint_builds_urls_that_work_with_any_password(server, dotenv, first_start):  # noqa: ANN001
    scheduler = _urls("airflow-scheduler", dotenv, server, first_start["tmp"])
    with _connect(scheduler["MLMON_DATABASE_URL"]) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == dotenv["MLMON_DB_USER"]
    engine = sqlalchemy.create_engine(scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT current_user")).scalar() == dotenv["AIRFLOW_DB_USER"]
    engine.dispose()
    # the Airflow Connection `monitoring_db`, read the way the tasks read it when MLMON_DATABASE_URL is unset
    probe = ("import mlmon_airflow, psycopg; c = psycopg.connect(mlmon_airflow.database_url());"
             " print(c.execute('SELECT current_user').fetchone()[0])")
    env = {k: v for k, v in scheduler.items() if k != "MLMON_DATABASE_URL"}
    env["PYTHONPATH"] = f"{stack.ROOT}:{stack.ROOT / 'plugins'}"
    env["AIRFLOW_HOME"] = str(first_start["tmp"] / "probe-home")
    done = subprocess.run(["python", "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == dotenv["MLMON_DB_USER"]
    # a raw interpolation of the same password is not even a parseable URL
    raw = f"postgresql://{dotenv['MLMON_DB_USER']}:{dotenv['MLMON_DB_PASSWORD']}@localhost/mlmon"
    with pytest.raises(psycopg.ProgrammingError):
        psycopg.connect(raw, connect_timeout=2)


def test_tasks_and_grafana_get_least_privilege_logins(server, dotenv, first_start):  # noqa: ANN001
    scheduler = _urls("airflow-scheduler", dotenv, server, first_start["tmp"])
    monitoring = scheduler["MLMON_DATABASE_URL"]
    with _connect(monitoring) as conn:
        assert conn.execute("SELECT count(*) > 0 FROM public.claims_inference").fetchone()[0]  # reads the source
        conn.execute("UPDATE monitoring.model_endpoints SET updated_at = updated_at")  # writes its schema
        for forbidden in ("INSERT INTO public.claims_inference (request_id, ts) VALUES ('x', now())",
                          "CREATE TABLE public.mlmon_probe (x int)", "DROP TABLE monitoring.drift_summary"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(forbidden)
        assert not conn.execute("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles"
                                " WHERE rolname = current_user").fetchone()[0]
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(monitoring.replace("/mlmon?", f"/{dotenv['AIRFLOW_DB_NAME']}?"))
    grafana = psycopg.connect(host=server["host"], port=server["port"], dbname="mlmon", autocommit=True,
                              user=dotenv["MLMON_GRAFANA_DB_USER"], password=dotenv["MLMON_GRAFANA_DB_PASSWORD"])
    with grafana:
        assert grafana.execute("SELECT count(*) > 0 FROM monitoring.drift_summary").fetchone()[0]
        with pytest.raises(errors.InsufficientPrivilege):
            grafana.execute("DELETE FROM monitoring.drift_summary")
        with pytest.raises(errors.InsufficientPrivilege):
            grafana.execute("SELECT count(*) FROM public.claims_inference")
    # no long-running service is given the superuser's or Grafana's admin password
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                 "traffic-generator"):
        seen = _urls(name, dotenv, server, first_start["tmp"])
        secrets = (dotenv["POSTGRES_PASSWORD"], dotenv["GRAFANA_ADMIN_PASSWORD"], dotenv["MLMON_GRAFANA_DB_PASSWORD"])
        leaked = [k for k, v in seen.items() if any(secret in v for secret in secrets)]
        assert not leaked, f"{name} sees {leaked}"


def test_first_start_leaves_a_working_monitoring_loop_and_a_second_start_changes_nothing(
        server, dotenv, first_start):  # noqa: ANN001
    from monitoring_lib.status import render_status
    from monitoring_lib.tasks import compute_window, model_performance

    scheduler = _urls("airflow-scheduler", dotenv, server, first_start["tmp"])
    url = scheduler["MLMON_DATABASE_URL"]
    seeded = _counts(url)
    assert seeded["public.claims_training"] > 0 and seeded["monitoring.reference_profiles"] == 1
    assert seeded["monitoring.interval_runs"] == 6 and seeded["monitoring.model_performance"] > 0

    # the traffic generator's own command, until its first tick is written (the container runs it forever)
    traffic_env = _env("traffic-generator", dotenv, server, first_start["tmp"])
    proc = subprocess.Popen(["bash", *stack.entrypoint_argv("traffic-generator")], env=traffic_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "wrote" in line and "predictions" in line, proc.stderr.read() if not line else line
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with _connect(url) as conn:
        live = conn.execute("SELECT count(*) FROM public.claims_inference"
                            " WHERE request_id LIKE 'live-%%'").fetchone()[0]
    assert live > 0

    # the scheduler's next run monitors the last whole hour, as the monitoring login
    end = current_hour(datetime.now(UTC))
    window = {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()}
    report = compute_window(url, get_endpoint(ENDPOINT_ID, stack.ROOT / "configs"), window, force=True)
    assert report["status"] == "ok", report
    with _connect(url) as conn:
        drift = conn.execute("SELECT drift_status FROM monitoring.drift_summary WHERE endpoint_id = %s"
                             " AND window_end = %s", (ENDPOINT_ID, end)).fetchone()
        checks = conn.execute("SELECT count(*) FROM monitoring.data_quality_results WHERE endpoint_id = %s"
                              " AND window_end = %s", (ENDPOINT_ID, end)).fetchone()[0]
        status = render_status(conn)
    assert drift is not None and drift[0] in {"no_drift", "possible_drift", "drift_detected"} and checks > 0
    assert ENDPOINT_ID in status and "no_reference" not in status
    performance = model_performance(url, get_endpoint(ENDPOINT_ID, stack.ROOT / "configs"),
                                    {"window_start": window["start"], "window_end": window["end"]})  # as the task
    assert "windows" in performance
    # `mlmon status` as the README runs it in the scheduler's container
    cli = _env("airflow-scheduler", dotenv, server, first_start["tmp"])
    shown = stack.run_service("airflow-scheduler", cli, timeout=120, extra=["mlmon", "status"])
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert ENDPOINT_ID in shown.stdout and "no_reference" not in shown.stdout

    # the project's DAGs were unpaused, and only they
    airflow_url = scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2", "postgresql")
    with _connect(airflow_url) as conn:
        paused = dict(conn.execute("SELECT dag_id, is_paused FROM dag").fetchall())
    assert paused[f"monitor__{ENDPOINT_ID}"] is False and paused["model_retraining"] is False
    assert paused["mlmon_config_check"] is True

    # a second start (every `docker compose up`) changes nothing, and keeps an operator's pause
    with _connect(airflow_url) as conn:
        conn.execute("UPDATE dag SET is_paused = true WHERE dag_id = 'model_retraining'")
    before = _counts(url)
    again = stack.run_service("airflow-init", first_start["env"], timeout=900)
    assert again.returncode == 0, again.stderr[-5000:]
    assert _counts(url) == before
    assert "no new project DAG to unpause" in again.stdout
    with _connect(airflow_url) as conn:
        assert conn.execute("SELECT is_paused FROM dag WHERE dag_id = 'model_retraining'").fetchone()[0] is True


def test_without_dynatrace_push_dynatrace_reports_not_configured_and_succeeds(server, dotenv, first_start):  # noqa: ANN001
    """.env.example leaves Dynatrace commented out: the scheduler (which runs the tasks) gets empty values,
    the entrypoint drops them, and the task body finds no client and succeeds."""
    assert "DYNATRACE_URL" not in dotenv and "AIRFLOW_CONN_DYNATRACE_DEFAULT" not in dotenv
    env = _env("airflow-scheduler", dotenv, server, first_start["tmp"])
    assert env["DYNATRACE_URL"] == "" and env["AIRFLOW_CONN_DYNATRACE_DEFAULT"] == ""
    env["PYTHONPATH"] = f"{stack.ROOT}:{stack.ROOT / 'plugins'}"
    env["AIRFLOW_HOME"] = str(first_start["tmp"] / "airflow")
    task = ("import json, os, mlmon_airflow\n"
            "from monitoring_lib.tasks import push_dynatrace\n"
            "client = mlmon_airflow.dynatrace_client()\n"
            "seen = sorted(k for k in os.environ if 'DYNATRACE' in k)\n"
            "result = push_dynatrace(mlmon_airflow.database_url(), client, 'claims-approved-amount')\n"
            "print(json.dumps({'client': client is None, 'seen': seen, 'result': result}))\n")
    done = stack.run_service("airflow-scheduler", env, timeout=120, extra=["python", "-c", task])
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["client"] is True and out["seen"] == []
    assert out["result"]["status"] == "not_configured" and "no dynatrace_default Connection" in out["result"]["detail"]


def test_init_hands_the_named_volumes_to_airflow_uid():
    """A named volume starts owned by the image's airflow user (50000); with AIRFLOW_UID set to `id -u`
    (here another UID) the root part of the init makes it writable for that UID, then runs on as it."""
    import os
    import shutil
    import tempfile

    assert os.getuid() == 0, "the init's volume step runs as root, as in the container"
    base = Path(tempfile.mkdtemp(prefix="mlmon-vol-", dir="/tmp"))
    try:
        base.chmod(0o755)
        volumes = [base / name for name in ("logs", "auth", "models")]
        for volume in volumes:
            volume.mkdir()
            (volume / "old").write_text("from an earlier start")
            os.chown(volume, 50000, 0)
            volume.chmod(0o755)
        as_user = [shutil.which("python") or "python", str(stack.ROOT / "docker" / "as_user.py"), "4321"]
        touch = [*as_user, "/bin/sh", "-c", " && ".join(f"touch {v}/new && rm {v}/old" for v in volumes)]
        assert subprocess.run(touch, capture_output=True, check=False).returncode != 0  # not writable before
        env = {"AIRFLOW_UID": "4321", "MLMON_VOLUME_DIRS": " ".join(map(str, volumes)), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(["bash", str(stack.ROOT / "docker" / "init-volumes.sh")], env=env, capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stderr
        done = subprocess.run(touch, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        for volume in volumes:
            assert (volume / "new").stat().st_uid == 4321 and volume.stat().st_uid == 4321
    finally:
        shutil.rmtree(base, ignore_errors=True)
