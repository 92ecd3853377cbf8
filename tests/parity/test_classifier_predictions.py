"""A classifier's predictions as booleans or class names, read from PostgreSQL and run through the interval.

The profile fits them as classes; the interval used to read them as numbers, so a class name was a
wrong type on every row (failing `not_null:prediction`, critical) and a boolean became 1.0/0.0, matching
no fitted class: prediction drift 1.0 on the very data the reference was fitted on.
"""

from __future__ import annotations

import pytest

from monitoring_lib.reference import fit_and_store
from monitoring_lib.runner import run_interval
from monitoring_lib.source import read_window
from tests.sources import WINDOW_END, WINDOW_START, make_config, seed_source

AS_CLASSES = {
    "boolean": "prediction > 3000",
    "text": "CASE WHEN prediction > 3000 THEN 'approve' ELSE 'review' END",
}


@pytest.mark.parametrize("kind", sorted(AS_CLASSES))
def test_class_predictions_are_monitored_as_classes(conn, db_url, kind):
    seed_source(conn)
    conn.execute(f"ALTER TABLE inference ALTER COLUMN prediction TYPE {kind} USING {AS_CLASSES[kind]}")
    conn.commit()
    cfg = make_config(model={"task": "classification"}, quality={"enabled": True})
    profile = fit_and_store(db_url, cfg, frame=read_window(db_url, cfg, WINDOW_START, WINDOW_END))
    classes = {"boolean": {"True", "False"}, "text": {"approve", "review"}}[kind]
    assert set(profile.prediction.categories) == classes

    report = run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    assert report.bad_rows == 0 and report.dq_state == "passed"
    drift = dict(conn.execute("SELECT metric, value FROM monitoring.drift_summary").fetchall())
    assert drift["prediction_tvd"] == 0 and drift["prediction_hellinger"] == 0
    checks = dict(conn.execute(
        "SELECT expectation_id, success FROM monitoring.data_quality_results"
        " WHERE expectation_id LIKE '%%:prediction'").fetchall())
    assert checks["in_set:prediction"] and checks["not_null:prediction"] and "type:prediction" not in checks

    # a class the model never predicted before, and a missing prediction on a request that did not fail
    conn.execute("UPDATE inference SET prediction = NULL WHERE request_id = 'r1'")
    if kind == "text":
        conn.execute("UPDATE inference SET prediction = 'escalate' WHERE request_id IN ('r2', 'r3')")
    conn.commit()
    report = run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    assert report.bad_rows == 1
    unexpected = conn.execute(
        "SELECT unexpected_count FROM monitoring.data_quality_results WHERE expectation_id = 'in_set:prediction'"
    ).fetchone()[0]
    assert unexpected == (2 if kind == "text" else 0)
