"""`compute: database` against `compute: memory` through `run_interval`: the same stored results, row for row.

The demo scenario's windows cover the cases that matter: a drifted window, the data-quality incident
(nulls, NaN, duplicated ids, a failed critical check, drift skipped) and an empty window. Each window is run
in memory, its stored rows kept, then re-run in the database mode, which replaces them; the two sets of rows
must agree: counts exactly, floating-point values to 1e-9 relative (sums are added in another order).
"""

from __future__ import annotations

import math
import sys
from datetime import timedelta

import pytest
from psycopg import sql

from monitoring_lib.config import EndpointConfig, ScaleOutConfig
from monitoring_lib.config_check import check_columns
from monitoring_lib.errors import SourceError
from monitoring_lib.runner import run_interval
from tests.database.test_pipeline import END, INCIDENT, START, demo_config, seed_and_fit

REL = 1e-9
QUERIES = {
    "interval_runs": "SELECT status, rows_seen, bad_rows, bad_row_details, dq_state, drift_status, model_version,"
                     " reference_version FROM monitoring.interval_runs ORDER BY window_start",
    "operational_metrics": "SELECT bucket_start, metric, value FROM monitoring.operational_metrics ORDER BY 1, 2",
    "data_quality_results": "SELECT expectation_id, expectation_type, column_name, success, unexpected_count,"
                            " unexpected_percent, severity FROM monitoring.data_quality_results ORDER BY 1",
    "feature_drift": "SELECT segment, feature, metric, value, p_value, threshold_possible, threshold_detected,"
                     " status FROM monitoring.feature_drift ORDER BY 1, 2, 3",
    "drift_summary": "SELECT metric, value, drift_status, dq_state, details FROM monitoring.drift_summary ORDER BY 1",
    "feature_stats": "SELECT feature, metric, value FROM monitoring.feature_stats ORDER BY 1, 2",
    "app_results": "SELECT application, metric, kind, status, value FROM monitoring.app_results ORDER BY 1, 2",
    "model_endpoints": "SELECT first_request, last_request, prediction_count, error_count, drift_status"
                       " FROM monitoring.model_endpoints",
    "outbox": "SELECT count(*) FROM monitoring.dynatrace_outbox",
}


@pytest.fixture()
def demo_db(conn, db_url):
    return seed_and_fit(conn, db_url)


def database_config(**changes: dict) -> EndpointConfig:
    data = demo_config(**changes).model_dump(by_alias=True)
    return EndpointConfig.model_validate({**data, "compute": "database"})


def stored(conn) -> dict[str, list[tuple]]:
    return {name: conn.execute(query).fetchall() for name, query in QUERIES.items()}


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def assert_same_results(memory: dict[str, list[tuple]], database: dict[str, list[tuple]]) -> None:
    for table, rows in memory.items():
        assert len(rows) == len(database[table]), table
        for m, d in zip(rows, database[table], strict=True):
            assert same(m, d), (table, [(x, y) for x, y in zip(m, d, strict=True) if not same(x, y)])


@pytest.mark.parametrize("hour", [8, 9], ids=["drifted", "quality-incident"])
def test_database_mode_stores_the_same_results_as_memory(demo_db, conn, hour):
    window = (START + timedelta(hours=hour), START + timedelta(hours=hour + 1))
    in_memory = run_interval(demo_db, demo_config(), *window)
    memory = stored(conn)
    in_database = run_interval(demo_db, database_config(), *window)
    database = stored(conn)

    assert_same_results(memory, database)
    assert (in_database.rows, in_database.bad_rows, in_database.dq_state, in_database.drift_status) == (
        in_memory.rows, in_memory.bad_rows, in_memory.dq_state, in_memory.drift_status)
    assert in_database.drifted_features == in_memory.drifted_features
    assert conn.execute("SELECT compute_mode FROM monitoring.interval_runs").fetchone()[0] == "database"
    if window[0] == INCIDENT:
        assert in_database.dq_state == "failed" and in_database.drift_status == "skipped"
        assert in_database.bad_rows > 0 and database["interval_runs"][0][3]["duplicate_request_id"] > 0
    else:
        assert in_database.drift_status == "drift_detected" and database["feature_drift"]


