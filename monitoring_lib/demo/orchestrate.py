"""`mlmon demo`: seed the insurance-claims scenario and run it through the real Airflow DAGs.

The Airflow part runs in a child process (`plugins/mlmon_demo_runner.py`) against a local Airflow
home under `.mlmon/airflow`, so this module stays free of Airflow imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg

from monitoring_lib import migrations
from monitoring_lib.config import get_endpoint
from monitoring_lib.db import command_database, connect, mlmon_home
from monitoring_lib.demo.scenario import current_hour
from monitoring_lib.demo.seed import TRAINING_TABLE, seed_demo
from monitoring_lib.demo.traffic import run_traffic
from monitoring_lib.dynatrace.client import client_from_env
from monitoring_lib.dynatrace.command import configured, export_pending
from monitoring_lib.dynatrace.push import push_pending
from monitoring_lib.reference import fit_and_store, read_training_data
from monitoring_lib.results.endpoints import current_version
from monitoring_lib.results.performance import EstimatedWindow, estimate_history
from monitoring_lib.results.retraining_events import started_and_trained
from monitoring_lib.results.tables import delete_endpoint
from monitoring_lib.results.view import drifted_window_counts
from monitoring_lib.results.window import multivariate_only_windows, segment_only_windows
from monitoring_lib.schedule import windows
from monitoring_lib.status import render_status

ENDPOINT_ID = "claims-approved-amount"
REPO = Path(__file__).resolve().parents[2]
RESULT_TABLES = ("feature_drift", "drift_summary", "feature_stats", "data_quality_results", "operational_metrics",
                 "model_performance", "app_results", "retraining_events", "dynatrace_outbox", "interval_runs",
                 "reference_profiles", "model_versions", "model_endpoints")


def say(text: str) -> None:
    print(text, flush=True)


def reset_endpoint(conn: psycopg.Connection, endpoint_id: str) -> None:
    """A demo re-run starts from the same state, so nothing piles up or accumulates versions."""
    delete_endpoint(conn, endpoint_id, RESULT_TABLES)


def airflow_env(home: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "MLMON_DATABASE_URL": url,
        "MLMON_CONFIG_DIR": str(Path(os.environ.get("MLMON_CONFIG_DIR") or REPO / "configs").resolve()),
        "MLMON_MODEL_DIR": str(home.parent / "models"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


def prepare_airflow(home: Path, env: dict[str, str]) -> None:
    """Migrate the local metadata DB once, and (re)serialize the DAGs so triggers find their target."""
    airflow = str(Path(sys.executable).parent / "airflow")
    home.mkdir(parents=True, exist_ok=True)
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        done = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"`airflow {' '.join(args)}` failed:\n{done.stderr[-2000:]}")


def run_demo(hours: int = 36, rows_per_hour: int = 2000, traffic: bool = False) -> int:
    if traffic:

        with command_database() as url:
            return run_traffic(url, rows_per_hour=rows_per_hour)
    began = time.monotonic()
    cfg = get_endpoint(ENDPOINT_ID)
    home = mlmon_home()
    with command_database() as url:
        say(f"[1/5] database ready ({'MLMON_DATABASE_URL' if os.environ.get('MLMON_DATABASE_URL') else home})")
        end = current_hour()
        with connect(url) as conn:
            migrations.upgrade(conn)
            reset_endpoint(conn, ENDPOINT_ID)
            seeded = seed_demo(conn, end=end, hours=hours, rows_per_hour=rows_per_hour, seed=42)
            conn.commit()
        say(f"[2/5] seeded {seeded.inference_rows} predictions over {hours} h ending {end:%Y-%m-%d %H:%M} UTC, "
            f"{seeded.label_rows} labels landed ({seeded.labels_pending} still pending), "
            f"{seeded.training_rows} training rows")
        training, _ = read_training_data(url, table=f"public.{TRAINING_TABLE}")
        training[cfg.source.prediction_column] = seeded.model.predict(training)
        profile = fit_and_store(url, cfg, frame=training)
        say(f"[3/5] trained the claims model and stored reference profile v{profile.version}")
        env = airflow_env(home / "airflow", url)
        prepare_airflow(home / "airflow", env)
        spans = [(s.isoformat(), e.isoformat()) for s, e in windows(end - timedelta(hours=hours), end,
                                                                       cfg.schedule.interval)]
        say(f"[4/5] running {len(spans)} hourly windows through DAG monitor__{ENDPOINT_ID} (dag.test)")
        events = _run_dags(env, spans)
        lines_file = home / "dynatrace-lines.txt"
        pushed = _dynatrace(url, lines_file)
        say(f"[5/5] {pushed}")
        with connect(url) as conn:
            say(render_report(conn, events))
    say(f"done in {time.monotonic() - began:.0f} s. Look closer: `.venv/bin/mlmon status --endpoint {ENDPOINT_ID}`;"
        " Grafana: `docker compose up -d`, then http://localhost:3000")
    failed = [e for e in events if e.get("state") != "success"]
    return 1 if failed else 0


def _run_dags(env: dict[str, str], spans: list[tuple[str, str]]) -> list[dict]:
    runner = REPO / "plugins" / "mlmon_demo_runner.py"
    proc = subprocess.Popen([sys.executable, str(runner), ENDPOINT_ID, json.dumps(spans)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.startswith("MLMON "):
            continue
        event = json.loads(line[6:])
        events.append(event)
        if event["kind"] == "monitor":
            say(f"      {event['window_start'][:16]}  {event['state']}")
        else:
            say(f"      retraining {event.get('run_id', '')}: {event.get('state')}")
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0:
        raise RuntimeError(f"the DAG runner failed:\n{stderr[-3000:]}")
    return events


def _dynatrace(url: str, lines_file: Path) -> str:

    if configured():

        with client_from_env() as client:
            report = push_pending(lambda: connect(url), client)
        return f"pushed to Dynatrace: {report.sent} sent, {report.expired} expired, {report.invalid} invalid"
    count = export_pending(url, lines_file)
    return f"DYNATRACE_URL is not set: the {count} pending Dynatrace lines are in {lines_file}"


def render_report(conn: psycopg.Connection, events: list[dict]) -> str:

    out = ["", "Per interval:", render_status(conn, windows=1000, endpoint_id=ENDPOINT_ID), ""]
    drifted = drifted_window_counts(conn, ENDPOINT_ID, "hellinger")
    out.append("Drifted features (windows with drift_detected): "
               + (", ".join(f"{f} ({n})" for f, n in drifted) or "none"))
    together = multivariate_only_windows(conn, ENDPOINT_ID)
    out.append("Multivariate drift with no feature drifted on its own (features unchanged one by one, no longer"
               " together): " + (", ".join(f"window ending {end:%Y-%m-%d %H:%M} (reconstruction error {error:.3g},"
                                           f" band up to {upper:.3g})" for end, error, upper in together) or "none"))
    hidden = segment_only_windows(conn, ENDPOINT_ID)
    out.append("Segments that drifted while the whole window did not (against the segment's own reference): "
               + (", ".join(f"{segment} in the window ending {end:%Y-%m-%d %H:%M} ({', '.join(features)})"
                            for end, segment, features in hidden) or "none"))
    out.append(estimate_line(estimate_history(conn, ENDPOINT_ID)))
    for e in started_and_trained(conn, ENDPOINT_ID):
        if e["event_type"] == "decision":
            out.append(f"Retraining triggered for the window ending {e['window_end']:%Y-%m-%d %H:%M}:"
                       f" {'; '.join(e['reasons'])}")
        else:
            before = e["model_version_before"]
            out.append(f"Retraining outcome: {e['outcome']} (model version {before} ->"
                       f" {e['model_version_after'] or before})")
    out.append(f"Model version in service now: {current_version(conn, ENDPOINT_ID) or '-'}")
    return "\n".join(out)


def estimate_line(history: list[EstimatedWindow]) -> str:
    """What the estimate said before the labels, and how the labels that landed bore it out."""
    if not history:
        return "Estimated performance: none (performance.estimation is off, or the reference has no estimator)"
    metric = history[-1].metric
    first = next((w for w in history if w.status == "drop_detected"), None)
    labelled = [w for w in history if w.realised is not None and w.lower is not None and w.upper is not None]
    inside = sum(1 for w in labelled if w.lower <= w.realised <= w.upper)
    waiting = [w for w in history if w.realised is None and w.estimated is not None]
    parts = [f"Estimated performance ({metric}, from predictions alone):"]
    parts.append(f"first drop detected in the window ending {first.window_end:%Y-%m-%d %H:%M} (estimated"
                 f" {first.estimated:.4g} against {first.reference:.4g} on the reference)" if first
                 else "no drop detected")
    if waiting:
        last = waiting[-1]
        parts.append(f"{len(waiting)} window(s) still without labels, the latest estimated at {last.estimated:.4g}"
                     f" ({last.status})")
    if labelled:
        parts.append(f"where labels landed, the realised {metric} lay inside the estimate's band in {inside} of"
                     f" {len(labelled)} window(s); outside it the relation between features and target changed,"
                     " which no estimate can see")
    return " ".join(parts[:1]) + " " + "; ".join(parts[1:])

