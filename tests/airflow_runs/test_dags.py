"""DAG tests: a DagBag check, and real `dag.test()` runs against a real PostgreSQL seeded with the demo scenario.

Airflow runs in child processes (tests/dag_runner.py) with their own AIRFLOW_HOME, so the metadata
database and config are isolated from the rest of the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from monitoring_lib import migrations
from monitoring_lib.config import load_endpoint_config
from monitoring_lib.demo.orchestrate import ENDPOINT_ID, airflow_env, prepare_airflow
from monitoring_lib.demo.seed import TRAINING_TABLE, seed_demo
from monitoring_lib.reference import fit_and_store, read_training_data
from tests.conftest import _with_dbname

REPO = Path(__file__).resolve().parents[2]
END = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)  # the simulated period is [END - 12h, END)
START = END - timedelta(hours=12)


def hour(i: int) -> tuple[str, str]:
    return ((START + timedelta(hours=i)).isoformat(), (START + timedelta(hours=i + 1)).isoformat())


def monitor_spec(window: tuple[str, str], force: bool = True) -> dict:
    return {"dag_id": f"monitor__{ENDPOINT_ID}", "logical_date": window[1],
            "conf": {"window_start": window[0], "window_end": window[1], "force_recompute": force}}


@pytest.fixture(scope="module")
def seeded_url(pg_server_url: str) -> str:
    name = f"mlmon_dags_{uuid.uuid4().hex[:8]}"
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
    yield url
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def af_env(tmp_path_factory, seeded_url: str) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow")
    env = airflow_env(home, seeded_url)
    env["MLMON_CONFIG_DIR"] = str(REPO / "configs")
    prepare_airflow(home, env)
    return env


def run_dags(env: dict[str, str], specs: list[dict]) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "tests" / "dag_runner.py"), json.dumps(specs)],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "log": done.stdout + done.stderr}


def retraining_runs(out: dict) -> list[dict]:
    return [r for r in out["runs"] if r["dag_id"] == "model_retraining" and r["run_id"].startswith("retrain__")]


def test_dagbag_has_no_import_errors_and_every_dag_is_documented(af_env):
    code = (
        "import json, os; from airflow.dag_processing.dagbag import DagBag;"
        "b = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER']);"
        "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()},"
        " 'dags': {d.dag_id: {'tags': sorted(d.tags), 'doc': bool(d.doc_md),"
        " 'retries': [t.retries for t in d.tasks], 'max_active_runs': d.max_active_runs,"
        " 'timetable': type(d.timetable).__name__,"
        " 'rules': {i: [sorted(t.upstream_task_ids), getattr(t.trigger_rule, 'value', t.trigger_rule)]"
        " for i, t in d.task_dict.items() if i in ('push_dynatrace', 'performance_failed')}}"
        " for d in b.dags.values()}}))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=af_env, capture_output=True, text=True, check=True)
    bag = json.loads(done.stdout.strip().splitlines()[-1])
    assert bag["errors"] == {}
    assert {f"monitor__{ENDPOINT_ID}", "model_retraining", "mlmon_config_check"} <= set(bag["dags"])
    for dag_id, info in bag["dags"].items():
        assert info["tags"] and info["doc"], dag_id
        if dag_id != "mlmon_config_check":
            assert all(r >= 1 for r in info["retries"]), dag_id
    monitor = bag["dags"][f"monitor__{ENDPOINT_ID}"]
    assert monitor["max_active_runs"] == 1
    assert monitor["timetable"] == "DeltaDataIntervalTimetable"
    # the push sends what model_performance queued, and runs whatever the other tasks' outcome
    assert monitor["rules"]["push_dynatrace"] == [["compute_interval", "model_performance"], "all_done"]
    # model_performance is no longer a leaf: this leaf fails the run when it fails
    assert monitor["rules"]["performance_failed"] == [["model_performance"], "one_failed"]


def test_monitoring_runs_retrain_once_and_never_on_bad_data(af_env, seeded_url):
    empty = ((START - timedelta(days=1)).isoformat(), (START - timedelta(days=1, hours=-1)).isoformat())
    specs = [monitor_spec(empty)] + [monitor_spec(hour(i)) for i in range(10)]
    out = run_dags(af_env, specs)
    assert [r["state"] for r in out["results"]] == ["success"] * len(specs)
    # labels land an hour or more later: the runs that see them queue performance lines, which
    # push_dynatrace (after model_performance) handles in the same run
    assert all(r["tasks"]["push_dynatrace"] == "success" for r in out["results"])
    assert any(r["xcom"]["model_performance"]["dynatrace_lines"] > 0 for r in out["results"])

    with psycopg.connect(seeded_url) as conn:
        runs = {r[0]: r[1:] for r in conn.execute(
            "SELECT window_start, status, dq_state, drift_status FROM monitoring.interval_runs")}
        decisions = {r[0]: r[1:] for r in conn.execute(
            "SELECT window_start, triggered, reasons FROM monitoring.retraining_events WHERE event_type = 'decision'")}

    # the empty interval: recorded as no_data, no retraining
    empty_start = datetime.fromisoformat(empty[0])
    assert runs[empty_start][0] == "no_data"
    assert out["results"][0]["tasks"]["trigger_retraining"] == "skipped"
    # a clean interval: computed, no trigger, and the decision says why
    assert runs[START][:2] == ("ok", "passed") and runs[START][2] in ("no_drift", "possible_drift")
    assert decisions[START][0] is False and decisions[START][1]
    assert out["results"][1]["tasks"]["trigger_retraining"] == "skipped"
    # the data-quality incident hour: failed quality, drift skipped, never a trigger
    incident = START + timedelta(hours=9)
    assert runs[incident][1:] == ("failed", "skipped")
    assert decisions[incident][0] is False and "failed quality" in decisions[incident][1][0]
    assert out["results"][10]["tasks"]["trigger_retraining"] == "skipped"
    # drift built up: exactly one retraining run, for the first window that met the policy
    triggered = sorted(w for w, d in decisions.items() if d[0])
    assert len(triggered) == 1
    started = retraining_runs(out)
    assert len(started) == 1
    conf = started[0]["conf"]
    assert conf["endpoint_id"] == ENDPOINT_ID and conf["window_start"] == triggered[0].isoformat()
    assert conf["drifted_features"] and conf["reasons"]
    window_end = datetime.fromisoformat(conf["window_end"])
    assert started[0]["run_id"] == f"retrain__{ENDPOINT_ID}__{window_end:%Y%m%dT%H%M%SZ}"

    # repeating the triggering interval (forced recompute) never starts a second retraining run
    again = run_dags(af_env, [monitor_spec((conf["window_start"], conf["window_end"]))])
    assert again["results"][0]["state"] == "success"
    assert len(retraining_runs(again)) == 1

    # the retraining DAG promotes a new version with a new reference profile
    retrain = run_dags(af_env, [{"dag_id": "model_retraining", "conf": {**conf, "run_id": started[0]["run_id"]}}])
    assert retrain["results"][0]["state"] == "success", retrain["results"][0]
    outcome = retrain["results"][0]["xcom"]["retrain"]
    assert outcome["outcome"] == "promoted", outcome
    with psycopg.connect(seeded_url) as conn:
        version = conn.execute("SELECT model_version FROM monitoring.model_endpoints").fetchone()[0]
        profiles = conn.execute("SELECT model_version, version, is_active FROM monitoring.reference_profiles"
                                " ORDER BY model_version").fetchall()
        event = conn.execute("SELECT outcome, model_version_before, model_version_after FROM"
                             " monitoring.retraining_events WHERE event_type = 'training'").fetchone()
    assert version == "2"
    assert profiles == [("1", 1, True), ("2", 1, True)]
    assert event == ("promoted", "1", "2")
    assert outcome["evidence"]["challenger"]["rmse"] < outcome["evidence"]["champion"]["rmse"]
    assert os.path.exists(outcome["evidence"]["artifact"])


@pytest.fixture(scope="module")
def wide_env(tmp_path_factory, seeded_url: str) -> dict[str, str]:
    """The demo endpoint split into feature groups of three: its DAG maps one task per group."""
    import yaml

    configs = tmp_path_factory.mktemp("wide-configs")
    data = yaml.safe_load((REPO / "configs" / "claims-approved-amount.yaml").read_text())
    (configs / "claims-approved-amount.yaml").write_text(yaml.safe_dump({**data, "scale_out": {
        "feature_group_size": 3}}))
    home = tmp_path_factory.mktemp("airflow-wide")
    env = {**airflow_env(home, seeded_url), "MLMON_CONFIG_DIR": str(configs)}
    prepare_airflow(home, env)
    return env


def test_runs_without_window_params_monitor_whole_intervals_of_the_grid(af_env, seeded_url):
    """As the scheduler and the UI's trigger form start them: no window params, only the data interval
    Airflow derives from the logical date, as pendulum datetimes. A scheduled run covers its interval;
    a manual one triggered at 12:17:42 past the period's start covers the last whole hour before it."""
    manual = START + timedelta(hours=12, minutes=17, seconds=42)
    specs = [{"dag_id": f"monitor__{ENDPOINT_ID}", "logical_date": hour(10)[1]},
             {"dag_id": f"monitor__{ENDPOINT_ID}", "logical_date": manual.isoformat()}]
    out = run_dags(af_env, specs)
    assert [r["state"] for r in out["results"]] == ["success", "success"]
    assert [r["tasks"]["compute_interval"] for r in out["results"]] == ["success", "success"]
    with psycopg.connect(seeded_url) as conn:
        runs = dict(conn.execute(
            "SELECT window_start, window_end FROM monitoring.interval_runs WHERE window_start >= %s",
            (START + timedelta(hours=10),)).fetchall())
    assert runs == {START + timedelta(hours=10): START + timedelta(hours=11),
                    START + timedelta(hours=11): START + timedelta(hours=12)}


