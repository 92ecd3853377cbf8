"""The trigger's real outcome, through real `dag.test()` runs: a retraining DAG left paused (Airflow's default
for a new DAG) fails the trigger at once, the decision records it as `trigger_failed`, and it starts no
cooldown; once unpaused, the next drifting window starts the retraining run and records its id."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from monitoring_lib import migrations
from monitoring_lib.config import load_endpoint_config
from monitoring_lib.demo.orchestrate import ENDPOINT_ID, airflow_env, prepare_airflow
from monitoring_lib.demo.seed import TRAINING_TABLE, seed_demo
from monitoring_lib.reference import fit_and_store, read_training_data
from monitoring_lib.retraining.decisions import retraining_run_id
from monitoring_lib.runner import run_interval
from tests.airflow_runs.test_dags import END, START, hour, monitor_spec, run_dags
from tests.conftest import _with_dbname

REPO = Path(__file__).resolve().parents[2]
# the demo scenario (seed 11): windows 5 to 8 detect drift, so window 6 is the first the policy retrains on
FIRST, NEXT, THIRD = 6, 7, 8


@pytest.fixture(scope="module")
def history_url(pg_server_url: str) -> str:
    """The scenario seeded and windows 0-5 monitored (by the library, to save DAG runs)."""
    name = f"mlmon_trig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_dbname(pg_server_url, name)
    with psycopg.connect(url) as conn:
        migrations.upgrade(conn)
        seeded = seed_demo(conn, end=END, hours=12, rows_per_hour=600, seed=11, now=END + timedelta(hours=1))
        conn.commit()
    cfg = load_endpoint_config(REPO / "configs" / "claims-approved-amount.yaml")
    training, _ = read_training_data(url, table=f"public.{TRAINING_TABLE}")
    training[cfg.source.prediction_column] = seeded.model.predict(training)
    fit_and_store(url, cfg, frame=training)
    for i in range(FIRST):
        run_interval(url, cfg, START + timedelta(hours=i), START + timedelta(hours=i + 1))
    yield url
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def env(tmp_path_factory, history_url: str) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-trigger")
    env = {**airflow_env(home, history_url), "MLMON_CONFIG_DIR": str(REPO / "configs")}
    prepare_airflow(home, env)
    return env


def airflow(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, check=True,
                   capture_output=True, text=True, timeout=300)


def decision(url: str, i: int) -> tuple:
    window_end = START + timedelta(hours=i + 1)
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT outcome, triggered, run_id, trigger_error, reasons FROM monitoring.retraining_events"
            " WHERE endpoint_id = %s AND event_type = 'decision' AND window_end = %s", (ENDPOINT_ID, window_end),
        ).fetchone()


def test_a_paused_retraining_dag_fails_the_trigger_records_it_and_starts_no_cooldown(env, history_url):
    run_of = {i: retraining_run_id(ENDPOINT_ID, START + timedelta(hours=i + 1)) for i in (FIRST, NEXT, THIRD)}

    airflow(env, "dags", "pause", "model_retraining")
    paused = run_dags(env, [monitor_spec(hour(FIRST))])
    result = paused["results"][0]
    assert result["state"] == "failed", result
    assert result["tasks"]["decide_retraining"] == "success" and result["tasks"]["trigger_retraining"] == "failed"
    assert result["tasks"]["compute_interval"] == "success"
    assert not [r for r in paused["runs"] if r["dag_id"] == "model_retraining"]
    outcome, triggered, run_id, error, _ = decision(history_url, FIRST)
    assert (outcome, triggered, run_id) == ("trigger_failed", False, run_of[FIRST])
    assert "'model_retraining' is paused" in error and "`airflow dags unpause model_retraining`" in error

    # unpaused: the next drifting window, an hour later, retrains; the failed trigger held nothing back
    airflow(env, "dags", "unpause", "model_retraining")
    started = run_dags(env, [monitor_spec(hour(NEXT))])
    result = started["results"][0]
    assert result["state"] == "success", result
    assert result["tasks"]["trigger_retraining"] == "success"
    assert [r["run_id"] for r in started["runs"] if r["dag_id"] == "model_retraining"] == [run_of[NEXT]]
    assert decision(history_url, NEXT)[:4] == ("triggered", True, run_of[NEXT], None)
    assert decision(history_url, FIRST)[:2] == ("trigger_failed", False)

    # a trigger that started a run does start the cooldown, and the reason says it in words
    held = run_dags(env, [monitor_spec(hour(THIRD))])
    assert held["results"][0]["state"] == "success"
    assert held["results"][0]["tasks"]["trigger_retraining"] == "skipped"
    outcome, triggered, _, _, reasons = decision(history_url, THIRD)
    assert (outcome, triggered) == ("no_trigger", False)
    assert reasons == [f"cooldown: retraining was triggered for the window ending "
                       f"{datetime.fromisoformat(hour(NEXT)[1]).isoformat()}, less than the cooldown of 1 day"
                       " before or after this one"]


def test_the_monitoring_dag_doc_says_the_retraining_dag_starts_paused(env):
    code = ("import os; from airflow.dag_processing.dagbag import DagBag;"
            "b = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER']);"
            f"print(repr(b.dags['monitor__{ENDPOINT_ID}'].doc_md))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    doc = done.stdout.strip().splitlines()[-1]
    assert "`model_retraining` starts paused" in doc and "`airflow dags unpause model_retraining`" in doc
    assert "Every 1 hour:" in doc and "1:00:00" not in doc
