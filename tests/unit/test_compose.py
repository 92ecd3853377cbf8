"""docker-compose.yml, its Dockerfile and .env.example checked as data (no Docker engine needed)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import compose_stack as stack
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
# Read by the code, the DAGs or the provisioning; the scan below adds whatever else the code reads.
REQUIRED_ENV = {
    "MLMON_DATABASE_URL", "DYNATRACE_URL", "DYNATRACE_API_TOKEN", "AIRFLOW_CONN_MONITORING_DB",
    "AIRFLOW_CONN_DYNATRACE_DEFAULT", "MLMON_GRAFANA_DB_USER", "MLMON_GRAFANA_DB_PASSWORD",
}
_ENV_READS = (
    re.compile(r"os\.environ\.get\(\s*[\"']([A-Z][A-Z0-9_]+)[\"']"),
    re.compile(r"os\.environ\[\s*[\"']([A-Z][A-Z0-9_]+)[\"']\s*\]"),
    re.compile(r"os\.getenv\(\s*[\"']([A-Z][A-Z0-9_]+)[\"']"),
    re.compile(r"\b\w*_ENV\s*(?::\s*\w+\s*)?=\s*[\"']([A-Z][A-Z0-9_]+)[\"']"),
)
_CONN_IDS = re.compile(r"\b(?:conn_id|default_conn_name)\s*(?::\s*\w+\s*)?=\s*[\"']([a-z][a-z0-9_]*)[\"']")
_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|FERNET")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _env_example() -> dict[str, str]:
    return stack.env_example()


def _env_example_commented() -> dict[str, str]:
    """The optional settings .env.example documents but leaves commented out."""
    lines = [line.strip().removeprefix("#").strip() for line in ENV_EXAMPLE.read_text().splitlines()
             if re.match(r"#\s*[A-Z][A-Z0-9_]+=", line.strip())]
    return stack.dotenv("\n".join(lines))


def _env_names_read_by_code() -> set[str]:
    names = set()
    for folder in ("monitoring_lib", "dags", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for pattern in _ENV_READS:
                names.update(pattern.findall(text))
            names.update(f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in _CONN_IDS.findall(text))
    # the process's own PATH and Airflow's own settings (set by the compose file itself) are not product config
    return {n for n in names if n != "PATH" and not n.startswith("AIRFLOW__")}


def test_services_exist():
    assert {"postgres", "airflow-init", *AIRFLOW_SERVICES, "grafana", "traffic-generator"} <= set(_services())


def test_postgres_has_a_pg_isready_healthcheck_and_only_its_own_settings():
    postgres = _services()["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert set(postgres["environment"]) == {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}


def test_every_bind_mount_and_build_path_exists_in_the_repo():
    checked = 0
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert not source.startswith("/"), f"{name}: absolute host path {source}"
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
                checked += 1
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert checked >= 6


def test_depends_on_uses_conditions_on_services_that_can_satisfy_them():
    services = _services()
    for name, service in services.items():
        if name == "postgres":
            continue
        depends = service.get("depends_on")
        assert isinstance(depends, dict) and depends, f"{name} must wait for its dependencies"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} without healthcheck"
            else:
                assert spec["condition"] == "service_completed_successfully"
                assert services[target].get("restart") == "no", f"{target} is a one-shot step"
    for name in (*AIRFLOW_SERVICES, "grafana", "traffic-generator"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_airflow_services_run_the_right_components_from_the_project_image():
    services = _services()
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands == {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
    for name in (*AIRFLOW_SERVICES, "airflow-init", "traffic-generator"):
        assert services[name]["build"]["dockerfile"] == "docker/airflow.Dockerfile"
        assert "healthcheck" in services[name] or name in ("airflow-init", "traffic-generator")
    dockerfile = (ROOT / "docker" / "airflow.Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", dockerfile, re.MULTILINE)
    # the image's own installed set constrains the install, and the result is checked
    assert re.search(r"pip list --format=freeze > (\S+).*pip install [^\n]*-c \1", dockerfile, re.DOTALL)
    assert re.search(r"pip install [^\n]*-c [^\n]*\n\s*&& pip check", dockerfile)
    assert services["traffic-generator"]["entrypoint"][-2:] == ["/opt/mlmon/docker/entrypoint.sh", "mlmon"]
    assert services["traffic-generator"]["command"] == ["demo", "--traffic"]
    for name in (*AIRFLOW_SERVICES, "airflow-init", "traffic-generator"):
        assert "/opt/mlmon/docker/entrypoint.sh" in services[name]["entrypoint"], f"{name} skips the URL builder"
    for name in AIRFLOW_SERVICES:
        assert services[name]["entrypoint"][-1] == "/entrypoint", "the image's own entrypoint runs the component"
    # dumb-init executes the script itself, so it must keep its executable bit in the build context
    assert os.access(ROOT / "docker" / "entrypoint.sh", os.X_OK)


def test_the_committed_pins_are_a_consistent_set():
    """What a test can prove offline: the set constraints.txt pins (installed here) passes `pip check`.
    The image's own set is checked by `pip check` in the Dockerfile at build time."""
    import subprocess
    import sys
    from importlib.metadata import version

    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().split() if "==" in line)
    for name in ("apache-airflow", "apache-airflow-providers-postgres", "pandas", "sqlalchemy", "numpy", "pydantic"):
        key = next(k for k in pins if k.lower() == name)
        assert version(name) == pins[key], f"this environment is not the committed set: {name}"
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_init_step_runs_every_first_start_step_in_order_and_as_root_for_the_volumes():
    init = _services()["airflow-init"]
    assert init["user"] == "0:0" and init["restart"] == "no"
    script = (ROOT / init["entrypoint"][-1].removeprefix("/opt/mlmon/")).read_text()
    order = ("init-volumes.sh", "as_user.py", "stack_db.py\" roles", "airflow db migrate",
             "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", "mlmon db upgrade", "mlmon init-demo", "stack_db.py\" grants",
             "airflow dags reserialize", "airflow dags unpause")
    steps = [script.index(step) for step in order]
    assert steps == sorted(steps)
    assert "set -euo pipefail" in script
    for service in _services().values():
        assert "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION" not in (service.get("environment") or {})