def test_database_mode_computes_drift_when_quality_policy_allows(demo_db, conn):
    window = (INCIDENT, INCIDENT + timedelta(hours=1))
    run_interval(demo_db, demo_config(quality={"on_failure": "compute_drift"}), *window)
    memory = stored(conn)
    report = run_interval(demo_db, database_config(quality={"on_failure": "compute_drift"}), *window)
    assert report.dq_state == "failed" and report.drift_status != "skipped"
    assert_same_results(memory, stored(conn))


def test_database_mode_empty_window_and_rerun(demo_db, conn):
    window = (END + timedelta(days=3), END + timedelta(days=3, hours=1))
    report = run_interval(demo_db, database_config(), *window)
    assert report.status == "no_data" and report.rows == 0
    first = stored(conn)
    run_interval(demo_db, database_config(), *window)
    assert stored(conn) == first


def test_database_mode_rejects_user_applications_and_text_numbers(demo_db, conn):
    data = demo_config().model_dump(by_alias=True)
    with pytest.raises(ValueError, match="compute: database never reads"):
        EndpointConfig.model_validate({**data, "compute": "database",
                                       "applications": [{"name": "x", "callable": "json:dumps"}]})
    feature = demo_config().source.numeric_features[0]
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE text").format(
        sql.Identifier(*demo_config().source.table.split(".")), sql.Identifier(feature)))
    conn.commit()
    with pytest.raises(SourceError, match=f"'{feature}' is text"):
        run_interval(demo_db, database_config(), START, START + timedelta(hours=1))


def test_numeric_sql_columns_give_both_modes_the_same_results(demo_db, conn):
    """PostgreSQL `numeric` (amounts are often stored so) reaches Arrow as an extension type holding text."""
    src = demo_config().source
    table = sql.Identifier(*src.table.split("."))
    for column in [*src.numeric_features, src.prediction_column, src.latency_column]:
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE numeric").format(table, sql.Identifier(column)))
    conn.commit()
    window = (INCIDENT, INCIDENT + timedelta(hours=1))
    non_finite = sql.SQL(" OR ").join(sql.SQL("{} IN ('NaN', 'Infinity', '-Infinity')").format(sql.Identifier(c))
                                      for c in src.numeric_features)
    ts = sql.Identifier(src.timestamp_column)
    assert conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE ({}) AND {} >= %s AND {} < %s").format(
        table, non_finite, ts, ts), window).fetchone()[0] > 0  # numeric's own NaN and Infinity are read too
    # and numbers beyond float8's range, which the memory mode reads as ±Infinity: no out-of-range error
    for i, column in enumerate([src.numeric_features[0], src.prediction_column, src.latency_column]):
        conn.execute(sql.SQL("UPDATE {t} SET {c} = %s WHERE ctid IN (SELECT ctid FROM {t}"
                             " WHERE {ts} >= %s AND {ts} < %s ORDER BY {ts} OFFSET %s LIMIT 2)").format(
                                 t=table, c=sql.Identifier(column), ts=ts),
                     ("-1e400" if i % 2 else "1e400", *window, 10 * i))
    conn.commit()
    policy = {"on_failure": "compute_drift"}  # drift too, despite the window's failed checks
    in_memory = run_interval(demo_db, demo_config(quality=policy), *window)
    memory = stored(conn)
    run_interval(demo_db, database_config(quality=policy), *window)
    assert_same_results(memory, stored(conn))
    assert in_memory.rows > 0 and memory["feature_drift"] and memory["interval_runs"][0][2] == in_memory.bad_rows
    assert memory["interval_runs"][0][3][f"non_finite:{src.numeric_features[0]}"] >= 2


