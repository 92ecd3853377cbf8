"""Alerting: `alerting:` in config is validated early, and a real Airflow run calls the configured notifier once
per failed run, names the failed task, carries the owner, and registers the window deadline.

Airflow runs in child processes with their own AIRFLOW_HOME (tests/dag_runner.py); the notifier is a real
BaseNotifier subclass (tests/alert_sink.py) that appends to a file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from monitoring_lib import migrations
from monitoring_lib.config import load_each, load_endpoint_config
from monitoring_lib.demo.orchestrate import ENDPOINT_ID, airflow_env, prepare_airflow
from monitoring_lib.demo.seed import TRAINING_TABLE, seed_demo
from monitoring_lib.errors import ConfigError
from monitoring_lib.reference import fit_and_store, read_training_data
from tests.airflow_runs.test_dags import END, hour, monitor_spec, run_dags
from tests.conftest import _with_dbname

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "claims-approved-amount.yaml"
SINK = "tests.alert_sink.FileNotifier"
QUIET_ID = "claims-quiet"


def demo(**changes: object) -> dict:
    return {**yaml.safe_load(DEMO.read_text()), **changes}


def write(directory: Path, name: str, data: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(data))
    return path


def problems_of(tmp_path: Path, alerting: dict) -> list[str]:
    path = write(tmp_path, "endpoint.yaml", demo(alerting=alerting))
    with pytest.raises(ConfigError) as info:
        load_endpoint_config(path)
    return [p.removeprefix(f"{path}: ") for p in info.value.problems]


def test_the_example_config_names_an_owner_and_notifies_no_one():
    cfg = load_endpoint_config(DEMO)
    assert cfg.alerting.owner == "ml-platform"
    assert cfg.alerting.on_failure == () and cfg.alerting.deadline is None


def test_a_config_without_alerting_gets_the_default_owner_and_no_alerts(tmp_path):
    data = demo()
    data.pop("alerting", None)
    cfg = load_endpoint_config(write(tmp_path, "endpoint.yaml", data))
    assert (cfg.alerting.owner, cfg.alerting.on_failure, cfg.alerting.deadline) == ("mlmon", (), None)


def test_notifiers_and_a_deadline_are_read_with_their_kwargs(tmp_path):
    cfg = load_endpoint_config(write(tmp_path, "endpoint.yaml", demo(alerting={
        "owner": "claims-oncall", "on_failure": [{"notifier": SINK, "kwargs": {"path": "/tmp/x"}}],
        "deadline": {"after": "30m", "on_miss": [{"notifier": SINK, "kwargs": {"path": "/tmp/y"}}]}})))
    assert cfg.alerting.on_failure[0].kwargs == {"path": "/tmp/x"}
    assert cfg.alerting.deadline.after == timedelta(minutes=30) and cfg.alerting.deadline.run_in == "executor"


@pytest.mark.parametrize(("alerting", "expected"), [
    ({"on_falure": []}, "alerting.on_falure: Extra inputs are not permitted"),
    ({"owner": ""}, "alerting.owner: String should have at least 1 character"),
    ({"on_failure": [{"notifier": "SmtpNotifier"}]}, "alerting.on_failure.0.notifier: 'SmtpNotifier' is not a dotted"),
    ({"on_failure": [{"notifier": "airflow.providers.slack.notifications.slack.SlackNotifier"}]},
     "alerting.on_failure.0.notifier: cannot import 'airflow.providers.slack.notifications.slack.SlackNotifier'"
     " (ModuleNotFoundError: No module named 'airflow.providers.slack'); is its provider installed?"),
    ({"on_failure": [{"notifier": "tests.alert_sink.NoSuchNotifier"}]},
     "alerting.on_failure.0.notifier: cannot import 'tests.alert_sink.NoSuchNotifier' (AttributeError"),
    ({"on_failure": [{"notifier": "tests.alert_sink.NotANotifier"}]},
     "alerting.on_failure.0.notifier: 'tests.alert_sink.NotANotifier' is not a notifier class"),
    ({"on_failure": [{"notifier": SINK, "kwarg": {}}]}, "alerting.on_failure.0.kwarg: Extra inputs are not permitted"),
    ({"deadline": {"after": "0m", "on_miss": [{"notifier": SINK}]}}, "alerting.deadline.after: after must be"),
    ({"deadline": {"after": "soon", "on_miss": [{"notifier": SINK}]}}, "alerting.deadline.after: 'soon' is not a"),
    ({"deadline": {"after": "30m", "on_miss": []}}, "alerting.deadline.on_miss: Tuple should have at least 1 item"),
    ({"deadline": {"after": "30m", "run_in": "triggerer",
                   "on_miss": [{"notifier": "tests.alert_sink.SyncOnlyNotifier"}]}},
     "alerting.deadline: on_miss.0.notifier: 'tests.alert_sink.SyncOnlyNotifier' does not implement async_notify"),
    ({"on_failure": [{"notifier": SINK, "kwargs": {"webhook_token": "x"}}]},
     "alerting.on_failure[0].kwargs.webhook_token: secrets do not belong in config"),
])
def test_a_bad_alerting_section_is_refused_naming_the_file_and_field(tmp_path, alerting, expected):
    problems = problems_of(tmp_path, alerting)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_missing_notifier_provider_leaves_the_other_endpoints_dags_and_names_file_and_field(tmp_path):
    """A notifier whose provider is not installed is a config problem of that file: the monitoring DAG file
    still imports and builds the other endpoints; the config check shows the file and field."""
    configs = tmp_path / "configs"
    write(configs, "a-demo.yaml", demo())
    broken = write(configs, "b-slack.yaml", demo(endpoint_id="slack-alerts", alerting={"on_failure": [
        {"notifier": "airflow.providers.slack.notifications.slack.SlackNotifier", "kwargs": {"channel": "#x"}}]}))
    assert list(load_each(configs)[0]) == [ENDPOINT_ID]
    env = {**airflow_env(tmp_path / "airflow", "postgresql://unused@localhost/none"), "MLMON_CONFIG_DIR": str(configs)}
    code = ("import json, os; from airflow.dag_processing.dagbag import DagBag;"
            "b = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER']);"
            "print(json.dumps({'dags': sorted(b.dag_ids),"
            " 'errors': {os.path.basename(k): str(v) for k, v in b.import_errors.items()}}))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    bag = json.loads(done.stdout.strip().splitlines()[-1])
    assert f"monitor__{ENDPOINT_ID}" in bag["dags"] and "monitor__slack-alerts" not in bag["dags"]
    assert set(bag["errors"]) == {"config_check.py"}
    assert f"{broken}: alerting.on_failure.0.notifier: cannot import" in bag["errors"]["config_check.py"]


# ---- real Airflow runs ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def alert_url(pg_server_url: str) -> str:
    """The demo scenario, with reference profiles for the demo endpoint and a quiet copy of it."""
    name = f"mlmon_alerts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_dbname(pg_server_url, name)
    with psycopg.connect(url) as conn:
        migrations.upgrade(conn)
        seeded = seed_demo(conn, end=END, hours=12, rows_per_hour=600, seed=11, now=END + timedelta(hours=1))
        conn.commit()
    training, _ = read_training_data(url, table=f"public.{TRAINING_TABLE}")
    cfg = load_endpoint_config(DEMO)
    training[cfg.source.prediction_column] = seeded.model.predict(training)
    for endpoint in (cfg, cfg.model_copy(update={"endpoint_id": QUIET_ID})):
        fit_and_store(url, endpoint, frame=training)
    yield url
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def alert_env(tmp_path_factory, alert_url: str) -> dict[str, str]:
    """Two endpoints whose data-quality failures fail the run: the demo one with a notifier on failure and a
    deadline, the quiet one with no alerting."""
    root = tmp_path_factory.mktemp("alerting")
    configs, sinks = root / "configs", root / "sinks"
    sinks.mkdir()
    strict = {**demo()["quality"], "on_failure": "fail_task"}
    write(configs, "claims.yaml", demo(quality=strict, alerting={
        "owner": "claims-oncall",
        "on_failure": [{"notifier": SINK, "kwargs": {"path": str(sinks / "failures.jsonl")}}],
        "deadline": {"after": "30m", "on_miss": [{"notifier": SINK, "kwargs": {
            "path": str(sinks / "deadlines.jsonl"), "label": "late: {{ dag_run.dag_run_id }}"}}]}}))
    quiet = {k: v for k, v in demo(endpoint_id=QUIET_ID, quality=strict).items() if k != "alerting"}
    write(configs, "quiet.yaml", quiet)
    home = root / "airflow"
    env = {**airflow_env(home, alert_url), "MLMON_CONFIG_DIR": str(configs), "ALERT_SINKS": str(sinks),
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    prepare_airflow(home, env)
    return env


def metadata(env: dict[str, str], code: str) -> dict:
    """Runs `code` (which sets `out`) against the Airflow metadata DB of `env`, and returns `out`."""
    wrapper = ("import json\nfrom airflow.utils.session import create_session\nout = {}\n"
               "with create_session() as session:\n" + "".join(f"    {line}\n" for line in code.splitlines())
               + "print(json.dumps(out, default=str))")
    done = subprocess.run([sys.executable, "-c", wrapper], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_sink(env: dict[str, str], name: str) -> list[dict]:
    path = Path(env["ALERT_SINKS"]) / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_failed_run_notifies_once_naming_the_task_and_a_quiet_endpoint_notifies_no_one(alert_env):
    incident = hour(9)  # the demo's data-quality incident: critical checks fail, so compute_interval fails
    quiet = {**monitor_spec(incident), "dag_id": f"monitor__{QUIET_ID}"}
    out = run_dags(alert_env, [monitor_spec(incident), quiet])
    for result in out["results"]:
        assert result["state"] == "failed", result["tasks"]
        assert result["tasks"]["compute_interval"] == "failed"
        assert result["tasks"]["performance_failed"] == "failed"  # a second failed task, still one alert
        assert result["tasks"]["quality_gate"] == "upstream_failed"  # fail_task: compute_interval failed instead
        # the window is stored all the same, and the note says what failed and why
        assert result["note"].startswith("Quality **failed** ("), result["note"]
        assert "**failed:** compute_interval" in result["note"].splitlines()[0]
    (alert,) = read_sink(alert_env, "failures.jsonl")
    run_id = next(r["run_id"] for r in out["runs"] if r["dag_id"] == f"monitor__{ENDPOINT_ID}")
    assert alert["dag_id"] == f"monitor__{ENDPOINT_ID}" and alert["run_id"] == run_id == alert["label"]
    # the task that failed, with its error; performance_failed, which only reports it, stays quiet
    assert alert["task_id"] == "compute_interval" and "critical" in alert["exception"].lower(), alert

    dags = metadata(alert_env, """