def test_grafana_mounts_provisioning_and_the_dashboards_where_the_provider_looks():
    grafana = _services()["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    assert mounts["./dashboards/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider_file = ROOT / "dashboards/grafana/provisioning/dashboards/monitoring.yaml"
    provider = yaml.safe_load(provider_file.read_text())
    assert mounts["./dashboards/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    datasource = (ROOT / "dashboards/grafana/provisioning/datasources/monitoring.yaml").read_text()
    for name in re.findall(r"\$\{(\w+)\}", datasource):
        assert name in grafana["environment"], f"datasource uses ${{{name}}}, not passed to grafana"


def test_env_example_lists_every_variable_the_code_and_compose_read():
    import importlib.util

    spec = importlib.util.spec_from_file_location("stack_env", ROOT / "docker" / "stack_env.py")
    stack_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack_env)
    env = _env_example()
    documented = set(env) | set(_env_example_commented())
    built = set(stack_env.exports({k: "x" for k in documented}))  # the URLs docker/entrypoint.sh builds
    given = {k for service in _services().values() for k in (service.get("environment") or {})}
    read_by_code = _env_names_read_by_code()
    assert {"MLMON_DATABASE_URL", "DYNATRACE_URL", "DYNATRACE_API_TOKEN"} <= read_by_code
    missing = (REQUIRED_ENV | read_by_code) - documented - built - given
    assert not missing, f"nothing sets {sorted(missing)}"
    assert {"MLMON_DATABASE_URL", "AIRFLOW_CONN_MONITORING_DB", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"} <= built
    interpolated = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE.read_text()))  # $$ escapes
    assert not interpolated - documented, f"compose needs {sorted(interpolated - documented)} in .env.example"
    for name, service in _services().items():
        assert "env_file" not in service, f"{name}: an env_file hands every secret to every process"


