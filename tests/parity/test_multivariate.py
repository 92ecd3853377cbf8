"""Multivariate drift (PCA reconstruction error): a flipped correlation between two features whose
marginals stay put is flagged by it and by no univariate metric, the same in both compute modes."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring_lib.config import EndpointConfig
from monitoring_lib.demo.seed import TRAINING_TABLE, seed_demo
from monitoring_lib.dynatrace.lines import build_interval_lines
from monitoring_lib.reference import fit_and_store, read_training_data
from monitoring_lib.results.window import multivariate_only_windows
from monitoring_lib.runner import run_interval
from tests.database.test_pipeline import END, demo_config
from tests.parity.test_compute_database import assert_same_results, database_config, stored
from tests.sources import WINDOW_END, WINDOW_START, create_inference_table, insert_rows, make_config

MULTIVARIATE = {"enabled": True}


def correlated(n: int, rho: float, seed: int, start=WINDOW_START, prefix: str = "r") -> list[tuple]:
    """Rows whose two numeric features are standard normals (scaled) with correlation `rho`."""
    rng = np.random.default_rng(seed)
    a, e = rng.normal(size=n), rng.normal(size=n)
    b = rho * a + np.sqrt(1 - rho * rho) * e
    amounts, ages = 3000 + 400 * a, 10 + 3 * b
    offsets = np.sort(rng.uniform(0, 3600, n))
    regions = rng.choice(["north", "south", "east", "west"], n)
    latency = rng.gamma(2.0, 20.0, n)
    prediction = 2000 + 300 * rng.normal(size=n)  # independent of both: its marginal is all drift sees
    return [(f"{prefix}{i}", start + timedelta(seconds=float(offsets[i])), float(amounts[i]), float(ages[i]),
             str(regions[i]), float(prediction[i]), float(latency[i]), False) for i in range(n)]


def config(compute: str = "memory", **drift: object) -> EndpointConfig:
    cfg = make_config(drift={"multivariate": MULTIVARIATE, "feature": {"metric": "hellinger"}, **drift})
    return EndpointConfig.model_validate({**cfg.model_dump(by_alias=True), "compute": compute})


@pytest.fixture()
def fitted(conn, db_url):
    """A reference where claimed_amount and vehicle_age move together (rho 0.9), and an empty source."""
    create_inference_table(conn)
    reference = pd.DataFrame(correlated(20_000, 0.9, seed=1, start=WINDOW_START - timedelta(days=30)),
                             columns=["request_id", "ts", "claimed_amount", "vehicle_age", "region", "prediction",
                                      "latency_ms", "error"])
    conn.commit()
    profile = fit_and_store(db_url, config(), frame=reference)
    return profile


def both_modes(conn, db_url, rows: list[tuple], config, metric: str) -> tuple[tuple, tuple]:
    """The window of `rows` run in memory then in the database: each run's stored tables and `metric` row."""
    insert_rows(conn, rows)
    conn.commit()
    out = []
    for compute in ("memory", "database"):
        run_interval(db_url, config(compute), WINDOW_START, WINDOW_END)
        out.append((stored(conn), app_row(conn, metric)))
    return out[0], out[1]


def app_row(conn, metric: str, window_start=None) -> tuple:
    """The newest window's row of `metric` (or the one starting at `window_start`)."""
    return conn.execute("SELECT status, value, extra FROM monitoring.app_results WHERE metric = %s"
                        " AND (%s::timestamptz IS NULL OR window_start = %s) ORDER BY window_start DESC",
                        (metric, window_start, window_start)).fetchone()


def test_the_profile_holds_the_fitted_components(fitted):
    model = fitted.multivariate
    assert model is not None and model.features == ("claimed_amount", "vehicle_age")
    # two features with rho 0.9: one component explains (1 + 0.9) / 2 of the standardised variance
    assert len(model.components) == 1 and model.explained_share == pytest.approx(0.95, abs=0.01)
    # the error left is the minor eigenvalue, 1 - rho, on every chunk
    assert model.error_mean == pytest.approx(0.1, abs=0.01) and len(model.chunk_errors) == 10


