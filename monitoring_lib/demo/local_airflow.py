"""`mlmon airflow-local`: the real Airflow components on this project's `dags/` and `plugins/`, on a laptop.

A newcomer sees what an operator sees, without Docker: the embedded PostgreSQL under `.mlmon/` gets the
demo endpoint's first start (`mlmon init-demo`: training data, reference, a few quiet hours), live demo
traffic keeps arriving, and `airflow standalone` (api-server, scheduler, dag-processor, triggerer,
LocalExecutor, SQLite metadata under `.mlmon/airflow-local`) schedules the monitoring DAG every hour.
Auth stays on (SimpleAuthManager): the login is printed at start. Airflow runs as a child process, so
this module imports no Airflow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from monitoring_lib.config import get_endpoint
from monitoring_lib.db import connect
from monitoring_lib.demo.bootstrap import demo_model, describe, init_demo
from monitoring_lib.demo.orchestrate import ENDPOINT_ID, REPO
from monitoring_lib.demo.traffic import traffic_tick

ADMIN_USER = "admin"
STOP_GRACE_S = 30


def local_airflow_env(home: Path, url: str, port: int) -> dict[str, str]:
    """The environment of the Airflow components: the project's folders, auth on, paused at creation
    as a default Airflow is (so the unpause step is the one a user takes in production too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__API__PORT": str(port),
        # tasks reach the api-server here; Airflow's default assumes port 8080
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "MLMON_DATABASE_URL": url,
        "MLMON_CONFIG_DIR": str(Path(os.environ.get("MLMON_CONFIG_DIR") or REPO / "configs").resolve()),
        "MLMON_MODEL_DIR": str(home.parent / "models"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


def _traffic(url: str, stop: threading.Event) -> None:
    """Live demo rows every minute until `stop` is set, as the compose traffic service writes them."""
    model = demo_model()
    with connect(url) as conn:
        while not stop.is_set():
            now = datetime.now(UTC)
            traffic_tick(conn, model, now=now, rows_per_hour=2000, seed=int(now.timestamp()))
            stop.wait(60)


def run_local_airflow(url: str, home: Path, *, port: int = 8080, traffic: bool = True) -> int:
    """Seed the demo endpoint (idempotent), then run `airflow standalone` until interrupted."""
    print(f"{ENDPOINT_ID}: {describe(init_demo(url, get_endpoint(ENDPOINT_ID)))}", flush=True)
    home.mkdir(parents=True, exist_ok=True)
    env = local_airflow_env(home, url, port)
    stop = threading.Event()
    if traffic:
        threading.Thread(target=_traffic, args=(url, stop), daemon=True, name="demo-traffic").start()
    passwords = home / "simple_auth_manager_passwords.json.generated"
    print(f"Airflow UI: http://localhost:{port} (user {ADMIN_USER}, password in {passwords} once started)\n"
          f"Model Monitoring view: http://localhost:{port}/mlmon/ (Browse > Model Monitoring)\n"
          f"Unpause the DAGs: AIRFLOW_HOME={home} airflow dags unpause monitor__{ENDPOINT_ID}; the same for"
          " model_retraining\nCtrl-C stops Airflow, the traffic and the database.", flush=True)
    # its own process group, so the whole group (scheduler, api-server, task processes) stops together
    airflow = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "standalone"], env=env,
                               start_new_session=True)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill`, systemd and container stops: the same clean stop as Ctrl-C
    try:
        return airflow.wait()
    except KeyboardInterrupt:
        return _stop(airflow)
    finally:
        stop.set()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop(process: subprocess.Popen) -> int:
    """SIGTERM to the group, then SIGKILL after a grace period: standalone does not always pass SIGINT on."""
    for sig, grace in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            return process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()