def test_validate_config_checks_the_prediction_type_for_database_mode(demo_db, conn):
    cfg = database_config()
    assert check_columns(conn, cfg) == []
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE text").format(
        sql.Identifier(*cfg.source.table.split(".")), sql.Identifier(cfg.source.prediction_column)))
    conn.commit()
    assert check_columns(conn, cfg) == [f"{cfg.source_file}: source.prediction_column: column "
                                        f"'{cfg.source.prediction_column}' is text, expected a numeric type with "
                                        "compute: database or feature groups"]
    # the memory mode reads a text prediction, but performance metrics compare it with the labels as numbers
    assert check_columns(conn, demo_config()) == [f"{cfg.source_file}: source.prediction_column: column "
                                                  f"'{cfg.source.prediction_column}' is text, expected a numeric or"
                                                  " boolean type with labels"]
    assert check_columns(conn, demo_config().model_copy(update={"labels": None})) == []
    split = demo_config().model_copy(update={"scale_out": ScaleOutConfig(feature_group_size=4)})
    assert check_columns(conn, split) == check_columns(conn, cfg)
    # a classifier's boolean output: the memory mode reads it, the summary queries cannot cast it to float8
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE boolean USING {} = '1'").format(
        sql.Identifier(*cfg.source.table.split(".")), *[sql.Identifier(cfg.source.prediction_column)] * 2))
    conn.commit()
    assert check_columns(conn, cfg) == [f"{cfg.source_file}: source.prediction_column: column "
                                        f"'{cfg.source.prediction_column}' is bool, expected a numeric type with "
                                        "compute: database or feature groups"]
    assert check_columns(conn, demo_config()) == []
    with pytest.raises(SourceError, match=fr"\('{cfg.source.prediction_column}' is bool\); cast them"):
        run_interval(demo_db, cfg, START, START + timedelta(hours=1))


def test_database_mode_with_other_uniqueness_checks_beside_the_shared_request_id_grouping(demo_db, conn):
    """Only the request-id check over all rows reuses the bad-row grouping; checks on another column or with a
    row condition group the window themselves, and every stored result still equals the memory mode's."""
    extras = [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "region", "mostly": 0.5}},
        {"type": "expect_column_values_to_be_unique",
         "kwargs": {"column": "request_id", "row_condition": "`error` != True", "condition_parser": "pandas"}},
    ]
    window = (INCIDENT, INCIDENT + timedelta(hours=1))
    run_interval(demo_db, demo_config(quality={"extra_expectations": extras}), *window)
    memory = stored(conn)
    run_interval(demo_db, database_config(quality={"extra_expectations": extras}), *window)
    database = stored(conn)
    assert_same_results(memory, database)
    unexpected = {row[0]: row[4] for row in database["data_quality_results"]}
    assert unexpected["unique:request_id"] > 0
    assert unexpected["extra[0]:expect_column_values_to_be_unique:region"] > 0
    assert {row[1] for row in database["app_results"] if row[0] == "kpi"}  # KPIs came from the shared scan too


def test_database_mode_with_values_whose_squares_overflow_float8_stores_what_memory_mode_stores(demo_db, conn):
    """A sentinel such as 1e300 or float max is a finite value, so no bad row: NumPy's sums of squares become
    Infinity, where PostgreSQL's float8 aggregates raise. The numeric retry of `overflow_safe` gives the same
    stored moments, KPIs (a sum and a mean over the column) and latency averages instead of a failed run."""
    cfg = demo_config()
    window = (START + timedelta(hours=8), START + timedelta(hours=9))
    table, ts = sql.Identifier(*cfg.source.table.split(".")), sql.Identifier(cfg.source.timestamp_column)
    for column, value in (("claimed_amount", 1e300), ("market_value", sys.float_info.max), ("latency_ms", 1e300)):
        conn.execute(sql.SQL("UPDATE {t} SET {c} = %s WHERE ctid = (SELECT ctid FROM {t} WHERE {ts} >= %s AND {ts} < %s"
                             " AND {c} IS NOT NULL ORDER BY {ts} LIMIT 1)").format(
            t=table, c=sql.Identifier(column), ts=ts), (value, *window))
    conn.commit()
    run_interval(demo_db, cfg, *window)
    memory = stored(conn)
    report = run_interval(demo_db, database_config(), *window)
    database = stored(conn)
    assert report.status == "ok"
    assert_same_results(memory, database)
    stats = {(f, m): v for f, m, v in database["feature_stats"]}
    assert stats[("claimed_amount", "max")] == 1e300 and math.isclose(stats[("claimed_amount", "mean")], 1e300 / 410)
    assert stats[("market_value", "max")] == sys.float_info.max and math.isfinite(stats[("market_value", "mean")])
    kpis = {name: value for app, name, _, _, value in database["app_results"] if app == "kpi"}
    assert math.isclose(kpis["total_claimed_amount"], 1e300) and math.isclose(kpis["average_amount"], 1e300 / 410)
    latency = [value for _, metric, value in database["operational_metrics"] if metric == "latency_avg"]
    assert max(latency) > 1e297 and all(map(math.isfinite, latency))


