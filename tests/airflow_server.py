"""A real `airflow api-server` for tests: the project's plugins, SimpleAuthManager with known users, loopback only.

Used by test_plugin_auth.py and ui_check.py. The metadata DB is a migrated temporary AIRFLOW_HOME prepared
the way the demo prepares its own (`airflow db migrate` and `airflow dags reserialize`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from monitoring_lib.demo.orchestrate import airflow_env, prepare_airflow

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
USERS = {"admin": ("admin", "admin-pass-1"), "viewer": ("viewer", "viewer-pass-1")}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def api_server(home: Path, database_url: str, timeout_s: float = 180, *, extra_env: dict[str, str] | None = None,
               components: tuple[str, ...] = ()) -> Iterator[str]:
    """Yield the base URL of an api-server with auth on; the retraining DAG starts paused, as by default.

    `components` (say `("scheduler", "dag-processor")`) run beside it with the same environment, their tasks
    reporting to this api-server, so runs go through the real scheduler and LocalExecutor.
    """
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(dict(USERS.values())))
    env = airflow_env(home, database_url)
    env.update({
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{role}" for role, (u, _) in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(16).hex(),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__API__WORKERS": "1",
    })
    env.pop("MLMON_GRAFANA_URL", None)
    env.update(extra_env or {})
    port = free_port()
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
    prepare_airflow(home, env)
    log_path = home / "api-server.log"
    airflow = str(Path(sys.executable).parent / "airflow")
    with log_path.open("w") as log:
        proc = subprocess.Popen([airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        others = [subprocess.Popen([airflow, name], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True) for name in components]
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"api-server exited:\n{log_path.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"api-server did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(1)
            yield base
        finally:
            for other in others:  # the scheduler's task processes are in its group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(other.pid, signal.SIGTERM)
            for other in others:
                try:
                    other.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(other.pid, signal.SIGKILL)
                    other.wait()
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def token(base: str, role: str) -> str:
    """A JWT from the auth manager's own `POST /auth/token`, as the UI's login obtains one."""
    user, password = USERS[role]
    resp = httpx.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=10)
    if resp.status_code != 201:
        raise RuntimeError(f"login failed: {resp.status_code} {resp.text}")
    return resp.json()["access_token"]