def test_feature_groups_map_over_workers_and_merge_into_the_in_memory_results(wide_env, seeded_url):
    from monitoring_lib.runner import run_interval
    from tests.parity.test_compute_database import assert_same_results

    windows = [hour(8), hour(9)]
    out = run_dags(wide_env, [monitor_spec(w) for w in windows])
    for result in out["results"]:
        assert result["state"] == "success", result["tasks"]
        assert result["mapped"]["summarise_group"] == ["success"] * 3
        assert result["tasks"]["compute_interval"] == "success"
    starts = [datetime.fromisoformat(w[0]) for w in windows]
    query = ("SELECT window_start, rows_seen, bad_rows, dq_state, drift_status, stage_timings->'feature_groups'"
             " FROM monitoring.interval_runs WHERE window_start = ANY(%s) ORDER BY 1")

    columns = {"feature_drift": "feature, metric, value, status", "feature_stats": "feature, metric, value",
               "data_quality_results": "expectation_id, success, unexpected_count, unexpected_percent",
               "drift_summary": "metric, value, drift_status, dq_state"}

    def snapshot(conn: psycopg.Connection) -> dict[str, list[tuple]]:
        rows = {"runs": [r[:5] for r in conn.execute(query, (starts,))]}
        for table, cols in columns.items():
            rows[table] = conn.execute(sql.SQL(
                "SELECT window_start, {} FROM monitoring.{} WHERE window_start = ANY(%s) ORDER BY 1, 2, 3"
            ).format(sql.SQL(cols), sql.Identifier(table)), (starts,)).fetchall()
        return rows

    with psycopg.connect(seeded_url) as conn:
        assert [r[5] for r in conn.execute(query, (starts,))] == [3, 3]
        assert conn.execute(query, (starts,)).fetchall()[1][3:5] == ("failed", "skipped")
        grouped = snapshot(conn)
    cfg = load_endpoint_config(Path(wide_env["MLMON_CONFIG_DIR"]) / "claims-approved-amount.yaml")
    single = cfg.model_copy(update={"scale_out": cfg.scale_out.model_copy(update={"feature_group_size": None})})
    for w in windows:
        run_interval(seeded_url, single, datetime.fromisoformat(w[0]), datetime.fromisoformat(w[1]))
    with psycopg.connect(seeded_url) as conn:
        assert_same_results(snapshot(conn), grouped)