def test_a_flipped_correlation_is_multivariate_drift_and_no_univariate_one(conn, db_url, fitted):
    insert_rows(conn, correlated(3000, -0.9, seed=2))
    conn.commit()
    report = run_interval(db_url, config(), WINDOW_START, WINDOW_END)

    assert report.drift_status == "drift_detected"
    statuses = conn.execute("SELECT feature, status FROM monitoring.feature_drift WHERE metric = 'hellinger'"
                            " ORDER BY 1").fetchall()
    assert statuses == [("claimed_amount", "no_drift"), ("region", "no_drift"), ("vehicle_age", "no_drift")]
    summary = dict(conn.execute("SELECT metric, value FROM monitoring.drift_summary").fetchall())
    # the error of the flipped pair is 1 + rho = 1.9 per row, against a band around 0.1
    assert summary["reconstruction_error"] == pytest.approx(1.9, abs=0.1)
    assert summary["reconstruction_error"] > summary["reconstruction_error_upper"] > 0.1
    status, value, extra = app_row(conn, "multivariate")
    assert status == "drift_detected" and value == pytest.approx(summary["reconstruction_error"])
    assert extra["features"] == ["claimed_amount", "vehicle_age"] and extra["components"] == 1
    reasons = conn.execute("SELECT details FROM monitoring.drift_summary WHERE metric = 'general_drift'").fetchone()[0]
    assert reasons["reasons"][0].startswith("multivariate reconstruction error")


def test_an_unchanged_correlation_stays_inside_the_band(conn, db_url, fitted):
    insert_rows(conn, correlated(3000, 0.9, seed=3))
    conn.commit()
    report = run_interval(db_url, config(), WINDOW_START, WINDOW_END)

    assert report.drift_status == "no_drift"
    status, value, extra = app_row(conn, "multivariate")
    assert status == "no_drift" and extra["lower_possible"] <= value <= extra["upper_possible"]


@pytest.mark.parametrize("rho", [-0.9, 0.9], ids=["flipped", "unchanged"])
def test_database_mode_stores_the_same_multivariate_results(conn, db_url, fitted, rho):
    rows = correlated(3000, rho, seed=4)
    rows[5] = (*rows[5][:2], None, *rows[5][3:])  # a missing value reads as the reference mean in both modes
    rows[6] = (*rows[6][:3], float("nan"), *rows[6][4:])
    (memory, memory_extra), (database, database_extra) = both_modes(conn, db_url, rows, config, "multivariate")

    assert_same_results(memory, database)
    assert memory_extra[0] == database_extra[0]
    assert json.dumps(memory_extra[2], sort_keys=True) == json.dumps(database_extra[2], sort_keys=True)
    assert any(r[0] == "reconstruction_error" for r in database["drift_summary"])


def test_a_profile_fitted_without_it_says_to_refit(conn, db_url):
    create_inference_table(conn)
    insert_rows(conn, correlated(500, 0.9, seed=5))
    conn.commit()
    plain = make_config(drift={"feature": {"metric": "hellinger"}})
    frame = pd.DataFrame(correlated(5000, 0.9, seed=6), columns=["request_id", "ts", "claimed_amount", "vehicle_age",
                                                                  "region", "prediction", "latency_ms", "error"])
    fit_and_store(db_url, plain, frame=frame)
    run_interval(db_url, config(), WINDOW_START, WINDOW_END)

    details = conn.execute("SELECT details FROM monitoring.drift_summary WHERE metric = 'general_drift'").fetchone()[0]
    assert "refit it (mlmon fit-reference)" in details["reasons"][0]
    assert app_row(conn, "multivariate") is None


def test_the_error_is_pushed_to_dynatrace_when_selected(conn, db_url, fitted):
    insert_rows(conn, correlated(3000, -0.9, seed=7))
    conn.commit()
    run_interval(db_url, config(), WINDOW_START, WINDOW_END)
    stored_error = conn.execute("SELECT value FROM monitoring.drift_summary WHERE metric = 'reconstruction_error'"
                                ).fetchone()[0]
    pushing = EndpointConfig.model_validate({**config().model_dump(by_alias=True),
                                             "dynatrace": {"enabled": True, "metrics": ["reconstruction_error"]}})
    lines = build_interval_lines(conn, pushing, WINDOW_START, WINDOW_END, "1").lines
    assert [line.key for line in lines] == ["mlmon.drift.multivariate.reconstruction_error"]
    assert float(lines[0].payload.split(",")[1]) == pytest.approx(stored_error, rel=1e-6)


