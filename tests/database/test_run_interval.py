from datetime import timedelta

import psycopg

from monitoring_lib.runner import run_interval
from tests.sources import WINDOW_END, WINDOW_START, insert_rows, make_config, seed_source

RESULT_TABLES = {
    "operational_metrics": "bucket_start, metric",
    "feature_drift": "feature, metric",
    "drift_summary": "metric",
    "feature_stats": "feature, metric",
    "data_quality_results": "expectation_id",
    "app_results": "application, metric",
}


def snapshot(conn: psycopg.Connection) -> dict:
    snap = {}
    for table, order in RESULT_TABLES.items():
        snap[table] = conn.execute(f"SELECT * FROM monitoring.{table} ORDER BY window_start, {order}").fetchall()
    snap["interval_runs"] = conn.execute(
        "SELECT endpoint_id, window_start, window_end, status, rows_seen, bad_rows, bad_row_details, dq_state,"
        " drift_status FROM monitoring.interval_runs ORDER BY window_start"
    ).fetchall()
    snap["model_endpoints"] = conn.execute(
        "SELECT endpoint_id, first_request, last_request, prediction_count, error_count, drift_status"
        " FROM monitoring.model_endpoints"
    ).fetchall()
    return snap


def test_one_interval_records_run_operational_metrics_and_endpoint(conn, db_url):
    rows = seed_source(conn)
    cfg = make_config()
    report = run_interval(db_url, cfg, WINDOW_START, WINDOW_END)

    in_window = [r for r in rows if WINDOW_START <= r[1] < WINDOW_END]
    assert report.status == "ok"
    assert report.rows == len(in_window) == 600
    assert report.drift_status == "no_reference"
    run = conn.execute(
        "SELECT status, rows_seen, library_version, stage_timings FROM monitoring.interval_runs").fetchone()
    assert run[0] == "ok" and run[1] == 600 and run[2]
    assert {"extract", "normalise", "operational", "applications"} <= set(run[3])
    assert "write" in report.timings

    ops = dict(conn.execute(
        "SELECT metric, sum(value) FROM monitoring.operational_metrics WHERE metric IN ('predictions', 'errors')"
        " GROUP BY metric").fetchall())
    assert ops["predictions"] == 600
    assert ops["errors"] == sum(1 for r in in_window if r[7])
    buckets = conn.execute("SELECT count(DISTINCT bucket_start) FROM monitoring.operational_metrics").fetchone()[0]
    assert buckets == 12
    p95 = conn.execute("SELECT count(*) FROM monitoring.operational_metrics WHERE metric = 'latency_p95'").fetchone()
    assert p95[0] == 12

    endpoint = conn.execute(
        "SELECT first_request, last_request, prediction_count, error_count, model_version"
        " FROM monitoring.model_endpoints WHERE endpoint_id = 'claims-test'").fetchone()
    assert endpoint[0] == min(r[1] for r in in_window)
    assert endpoint[1] == max(r[1] for r in in_window)
    assert endpoint[2] == 600
    assert endpoint[3] == ops["errors"]
    assert endpoint[4] == "1"
    kpi = conn.execute("SELECT value FROM monitoring.app_results WHERE application = 'kpi'").fetchone()[0]
    assert abs(kpi - sum(r[2] for r in in_window)) < 1e-6


def test_running_the_same_interval_twice_leaves_identical_rows(conn, db_url):
    seed_source(conn)
    cfg = make_config()
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    first = snapshot(conn)
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    second = snapshot(conn)
    assert first == second
    assert len(first["operational_metrics"]) > 0


def test_empty_window_records_no_data(conn, db_url):
    seed_source(conn)
    cfg = make_config()
    later = WINDOW_START + timedelta(days=3)
    report = run_interval(db_url, cfg, later, later + timedelta(hours=1))
    assert report.status == "no_data" and report.rows == 0
    status = conn.execute("SELECT status, rows_seen FROM monitoring.interval_runs").fetchone()
    assert status == ("no_data", 0)
    assert conn.execute("SELECT count(*) FROM monitoring.operational_metrics").fetchone()[0] == 0


def test_bad_rows_are_counted_not_fatal(conn, db_url):
    seed_source(conn, n=100)
    t = WINDOW_START + timedelta(minutes=30)
    insert_rows(conn, [
        ("r1", t, float("nan"), 3.0, "north", 1.0, 5.0, False),          # duplicate id, NaN feature
        ("inf", t, float("inf"), 3.0, "north", float("-inf"), 5.0, False),  # infinities
        ("nul", t, None, None, None, 2.0, None, None),                  # nulls everywhere
    ])
    conn.commit()
    report = run_interval(db_url, make_config(quality={"enabled": True}), WINDOW_START, WINDOW_END)
    assert report.rows == 103
    assert report.bad_rows == 3
    details = conn.execute("SELECT bad_row_details FROM monitoring.interval_runs").fetchone()[0]
    assert details["duplicate_request_id"] == 1
    assert details["non_finite:claimed_amount"] == 1
    assert details["non_finite:prediction"] == 1
    assert details["null:claimed_amount"] == 2  # the NaN row and the null row
    assert details["null:region"] == 1
    # the -Infinity prediction is a missing prediction to the critical check, as NaN and NULL are
    failed = conn.execute("SELECT unexpected_count FROM monitoring.data_quality_results"
                          " WHERE expectation_id = 'not_null:prediction' AND NOT success").fetchone()
    assert failed == (1,)


