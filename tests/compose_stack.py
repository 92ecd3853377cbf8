"""The compose stack without Docker: docker-compose.yml's per-service environment, interpolated the way
`docker compose` does against a .env built from .env.example, and its scripts run for real.

Container paths (/opt/airflow/..., /opt/mlmon) map to the repository and to temporary directories, and
the host `postgres` to a local PostgreSQL; everything else is what the container gets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
_VAR = re.compile(r"\$(?:\$|\{(\w+)(?:(:?-)([^}]*))?\})")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def dotenv(text: str) -> dict[str, str]:
    """KEY=VALUE lines as compose reads a .env file: comments and blanks skipped, one pair of quotes removed."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def env_example() -> dict[str, str]:
    return dotenv(ENV_EXAMPLE.read_text())


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """`${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset) and `$$`, as compose does."""
    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.group(1), m.group(2), m.group(3)
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env[name] if name in env else default
        return env.get(name, "")
    return _VAR.sub(one, value)


def service_env(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """What the container of service `name` is given, interpolated against `env` (the .env file)."""
    declared = services()[name].get("environment") or {}
    assert isinstance(declared, dict), f"{name}: environment must be a mapping"
    return {k: interpolate(str(v), env) for k, v in declared.items()}


def host_paths(tmp: Path) -> dict[str, str]:
    """The containers' paths on this machine: the bind mounts are the repository's folders."""
    return {
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp / "auth" / "simple_auth_manager_passwords.json"),
        "MLMON_CONFIG_DIR": str(ROOT / "configs"),
        "MLMON_HOME": str(tmp / "mlmon"),
        "MLMON_MODEL_DIR": str(tmp / "models"),
        "MLMON_VOLUME_DIRS": " ".join(str(tmp / d) for d in ("logs", "auth", "models", "mlmon")),
    }


def container_env(name: str, env: Mapping[str, str], *, tmp: Path, pg_host: str, pg_port: str) -> dict[str, str]:
    """The service's environment plus what the image itself provides (PATH to python, mlmon, airflow)."""
    given = service_env(name, env)
    given.update({"MLMON_POSTGRES_HOST": pg_host, "MLMON_POSTGRES_PORT": pg_port})
    # set by the image (or a script default) rather than the compose file
    image_given = ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER", "MLMON_VOLUME_DIRS")
    given.update({k: v for k, v in host_paths(tmp).items() if k in given or k in image_given})
    given.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    })
    return given


def entrypoint_argv(name: str) -> list[str]:
    """The service's command as its entrypoint runs it, from docker/entrypoint.sh on (dumb-init left out)."""
    service = services()[name]
    entry = list(service["entrypoint"])
    entry = entry[entry.index("/opt/mlmon/docker/entrypoint.sh"):]
    command = service.get("command") or []
    argv = [*entry, *([command] if isinstance(command, str) else command)]
    return [str(ROOT / a.removeprefix("/opt/mlmon/")) if a.startswith("/opt/mlmon/") else a for a in argv]


def run_service(name: str, env: Mapping[str, str], *, timeout: float = 600, extra: list[str] | None = None,
                ) -> subprocess.CompletedProcess:
    argv = entrypoint_argv(name) if extra is None else [str(ENTRYPOINT), *extra]
    return subprocess.run(["bash", *argv], env=dict(env), capture_output=True, text=True, timeout=timeout,
                          check=False)