from airflow.models.serialized_dag import SerializedDagModel
for dag_id in ('monitor__claims-approved-amount', 'monitor__claims-quiet'):
    dag = SerializedDagModel.get_dag(dag_id, session=session)
    out[dag_id] = {'owners': sorted({t.owner for t in dag.tasks}), 'doc': dag.doc_md,
                   'failure_callback': sorted({t.has_on_failure_callback for t in dag.tasks
                                               if t.task_id != 'trigger_retraining'}),
                   'deadlines': len(dag.deadline or [])}
""")
    claims, silent = dags[f"monitor__{ENDPOINT_ID}"], dags[f"monitor__{QUIET_ID}"]
    assert claims["owners"] == ["claims-oncall"] and silent["owners"] == ["mlmon"]
    assert claims["failure_callback"] == [True] and silent["failure_callback"] == [False]
    assert (claims["deadlines"], silent["deadlines"]) == (1, 0)
    assert ("Alerting (owner `claims-oncall`): a task that fails after its retries calls"
            " `tests.alert_sink.FileNotifier`") in claims["doc"]
    assert "a window not computed by its end + 35 min (grace 5 min + 30 min) calls" in claims["doc"]
    assert "a failed run notifies no one" in silent["doc"]


def test_the_deadline_is_the_window_end_plus_grace_plus_after_and_fires_when_missed(alert_env):
    """The deadline the scheduler stores for a run is its window end + 5m grace + 30m. The failed run keeps
    it (its window was not computed); the real scheduler finds it passed and calls the notifier."""
    incident = hour(9)
    run_dags(alert_env, [monitor_spec(incident)])
    found = metadata(alert_env, """
