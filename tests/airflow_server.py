"""A real `airflow api-server` for tests: the project's plugins, SimpleAuthManager with known users, loopback only.

Used by test_plugin_auth.py and ui_check.py. The metadata DB is a migrated temporary AIRFLOW_HOME prepared
the way the demo prepares its own (`airflow db migrate` and `airflow dags reserialize`).
"""

from __future__ import annotations

import contextlib
import json
import os
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
def api_server(home: Path, database_url: str, timeout_s: float = 180) -> Iterator[str]:
    """Yield the base URL of an api-server with auth on; the retraining DAG starts paused, as by default."""
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
    prepare_airflow(home, env)
    port = free_port()
    log_path = home / "api-server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "api-server", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
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
