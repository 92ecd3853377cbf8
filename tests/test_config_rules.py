"""Settings that validate one by one but contradict each other: refused when the file is loaded, naming
the file and the field, instead of silently producing results that cannot be right."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitoring_lib.config import load_endpoint_config
from monitoring_lib.drift.profile import ReferenceProfile
from monitoring_lib.drift.tiers import feature_thresholds
from monitoring_lib.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


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
    assert "schedule.grace_period: 0:55:00 is too long while dynatrace.enabled is true" in problem
    assert problem.startswith(str(path))
    cfg = load_endpoint_config(write_config(tmp_path, schedule={"grace_period": "55m"}, dynatrace={"enabled": False}))
    assert cfg.schedule.grace_period.total_seconds() == 55 * 60