from sqlalchemy import select
from airflow.models import DagRun
from airflow.models.deadline import Deadline
from airflow.models.deadline_alert import DeadlineAlert
out['alerts'] = [[a.reference, a.interval] for a in session.scalars(select(DeadlineAlert))]
out['deadlines'] = [[d.deadline_time.isoformat(), d.missed, r.dag_id, r.run_id, r.data_interval_end.isoformat()]
                    for d, r in session.execute(select(Deadline, DagRun).join(DagRun))]
""")
    (reference, interval), = {(json.dumps(a[0], sort_keys=True), json.dumps(a[1])) for a in found["alerts"]}
    assert json.loads(reference) == {"reference_type": "WindowEndDeadline",
                                     "__class_path": "mlmon_alerting.WindowEndDeadline"}
    assert "2100" in interval  # 35 minutes: grace 5m + after 30m
    window_end = datetime.fromisoformat(incident[1])
    assert found["deadlines"] and {d[2] for d in found["deadlines"]} == {f"monitor__{ENDPOINT_ID}"}
    for deadline_time, missed, _, _, interval_end in found["deadlines"]:
        assert datetime.fromisoformat(interval_end) == window_end
        assert datetime.fromisoformat(deadline_time) == window_end + timedelta(minutes=35)
        assert missed is False

    # the real scheduler (LocalExecutor) finds the passed deadline and runs the notifier on the executor;
    # the DAGs are paused so it starts no runs of its own
    airflow = str(Path(sys.executable).parent / "airflow")
    for dag_id in (f"monitor__{ENDPOINT_ID}", f"monitor__{QUIET_ID}", "model_retraining"):
        subprocess.run([airflow, "dags", "pause", dag_id], env=alert_env, capture_output=True, check=True)
    log = Path(alert_env["ALERT_SINKS"]) / "scheduler.log"
    with log.open("w") as out:
        scheduler = subprocess.Popen([airflow, "scheduler"], env=alert_env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not read_sink(alert_env, "deadlines.jsonl") and time.monotonic() < deadline:
            assert scheduler.poll() is None, log.read_text()[-3000:]
            time.sleep(2)
    finally:
        os.killpg(scheduler.pid, signal.SIGTERM)
        scheduler.wait(timeout=60)
    fired = read_sink(alert_env, "deadlines.jsonl")
    assert fired, log.read_text()[-3000:]
    run_ids = {d[3] for d in found["deadlines"]}
    assert {f["dag_id"] for f in fired} == {f"monitor__{ENDPOINT_ID}"} and {f["run_id"] for f in fired} <= run_ids
    assert len(fired) == len(run_ids)  # once per missed deadline
    assert all(f["label"] == f"late: {f['run_id']}" and f["deadline"]["deadline_time"] for f in fired)
    missed = metadata(alert_env, """
