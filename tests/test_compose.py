"""docker-compose.yml, its Dockerfile and .env.example checked as data (no Docker engine needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
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
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line}"
            values[key.strip()] = value.strip()
    return values


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


def test_postgres_has_a_pg_isready_healthcheck_and_init_script():
    postgres = _services()["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any("/docker-entrypoint-initdb.d/" in v for v in postgres["volumes"])


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
    assert re.search(r"pip install .*-c \S*constraints\.txt", dockerfile)
    assert services["traffic-generator"]["entrypoint"] == ["mlmon"]
    assert services["traffic-generator"]["command"] == ["demo", "--traffic"]


def test_init_step_migrates_airflow_creates_the_admin_and_upgrades_the_monitoring_schema():
    init = _services()["airflow-init"]
    script_path = init["entrypoint"][-1].removeprefix("/opt/mlmon/")
    script = (ROOT / script_path).read_text()
    order = ("airflow db migrate", "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", "mlmon db upgrade")
    steps = [script.index(step) for step in order]
    assert steps == sorted(steps)
    assert "set -euo pipefail" in script


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
    env = _env_example()
    read_by_code = _env_names_read_by_code()
    assert {"MLMON_DATABASE_URL", "DYNATRACE_URL", "DYNATRACE_API_TOKEN"} <= read_by_code
    missing = (REQUIRED_ENV | read_by_code) - set(env)
    assert not missing, f".env.example lacks {sorted(missing)}"
    interpolated = set(re.findall(r"(?<!\$)\$\{(\w+)\}", COMPOSE.read_text()))  # $$ escapes; :- defaults
    assert not interpolated - set(env), f"compose needs {sorted(interpolated - set(env))} in .env.example"
    for service in ("airflow-init", *AIRFLOW_SERVICES, "traffic-generator"):
        assert _services()[service]["env_file"] == ".env"


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