KPI_ROWS = [  # x, code (categorical), flag (categorical), error, savings (read for KPIs only), note
    (1.0, 1.0, True, 0, "10.5", "a"),
    (2.0, 2.0, False, 1, "1e400", "b"),
    (3.0, "Infinity", True, None, "NaN", "c"),
    (4.0, 2.0, None, 2, None, "d"),
    (5.0, None, True, 0, "-4", "e"),
]
KPIS = [("error", "mean"), ("error", "count"), ("error", "sum"), ("code", "sum"), ("code", "mean"), ("flag", "sum"),
        ("savings", "sum"), ("savings", "count"), ("savings", "max"), ("note", "sum"), ("absent", "sum")]


def kpi_config(compute: str) -> EndpointConfig:
    return EndpointConfig.model_validate({
        "endpoint_id": "kpis", "project": "p", "model": {"name": "m", "version": "1"}, "compute": compute,
        "source": {"table": "public.kpi_log", "timestamp_column": "ts", "numeric_features": ["x"],
                   "categorical_features": ["code", "flag"], "latency_column": None, "error_column": "error"},
        "kpis": [{"name": f"{column}_{agg}", "column": column, "agg": agg} for column, agg in KPIS],
        "dynatrace": {"enabled": False}, "quality": {"enabled": True, "native_checks": False}})


def test_kpis_aggregate_finite_values_and_the_error_flag_alike_in_both_modes(conn, db_url):
    """KPIs over the error flag (as the error rate reads it: NULL is no error), over categorical codes, over a
    column read for KPIs alone (a `numeric` beyond float8's range included), and over columns that cannot be
    aggregated: the same values in both modes, the checks blind to the KPI-only column, and a code column
    without a value in the window is a KPI without a value, not a failed run."""
    conn.execute("CREATE TABLE kpi_log (request_id text, ts timestamptz, x float8, code float8, flag bool,"
                 " prediction float8, error int4, savings numeric, note text)")
    with conn.cursor().copy("COPY kpi_log FROM STDIN") as copy:
        for i, (x, code, flag, error, savings, note) in enumerate(KPI_ROWS):
            copy.write_row((f"r{i}", START + timedelta(minutes=i), x, code, flag, 0.5, error, savings, note))
            copy.write_row((f"s{i}", START + timedelta(hours=1, minutes=i), x, None, flag, 0.5, error, savings, note))
    conn.commit()
    assert check_columns(conn, kpi_config("memory")) == [  # validate-config says the same before any run
        ": kpis.note_sum.column: column 'note' is text, expected a numeric or boolean type",
        ": kpis.absent_sum.column: column 'absent' not found in public.kpi_log"]
    expected = {"error_mean": 0.4, "error_count": 5.0, "error_sum": 2.0, "code_sum": 5.0, "code_mean": 5 / 3,
                "flag_sum": 3.0, "savings_sum": 6.5, "savings_count": 2.0, "savings_max": 10.5}
    errors = {"note_sum": "column 'note' is text, not numeric", "absent_sum": "column 'absent' is not in the source"}
    query = ("SELECT metric, status, value, extra FROM monitoring.app_results WHERE application = 'kpi'"
             " AND window_start = %s ORDER BY 1")
    results = {}
    for compute in ("memory", "database"):
        run_interval(db_url, kpi_config(compute), START, START + timedelta(hours=1))
        results[compute] = conn.execute(query, (START,)).fetchall()
        got = {m: v for m, status, v, _ in results[compute] if status == "ok"}
        assert got.keys() == expected.keys() and same(got, expected), (compute, got)
        assert {m: extra["error"] for m, status, _, extra in results[compute] if status == "error"} == errors
        columns_check = conn.execute("SELECT observed_value FROM monitoring.data_quality_results"
                                     " WHERE expectation_type = 'ExpectTableColumnsToMatchSet'").fetchone()[0]
        assert "savings" not in columns_check, compute
    assert results["memory"] == results["database"]

    for compute in ("memory", "database"):  # the next hour: the code column holds no value
        run_interval(db_url, kpi_config(compute), START + timedelta(hours=1), START + timedelta(hours=2))
        got = {m: v for m, status, v, _ in conn.execute(query, (START + timedelta(hours=1),)).fetchall()
               if status == "ok"}
        assert got["code_sum"] == 0.0 and got["code_mean"] is None and got["savings_sum"] == 6.5, (compute, got)