from sqlalchemy import select
from airflow.models.deadline import Deadline
out['missed'] = sorted({d.missed for d in session.scalars(select(Deadline))})
""")
    assert missed["missed"] == [True]


    # a backfill run of the same window gets no deadline: the reference gives none for it
    evaluated = metadata(alert_env, """
from sqlalchemy import select
from airflow.models import DagRun
from mlmon_alerting import WindowEndDeadline
run = session.scalars(select(DagRun).where(DagRun.dag_id == 'monitor__claims-approved-amount')).first()
ref = WindowEndDeadline()
out['manual'] = ref._evaluate_with(session=session, dag_id=run.dag_id, run_id=run.run_id).isoformat()
run.run_type = 'backfill'
session.flush()
out['backfill'] = ref._evaluate_with(session=session, dag_id=run.dag_id, run_id=run.run_id)
session.rollback()
""")
    assert datetime.fromisoformat(evaluated["manual"]) == window_end and evaluated["backfill"] is None


def test_a_task_with_its_own_failure_callback_still_calls_the_endpoints_notifiers(tmp_path):
    """trigger_retraining records its outcome on failure; its callback must not replace the notifiers."""
    from mlmon_alerting import failure_callbacks

    def own(context):  # noqa: ANN001
        return None

    noisy = load_endpoint_config(write(tmp_path, "noisy.yaml", demo(alerting={
        "on_failure": [{"notifier": SINK, "kwargs": {"path": str(tmp_path / "f.jsonl")}}]})))
    quiet = load_endpoint_config(write(tmp_path, "quiet.yaml", demo()))
    callbacks = failure_callbacks(noisy, own)
    assert callbacks[0] is own and len(callbacks) == 2 and type(callbacks[1]).__name__ == "TaskFailureAlert"
    assert failure_callbacks(quiet, own) == [own]
