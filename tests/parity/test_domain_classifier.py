"""The domain classifier (`drift.domain_classifier`): a window a classifier tells from the reference is
drift, one it cannot is not; both compute modes classify the same samples and store the same AUC."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from monitoring_lib.config import EndpointConfig
from monitoring_lib.reference import fit_and_store
from monitoring_lib.runner import run_interval
from tests.parity.test_compute_database import assert_same_results
from tests.parity.test_multivariate import app_row, both_modes, correlated
from tests.sources import WINDOW_END, WINDOW_START, create_inference_table, insert_rows, make_config

COLUMNS = ["request_id", "ts", "claimed_amount", "vehicle_age", "region", "prediction", "latency_ms", "error"]


def config(compute: str = "memory", **domain: object) -> EndpointConfig:
    cfg = make_config(drift={"domain_classifier": {"enabled": True, "sample_rows": 2000, **domain},
                             "feature": {"metric": "hellinger"}})
    return EndpointConfig.model_validate({**cfg.model_dump(by_alias=True), "compute": compute})


@pytest.fixture()
def fitted(conn, db_url):
    create_inference_table(conn)
    conn.commit()
    reference = pd.DataFrame(correlated(20_000, 0.9, seed=1, start=WINDOW_START - timedelta(days=30)), columns=COLUMNS)
    return fit_and_store(db_url, config(), frame=reference)


def test_the_profile_keeps_a_bounded_sample_of_the_features(fitted):
    sample = fitted.reference_sample
    assert set(sample) == {"claimed_amount", "vehicle_age", "region"}
    assert all(len(values) == 2000 for values in sample.values())
    assert {type(v) for v in sample["claimed_amount"]} == {float} and {type(v) for v in sample["region"]} == {str}


def test_a_window_the_classifier_tells_apart_is_drift_and_a_like_one_is_not(conn, db_url, fitted):
    insert_rows(conn, correlated(3000, -0.9, seed=2))
    conn.commit()
    flipped = run_interval(db_url, config(), WINDOW_START, WINDOW_END)
    status, auc, extra = app_row(conn, "domain_classifier")
    assert flipped.drift_status == "drift_detected" and status == "drift_detected" and auc > 0.7
    assert extra == {"possible": 0.55, "detected": 0.6, "reference_rows": 2000, "window_rows": 2000}
    summary = dict(conn.execute("SELECT metric, value FROM monitoring.drift_summary").fetchall())
    assert summary["domain_classifier_auc"] == pytest.approx(auc)
    reasons = conn.execute("SELECT details FROM monitoring.drift_summary WHERE metric = 'general_drift'").fetchone()[0]
    assert reasons["reasons"][0].startswith(f"domain classifier AUC {auc:.3f} >= 0.6 (drift_detected)")

    later = (WINDOW_START + timedelta(hours=1), WINDOW_END + timedelta(hours=1))
    insert_rows(conn, correlated(3000, 0.9, seed=3, start=later[0], prefix="s"))
    conn.commit()
    like = run_interval(db_url, config(), *later)
    status, auc, _ = app_row(conn, "domain_classifier", later[0])
    assert like.drift_status == "no_drift" and status == "no_drift" and 0.4 < auc < 0.55


@pytest.mark.parametrize("rho", [-0.9, 0.9], ids=["flipped", "unchanged"])
def test_database_mode_stores_the_same_auc(conn, db_url, fitted, rho):
    (memory, memory_row), (database, database_row) = both_modes(conn, db_url, correlated(3000, rho, seed=4), config,
                                                                "domain_classifier")
    assert_same_results(memory, database)
    assert memory_row == database_row


def test_a_window_below_min_rows_is_not_judged_and_says_why(conn, db_url, fitted):
    insert_rows(conn, correlated(300, -0.9, seed=5))
    conn.commit()
    run_interval(db_url, config(), WINDOW_START, WINDOW_END)
    assert app_row(conn, "domain_classifier") is None
    reasons = conn.execute("SELECT details FROM monitoring.drift_summary WHERE metric = 'general_drift'").fetchone()[0]
    assert "domain classifier not judged: 300 rows in a sample, fewer than drift.domain_classifier.min_rows (500)" \
        in reasons["reasons"]