def test_optional_integrations_are_commented_out():
    env, optional = _env_example(), _env_example_commented()
    for key in ("DYNATRACE_URL", "DYNATRACE_API_TOKEN", "AIRFLOW_CONN_DYNATRACE_DEFAULT"):
        assert key in optional and key not in env, f"{key} must be commented out in .env.example"


# Which service sees which variable (after docker/entrypoint.sh): the secrets each one may hold.
SEES = {
    "postgres": {"POSTGRES_PASSWORD"},
    "airflow-init": {"POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "MLMON_DB_PASSWORD", "MLMON_GRAFANA_DB_PASSWORD",
                     "DEMO_DB_PASSWORD", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW__API_AUTH__JWT_SECRET",
                     "AIRFLOW__CORE__FERNET_KEY"},
    "airflow-apiserver": {"AIRFLOW_DB_PASSWORD", "MLMON_DB_PASSWORD", "AIRFLOW__API_AUTH__JWT_SECRET",
                          "AIRFLOW__CORE__FERNET_KEY"},
    "airflow-scheduler": {"AIRFLOW_DB_PASSWORD", "MLMON_DB_PASSWORD", "AIRFLOW__API_AUTH__JWT_SECRET",
                          "AIRFLOW__CORE__FERNET_KEY", "DYNATRACE_API_TOKEN", "AIRFLOW_CONN_DYNATRACE_DEFAULT"},
    "airflow-dag-processor": {"AIRFLOW_DB_PASSWORD", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"},
    "airflow-triggerer": {"AIRFLOW_DB_PASSWORD", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"},
    "traffic-generator": {"DEMO_DB_PASSWORD"},
    "grafana": {"GRAFANA_ADMIN_PASSWORD", "MLMON_GRAFANA_DB_PASSWORD"},
}


def test_each_service_sees_only_the_secrets_it_needs():
    """Every secret of .env.example marked with its own value; each service's environment is then read for
    which of those values reach it (under whatever name compose gives them)."""
    env = {**_env_example(), **_env_example_commented()}
    secrets = {k for k in env if _SECRET_NAME.search(k) or k.startswith("AIRFLOW_CONN_")}
    marked = {k: (f"value-of-{k}" if k in secrets else v) for k, v in env.items()}
    assert set(SEES) == set(_services())
    for name in _services():
        given = stack.service_env(name, marked)
        seen = {k for k in secrets if any(f"value-of-{k}" in v for v in given.values())}
        assert seen == SEES[name], f"{name} sees {sorted(seen - SEES[name])}, lacks {sorted(SEES[name] - seen)}"


def test_each_service_gets_the_logins_it_works_with():
    env = _env_example()
    users = {name: stack.service_env(name, env).get("MLMON_DB_USER") for name in _services()}
    assert users["airflow-scheduler"] == users["airflow-apiserver"] == env["MLMON_DB_USER"]
    assert users["traffic-generator"] == env["DEMO_DB_USER"]
    assert users["airflow-dag-processor"] is None and users["airflow-triggerer"] is None and users["grafana"] is None
    grafana = stack.service_env("grafana", env)
    assert grafana["MLMON_GRAFANA_DB_USER"] == env["MLMON_GRAFANA_DB_USER"]
    assert not any(k.startswith(("AIRFLOW", "POSTGRES", "DYNATRACE")) for k in grafana)


@pytest.mark.parametrize("key", sorted(k for k in _env_example() if _SECRET_NAME.search(k)))
def test_env_example_holds_placeholders_not_secrets(key: str):
    value = _env_example()[key]
    assert value == "" or "change-me" in value, f"{key} looks like a real secret"


def test_no_secret_literals_in_compose_or_provisioning():
    provisioning = (ROOT / "dashboards/grafana/provisioning").rglob("*.yaml")
    texts = [COMPOSE.read_text(), *(p.read_text() for p in provisioning)]
    for text in texts:
        for key, value in re.findall(r"(\w*(?:PASSWORD|TOKEN|SECRET|password)\w*):\s*(\S+)", text):
            if not key.endswith("_FILE"):
                assert value.startswith("${"), f"{key} has a literal value {value}"
    assert ".env" in (ROOT / ".gitignore").read_text().split()
