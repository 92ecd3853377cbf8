"""Settings that validate one by one but contradict each other: refused when the file is loaded, naming
the file and the field, instead of silently producing results that cannot be right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from monitoring_lib.config import get_endpoint, load_each, load_endpoint_config
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.drift.tiers import feature_thresholds
from monitoring_lib.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "claims-approved-amount.yaml"


def write_config(tmp_path: Path, **changes: dict) -> Path:
    data = yaml.safe_load((REPO / "configs" / "claims-approved-amount.yaml").read_text())
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values}
    path = tmp_path / "endpoint.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("feature", "said"), [
    ({"possible": 0.3}, "'possible' 0.3 against hellinger's default 'detected' 0.15"),
    ({"detected": 0.05}, "hellinger's default 'possible' 0.1 against 'detected' 0.05"),
    ({"metric": "tvd", "possible": 0.3, "detected": 0.25}, "'possible' 0.3 against 'detected' 0.25"),
])
def test_a_tier_set_alone_must_stay_ordered_with_the_metrics_default(tmp_path, feature, said):
    """`possible: 0.3` alone meant to loosen the threshold; under the default `detected` 0.15 every value
    above 0.15 would be drift_detected and none possible_drift."""
    path = write_config(tmp_path, drift={"feature": feature})
    with pytest.raises(ConfigError) as info:
        load_endpoint_config(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: drift.feature: 'detected' must be >= 'possible'") and said in problem


def test_a_tier_set_alone_that_keeps_the_order_fills_the_other_from_the_default(tmp_path):
    cfg = load_endpoint_config(write_config(tmp_path, drift={"feature": {"possible": 0.12}}))
    profile = ReferenceProfile(endpoint_id=cfg.endpoint_id, model_version="1", features={}, prediction=None,
                               label=None, row_count=0)
    t = feature_thresholds(cfg.source.features[0], "hellinger", profile, cfg)
    assert (t.possible, t.detected) == (0.12, 0.15)


def test_a_grace_period_past_what_dynatrace_accepts_is_refused(tmp_path):
    """Lines carry the window end and are pushed after the grace period; Dynatrace takes points at most an
    hour old, so a long grace period would expire every line of every window."""
    path = write_config(tmp_path, schedule={"grace_period": "55m"}, dynatrace={"enabled": True})
    with pytest.raises(ConfigError) as info:
        load_endpoint_config(path)
    (problem,) = info.value.problems
    assert "schedule.grace_period: 55 minutes is too long while dynatrace.enabled is true" in problem
    assert "keep it at most 40 minutes" in problem
    assert problem.startswith(str(path))
    cfg = load_endpoint_config(write_config(tmp_path, schedule={"grace_period": "55m"}, dynatrace={"enabled": False}))
    assert cfg.schedule.grace_period.total_seconds() == 55 * 60


def _config_dir(tmp_path: Path) -> Path:
    """A valid endpoint, a broken file, and one endpoint id defined in two files: the production file
    `d-twin.yaml` and, a day later, a copy `c-twin.yaml` whose endpoint_id was not changed (it sorts first)."""
    directory = tmp_path / "configs"
    directory.mkdir()
    data = yaml.safe_load(DEMO.read_text())
    (directory / "a-valid.yaml").write_text(yaml.safe_dump(data))
    (directory / "b-broken.yaml").write_text(yaml.safe_dump({**data, "endpoint_id": "broken", "schedule": {
        "interval": "not a duration"}}))
    for name, project, age in (("d-twin.yaml", "production", 2 * 86400), ("c-twin.yaml", "copy", 86400)):
        (directory / name).write_text(yaml.safe_dump({**data, "endpoint_id": "twin", "project": project}))
        then = time.time() - age
        os.utime(directory / name, (then, then))
    return directory


def test_a_broken_file_does_not_stop_other_endpoints_and_a_copied_id_keeps_the_older_file(tmp_path):
    directory = _config_dir(tmp_path)
    valid_id = yaml.safe_load(DEMO.read_text())["endpoint_id"]
    configs, problems = load_each(directory)
    assert set(configs) == {valid_id, "twin"}
    assert any("b-broken.yaml: schedule.interval" in p for p in problems)
    assert f"{directory / 'c-twin.yaml'}: endpoint_id: 'twin' is already defined in the older file " \
           f"{directory / 'd-twin.yaml'}, which is kept; this file is not used until its endpoint_id is changed" \
           in problems
    assert configs["twin"].project == "production"
    # the retraining task and the CLI look an endpoint up this way, and agree with the monitoring DAG
    assert get_endpoint(valid_id, directory).endpoint_id == valid_id
    twin = get_endpoint("twin", directory)
    assert (twin.project, twin.source_file) == ("production", str(directory / "d-twin.yaml"))
    with pytest.raises(ConfigError, match="b-broken.yaml: schedule.interval"):
        get_endpoint("broken", directory)


def test_twin_files_of_the_same_age_keep_the_first_by_name(tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    for name in ("b.yaml", "a.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump({**data, "project": name}))
        os.utime(tmp_path / name, ns=(1_700_000_000_000_000_000,) * 2)
    configs, problems = load_each(tmp_path)
    assert configs[data["endpoint_id"]].project == "a.yaml"
    assert problems == [f"{tmp_path / 'b.yaml'}: endpoint_id: '{data['endpoint_id']}' is already defined in the "
                        f"older file {tmp_path / 'a.yaml'}, which is kept; this file is not used until its "
                        "endpoint_id is changed"]


def test_validate_config_reports_a_copied_endpoint_id_as_an_error(tmp_path, capsys):
    from monitoring_lib.cli import EXIT_CONFIG, main

    directory = _config_dir(tmp_path)
    assert main(["--config-dir", str(directory), "validate-config", "--no-db"]) == EXIT_CONFIG
    out = capsys.readouterr().out
    assert f"{directory / 'c-twin.yaml'}: endpoint_id: 'twin' is already defined in the older file " \
           f"{directory / 'd-twin.yaml'}, which is kept" in out


def test_airflow_parses_the_valid_endpoints_and_names_the_rest(tmp_path):
    """The monitoring DAG file builds DAGs for valid endpoints, the twin from its older file; the config check
    shows the problems, naming both twin files."""
    from monitoring_lib.demo.orchestrate import airflow_env

    directory = _config_dir(tmp_path)
    env = {**airflow_env(tmp_path / "airflow", "postgresql://unused@localhost/none"),
           "MLMON_CONFIG_DIR": str(directory)}
    code = ("import json, os; from airflow.dag_processing.dagbag import DagBag;"
            "b = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER']);"
            "print(json.dumps({'dags': sorted(b.dag_ids), 'twin_tags': sorted(b.dags['monitor__twin'].tags),"
            " 'errors': {os.path.basename(k): str(v) for k, v in b.import_errors.items()}}))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    bag = json.loads(done.stdout.strip().splitlines()[-1])
    valid_id = yaml.safe_load(DEMO.read_text())["endpoint_id"]
    assert bag["dags"] == sorted([f"monitor__{valid_id}", "monitor__twin", "model_retraining"])
    assert "production" in bag["twin_tags"] and "copy" not in bag["twin_tags"]
    assert set(bag["errors"]) == {"config_check.py"}
    error = bag["errors"]["config_check.py"]
    assert "b-broken.yaml: schedule.interval" in error
    assert f"{directory / 'c-twin.yaml'}: endpoint_id: 'twin' is already defined in the older file " \
           f"{directory / 'd-twin.yaml'}, which is kept" in error


@pytest.mark.parametrize(("changes", "said"), [
    ({"drift": {"multivariate": {"enabled": True, "features": ["claimed_amount", "region"]}}},
     "drift.multivariate.features: not a configured numeric feature: ['region']"),
    ({"drift": {"multivariate": {"enabled": True, "features": ["claimed_amount"]}}},
     "drift.multivariate: needs at least two numeric features"),
    ({"drift": {"multivariate": {"enabled": True, "possible_k": 4, "detected_k": 3}}},
     "'detected_k' (3.0) must be >= 'possible_k' (4.0)"),
])
def test_multivariate_drift_settings_that_cannot_work_are_refused(tmp_path, changes, said):
    path = write_config(tmp_path, **changes)
    with pytest.raises(ConfigError) as err:
        load_endpoint_config(path)
    assert said in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(("changes", "said"), [
    ({"drift": {"domain_classifier": {"enabled": True, "possible": 0.7, "detected": 0.6}}},
     "'detected' (0.6) must be >= 'possible' (0.7)"),
    ({"drift": {"domain_classifier": {"possible": 0.4}}}, "possible"),
])
def test_domain_classifier_settings_that_cannot_work_are_refused(tmp_path, changes, said):
    path = write_config(tmp_path, **changes)
    with pytest.raises(ConfigError) as err:
        load_endpoint_config(path)
    assert said in str(err.value) and str(path) in str(err.value)