def test_wrong_types_in_a_text_column_are_counted(conn, db_url):
    from tests.sources import clean_rows, create_inference_table

    create_inference_table(conn, vehicle_age_type="text")
    rows = clean_rows(50)
    rows[0] = (*rows[0][:3], "old", *rows[0][4:])
    rows[1] = (*rows[1][:3], "12", *rows[1][4:])
    insert_rows(conn, rows)
    conn.commit()
    report = run_interval(db_url, make_config(), WINDOW_START, WINDOW_END)
    details = conn.execute("SELECT bad_row_details FROM monitoring.interval_runs").fetchone()[0]
    assert report.rows == 50
    assert details == {"wrong_type:vehicle_age": 1} or details.get("wrong_type:vehicle_age") == 1


def test_integer_codes_with_nulls_keep_their_category_text():
    import numpy as np
    import pandas as pd

    from monitoring_lib.compute.memory.bad_rows import category_text

    codes = pd.Series([3.0, np.nan, 1.0, 2.5])
    assert category_text(codes).tolist() == ["3", pd.NA, "1", "2.5"]
    assert category_text(pd.Series(["north", None])).tolist() == ["north", pd.NA]


def test_a_numeric_column_is_read_as_the_floats_its_text_parses_to(conn, db_url):
    """PostgreSQL `numeric` is converted by the server; beyond float max it is ±Infinity, not an overflow error."""
    import math
    import sys
    from decimal import Decimal

    from monitoring_lib.source import read_window
    from tests.sources import clean_rows, create_inference_table

    create_inference_table(conn, vehicle_age_type="numeric")
    half_ulp_above = int(sys.float_info.max) + 2 ** 970  # the first number that rounds to Infinity
    ages = [Decimal("12.25"), Decimal("NaN"), Decimal("Infinity"), Decimal("-1e400"), Decimal(half_ulp_above - 1),
            Decimal(-half_ulp_above), None, Decimal("0.1")]
    rows = clean_rows(len(ages))
    insert_rows(conn, [(*row[:3], age, *row[4:]) for row, age in zip(rows, ages, strict=True)])
    conn.commit()
    cfg = make_config()
    column = read_window(db_url, cfg, WINDOW_START, WINDOW_END)["vehicle_age"]
    assert column.dtype == "float64"  # converted by the server, not text for pandas to parse
    read = column.tolist()
    expected = [float(a) if a is not None else math.nan for a in ages]
    assert [repr(x) for x in read] == [repr(x) for x in expected]
    assert expected[4] == sys.float_info.max and expected[5] == -math.inf

    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    details = conn.execute("SELECT bad_row_details FROM monitoring.interval_runs").fetchone()[0]
    assert details["non_finite:vehicle_age"] == 3 and details["null:vehicle_age"] == 2  # NaN counts as null
    assert "wrong_type:vehicle_age" not in details


def test_a_feature_without_any_value_in_the_window_is_stored_as_unknown_in_both_modes(conn, db_url):
    """An outage of one upstream column (all NULL or NaN) must not cost the window its results."""
    import pandas as pd

    from monitoring_lib.config import EndpointConfig
    from monitoring_lib.reference import fit_and_store
    from tests.sources import clean_rows, create_inference_table

    create_inference_table(conn)
    rows = clean_rows(200)
    insert_rows(conn, [(*r[:2], None if i % 2 else float("nan"), *r[3:]) for i, r in enumerate(rows)])
    conn.commit()
    cfg = make_config()
    reference = pd.DataFrame(clean_rows(500, seed=1), columns=["request_id", "ts", *cfg.source.features,
                                                               "prediction", "latency_ms", "error"])
    fit_and_store(db_url, cfg, frame=reference)
    for compute in ("memory", "database"):
        report = run_interval(db_url, EndpointConfig.model_validate({**cfg.model_dump(by_alias=True),
                                                                     "compute": compute}),
                              WINDOW_START, WINDOW_END)
        assert report.rows == 200 and report.drift_status in ("no_drift", "possible_drift", "drift_detected")
        apps = dict(conn.execute("SELECT metric, status FROM monitoring.app_results"
                                 " WHERE application = 'drift'").fetchall())
        assert apps["feature:claimed_amount"] == "unknown", compute
        assert apps["feature:vehicle_age"] in ("no_drift", "possible_drift", "drift_detected"), compute
        stored = conn.execute("SELECT value, status FROM monitoring.feature_drift WHERE feature = 'claimed_amount'"
                              " AND metric = %s", (cfg.drift.feature.metric,)).fetchone()
        assert stored[1] is None and (stored[0] is None or stored[0] != stored[0]), compute
