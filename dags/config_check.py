"""Surfaces invalid endpoint configs as an import error in the Airflow UI (file, field and reason).

The monitoring DAG file skips files that fail validation so other endpoints keep running; this
file fails to import instead, so the problem is visible where operators look. Parsing reads YAML only.
"""

from __future__ import annotations

from airflow.sdk import dag

from monitoring_lib.config import load_each
from monitoring_lib.errors import ConfigError

_problems = load_each()[1]  # invalid files, and the newer file of an endpoint id defined twice
if _problems:
    raise ConfigError(_problems)


@dag(dag_id="mlmon_config_check", schedule=None, tags=["model-monitoring"], default_args={"retries": 0},
     doc_md="Imports cleanly only while every file in the config directory is valid; run `mlmon validate-config`.")
def mlmon_config_check() -> None:
    """No tasks: its presence in the UI means every monitoring config validated."""


mlmon_config_check()