@pytest.mark.parametrize("share", [0.3, 0.95], ids=["kept-form", "residual-form"])
def test_both_row_error_forms_give_the_memory_modes_error_in_sql(conn, share):
    """Five features: one kept component of five takes the |z|^2 - |V^T z|^2 form, four the residual one."""
    from monitoring_lib.compute.database.multivariate import error_in_database
    from monitoring_lib.compute.memory.multivariate import frame_error
    from monitoring_lib.drift.multivariate import fit_multivariate, uses_residual
    from monitoring_lib.source import describe_source

    rng = np.random.default_rng(8)
    base = rng.normal(size=(6000, 1))
    values = np.hstack([base + 0.3 * rng.normal(size=(6000, 1)) for _ in range(5)]) * [1, 10, 100, 0.1, 5]
    values[3, 2], values[4, 4], values[5, 0] = np.nan, np.inf, 1e300
    names = ("f0", "f1", "f2", "f3", "f4")
    conn.execute("CREATE TABLE wide (request_id text, ts timestamptz, f0 float8, f1 float8, f2 float8, f3 float8,"
                 " f4 numeric, prediction float8)")
    with conn.cursor() as cur, cur.copy("COPY wide FROM STDIN") as copy:
        for i, row in enumerate(values):
            copy.write_row((f"w{i}", WINDOW_START + timedelta(seconds=i * 0.5), *map(float, row[:4]),
                            None if not np.isfinite(row[4]) else row[4], 1.0))
    conn.commit()
    cfg = make_config(source={"table": "public.wide", "numeric_features": list(names), "categorical_features": [],
                              "latency_column": None, "error_column": None})
    model = fit_multivariate(values, names, share, 10)
    assert uses_residual(model) == (share > 0.5)
    frame = pd.DataFrame(values, columns=list(names))
    frame.loc[4, "f4"] = None  # as the table holds it: numeric has no infinity before PostgreSQL 14's reads
    memory = frame_error(frame, model)
    database = error_in_database(conn, cfg, model, describe_source(conn, cfg.source), WINDOW_START, WINDOW_END)
    assert database.rows == memory.rows == 6000
    assert database.error_sum == pytest.approx(memory.error_sum, rel=1e-9)


def test_the_demos_mismatched_claims_hour_is_caught_only_by_the_multivariate_metric(conn, db_url):
    """A 24-hour demo scenario: hour 4 pairs claimed amounts with the wrong claims; hour 3 is quiet."""
    seeded = seed_demo(conn, end=END, hours=24, rows_per_hour=400, seed=5, now=END + timedelta(hours=1))
    conn.commit()
    training, _ = read_training_data(db_url, table=f"public.{TRAINING_TABLE}")
    training[demo_config().source.prediction_column] = seeded.model.predict(training)
    fit_and_store(db_url, demo_config(), frame=training)
    start = END - timedelta(hours=24)
    broken = (start + timedelta(hours=4), start + timedelta(hours=5))
    report = run_interval(db_url, demo_config(), *broken)
    assert report.drift_status == "drift_detected" and report.dq_state == "passed"
    detected = conn.execute("SELECT feature FROM monitoring.feature_drift WHERE status = 'drift_detected'"
                            " AND metric = 'hellinger'").fetchall()
    assert detected == []
    [(end, error, upper)] = multivariate_only_windows(conn, "claims-approved-amount")
    assert end == broken[1] and error > 2 * upper
    memory = stored(conn)
    run_interval(db_url, database_config(), *broken)
    assert_same_results(memory, stored(conn))

    quiet = run_interval(db_url, demo_config(), start + timedelta(hours=3), start + timedelta(hours=4))
    assert quiet.dq_state == "passed"
    assert app_row(conn, "multivariate", start + timedelta(hours=3))[0] == "no_drift"
