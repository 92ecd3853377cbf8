"""Quality checks evaluated inside PostgreSQL against the Great Expectations path, on the same rows.

Each test writes a source table to a real PostgreSQL, then runs `run_quality` on the window as the pipeline
reads it (`read_window` + `normalise_frame`) and `run_quality_in_database` on the table itself, and
compares every result field by field: the rows `write_quality_results` stores must not depend on the mode.
"""

from __future__ import annotations

import math
import sys
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from monitoring_lib.compute.database.aggregates import AggregatePlan, DuplicateIds
from monitoring_lib.compute.database.bad_rows import BadRowsPlan, bad_rows_in_database
from monitoring_lib.compute.database.quality import QualityPlan, run_quality_in_database
from monitoring_lib.compute.database.scan import summaries_in_database
from monitoring_lib.compute.memory.bad_rows import normalise_frame
from monitoring_lib.compute.memory.quality import QualityOutcome, run_quality
from monitoring_lib.config import EndpointConfig
from monitoring_lib.results.quality import write_quality_results
from monitoring_lib.source import describe_source, read_window
from tests.database.test_quality import END, NOW, PROFILE, START, clean_frame, make_cfg

TYPED = {"timestamp": "timestamptz", "request_id": "text", "claimed_amount": "float8", "age": "int4",
         "region": "text", "prediction": "float8", "latency_ms": "float8", "error": "boolean"}
# The pipeline tolerates loosely typed logs: numbers and flags as text, timestamps without a zone.
LOOSE = TYPED | {"timestamp": "timestamp", "age": "text", "error": "text"}
SUPPORTED_EXTRAS = [
    {"type": "expect_column_values_to_be_between",
     "kwargs": {"column": "claimed_amount", "min_value": 0, "max_value": 3000, "strict_min": True, "mostly": 0.9}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "max_value": 80, "strict_max": True}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "region", "value_set": ["north", "south"]}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "error"}, "severity": "critical"},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "region", "mostly": 0.5}},
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": 150}},
    {"type": "expect_table_columns_to_match_set",
     "kwargs": {"column_set": ["timestamp", "request_id", "not_logged"], "exact_match": False}},
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _great_expectations() -> None:
    """Import Great Expectations (about 3 s) once for the module."""
    import great_expectations  # noqa: F401


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if isinstance(value, np.generic) else value


def clean_rows(n: int = 200) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in clean_frame(n).to_dict("records")]


def seeded_rows() -> list[dict[str, Any]]:
    """Clean rows with every defect the checks look for, plus rows just outside the window."""
    rows = clean_rows()

    def put(column: str, indices: range | list[int], value: Any) -> None:
        for i in indices:
            rows[i][column] = value

    put("request_id", [0], None)
    put("request_id", [1, 2], rows[3]["request_id"])  # three rows share an id
    put("request_id", [10], rows[11]["request_id"])
    put("claimed_amount", [4], float("nan"))
    put("claimed_amount", [5], float("inf"))
    put("claimed_amount", [6], float("-inf"))
    put("claimed_amount", range(7, 27), 10_000.0)  # 10 % out of range
    put("age", [30, 31], None)
    put("age", [32], 95)
    put("region", range(40, 50), "atlantis")
    put("region", [50], None)
    put("region", [51], "")
    for i, (pred, error) in enumerate([(float("nan"), True), (float("nan"), False), (float("inf"), False),
                                       (float("-inf"), True), (None, None), (9_999.0, False)]):
        rows[60 + i]["prediction"], rows[60 + i]["error"] = pred, error
    put("latency_ms", [70], -3.0)
    put("latency_ms", [71], float("nan"))
    put("latency_ms", [72], None)
    put("error", [80], None)
    put("error", [81], True)
    outside = dict(rows[100])
    rows.append(outside | {"request_id": "before", "timestamp": START - timedelta(microseconds=1),
                           "claimed_amount": 1e9})
    rows.append(outside | {"request_id": "at-end", "timestamp": END, "prediction": float("nan")})
    return rows


def _loosen(row: dict[str, Any], i: int) -> dict[str, Any]:
    """The same row as a loosely typed log holds it: age and error as text, the timestamp without zone."""
    out = dict(row)
    out["timestamp"] = row["timestamp"].replace(tzinfo=None)
    if row["age"] is not None:
        out["age"] = {32: "abc", 33: f" {row['age']} ", 34: "4.2e1", 35: "1e999"}.get(i, str(row["age"]))
    if row["error"] is not None:
        out["error"] = ("yes", " 1", "true")[i % 3] if row["error"] else ("no", "0", "")[i % 3]
    return out


def create_source(conn: psycopg.Connection, rows: list[dict[str, Any]], types: dict[str, str] = TYPED) -> None:
    columns = list(types)
    conn.execute(sql.SQL("CREATE TABLE public.inference_log ({})").format(
        sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(types[c])) for c in columns)))
    if types is not TYPED:
        rows = [_loosen(r, i) for i, r in enumerate(rows)]
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO public.inference_log ({}) VALUES ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(sql.Placeholder() * len(columns))),
            [tuple(r[c] for c in columns) for r in rows],
        )
    conn.commit()


def both(conn: psycopg.Connection, db_url: str, cfg: EndpointConfig, now: datetime = NOW,
         start: datetime = START, end: datetime = END) -> tuple[QualityOutcome, QualityOutcome]:
    df, _ = normalise_frame(read_window(db_url, cfg, start, end), cfg)
    memory = run_quality(df, cfg, PROFILE, start, end, now=now)
    database = run_quality_in_database(conn, cfg, PROFILE, start, end, now=now)
    return memory, database


def assert_same(memory: QualityOutcome, database: QualityOutcome) -> None:
    assert (database.state, database.failed_rows, database.row_count) == \
        (memory.state, memory.failed_rows, memory.row_count)
    assert [r.expectation_id for r in database.results] == [r.expectation_id for r in memory.results]
    for db, mem in zip(database.results, memory.results, strict=True):
        fields = ("expectation_type", "column", "severity", "success", "unexpected_count", "observed_value")
        assert {f: getattr(db, f) for f in fields} == {f: getattr(mem, f) for f in fields}, db.expectation_id
        if mem.unexpected_percent is None:
            assert db.unexpected_percent is None, db.expectation_id
        else:
            assert math.isclose(db.unexpected_percent, mem.unexpected_percent, rel_tol=0, abs_tol=1e-9), (
                db.expectation_id, db.unexpected_percent, mem.unexpected_percent)
        # every detail is the one GX gives; the sample of unexpected values is the same values in any order
        sample, listed = db.details.get("partial_unexpected_list"), mem.details.get("partial_unexpected_list")
        assert {k: v for k, v in db.details.items() if k != "partial_unexpected_list"} == {
            k: v for k, v in mem.details.items() if k != "partial_unexpected_list"}, db.expectation_id
        assert sample is None or listed is not None, db.expectation_id
        if sample is None:  # the database samples the failed checks only
            assert db.success or mem.unexpected_count is None or "error" in db.details, db.expectation_id
        elif mem.unexpected_count <= len(listed):  # all of them: the same multiset
            assert sorted(map(repr, sample)) == sorted(map(repr, listed)), db.expectation_id
        else:  # more than a sample holds: as many
            assert len(sample) == len(listed), db.expectation_id


@pytest.mark.parametrize("types", [TYPED, LOOSE], ids=["typed", "loose"])
def test_seeded_defects_give_the_same_results_in_both_modes(conn, db_url, types) -> None:
    cfg = make_cfg(extra_expectations=SUPPORTED_EXTRAS)
    rows = seeded_rows()
    create_source(conn, rows, types)
    now = START + timedelta(minutes=45)  # an unfinished window: rows after now + 10 min are in the future
    memory, database = both(conn, db_url, cfg, now=now)
    assert_same(memory, database)

    failed = {r.expectation_id for r in database.failed_results}
    assert {"not_null:request_id", "unique:request_id", "not_future:timestamp", "range:claimed_amount",
            "in_set:region", "not_null:prediction", "non_negative:latency_ms",
            "extra[2]:expect_column_values_to_be_in_set:region", "extra[5]:expect_table_row_count_to_be_between",
            "extra[6]:expect_table_columns_to_match_set"} <= failed
    assert {"not_null:age", "in_window:timestamp", "type:error", "type:age"}.isdisjoint(failed)
    assert database.state == "failed" and database.row_count == 200
    assert database.result("unique:request_id").unexpected_count == 5
    assert sorted(database.result("unique:request_id").details["partial_unexpected_list"]) == sorted(
        [rows[3]["request_id"]] * 3 + [rows[11]["request_id"]] * 2)
    assert database.result("range:claimed_amount").details["partial_unexpected_list"] == [10_000.0] * 20
    # missing values as the frame holds them; a passing check has no sample (it would cost a scan)
    assert database.result("not_null:prediction").details["partial_unexpected_list"] == ["nan"] * 3
    assert database.result("not_null:age").unexpected_count and \
        "partial_unexpected_list" not in database.result("not_null:age").details
    # one prediction out of range is within `mostly`: the check passes and flags no row
    assert (database.result("range:prediction").success, database.result("range:prediction").unexpected_count) \
        == (True, 1)
    # NaN and +Infinity on served rows and a null on a row with a null flag; not the two error rows
    assert database.result("not_null:prediction").unexpected_count == 3
    assert database.result("not_null:prediction").details["element_count"] == 200 - 3
    assert database.result("extra[6]:expect_table_columns_to_match_set").details["mismatched"] == {
        "unexpected": sorted(set(cfg.source.columns()) - {"timestamp", "request_id"}), "missing": ["not_logged"]}
    assert database.failed_rows > 0

    # the stored rows are the same whichever mode produced them
    write_quality_results(conn, "memory", START, END, memory)
    write_quality_results(conn, "database", START, END, database)
    stored = {
        endpoint: rows for endpoint, rows in conn.execute(
            "SELECT endpoint_id, array_agg(ARRAY[expectation_id, expectation_type, column_name, success::text,"
            " unexpected_count::text, round(unexpected_percent::numeric, 9)::text, observed_value::text, severity]"
            " ORDER BY expectation_id) FROM monitoring.data_quality_results GROUP BY endpoint_id").fetchall()
    }
    assert stored["database"] == stored["memory"]


def test_clean_window_passes_in_both_modes(conn, db_url) -> None:
    cfg = make_cfg(extra_expectations=[])
    create_source(conn, clean_rows())
    memory, database = both(conn, db_url, cfg)
    assert_same(memory, database)
    assert database.state == "passed" and database.failed_rows == 0
    assert database.result("type:timestamp").observed_value == "datetime64[us, UTC]"
    assert database.result("row_count").observed_value == 200


def test_empty_window_behaves_like_the_in_memory_path(conn, db_url) -> None:
    cfg = make_cfg(extra_expectations=[])
    create_source(conn, clean_rows())
    later = END + timedelta(days=1)
    memory, database = both(conn, db_url, cfg, now=later + timedelta(hours=2), start=later,
                            end=later + timedelta(hours=1))
    assert_same(memory, database)
    assert {r.expectation_id for r in database.failed_results} == {"row_count"}
    assert database.result("not_null:age").unexpected_percent is None
    assert database.row_count == 0 and database.failed_rows == 0


def test_unsupported_expectations_fail_with_a_reason_instead_of_being_dropped(conn) -> None:
    extras = [
        {"type": "expect_column_mean_to_be_between",
         "kwargs": {"column": "claimed_amount", "min_value": 0, "max_value": 5000}},
        {"type": "expect_column_values_to_not_be_null",
         "kwargs": {"column": "age", "row_condition": 'region == "north"', "condition_parser": "pandas"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "region", "min_value": 0}},
    ]  # fmt: skip
    cfg = make_cfg(extra_expectations=extras)
    create_source(conn, clean_rows())
    outcome = run_quality_in_database(conn, cfg, PROFILE, START, END, now=NOW)
    unsupported = [r for r in outcome.results if r.expectation_id.startswith("extra[")]
    assert [r.expectation_id for r in unsupported] == [
        "extra[0]:expect_column_mean_to_be_between:claimed_amount",
        "extra[1]:expect_column_values_to_not_be_null:age",
        "extra[2]:expect_column_values_to_be_between:region",
    ]
    for r in unsupported:
        assert not r.success and r.unexpected_count is None and r.severity == "warning"
        assert "is not available in `compute: database` mode" in r.details["error"]
    assert unsupported[0].details["error"].startswith("ExpectColumnMeanToBeBetween is not available")
    assert "row_condition" in unsupported[1].details["error"]
    # only these fail: the interval is otherwise clean, so the state is a warning, not a failure
    assert {r.expectation_id for r in outcome.failed_results} == {r.expectation_id for r in unsupported}
    assert outcome.state == "warning" and outcome.failed_rows == 0


@pytest.mark.parametrize(("extra_nulls", "extra_unseen", "passes"), [(0, 0, True), (1, 1, False)],
                         ids=["on-the-boundary", "one-beyond"])
def test_mostly_on_the_boundary_is_judged_as_great_expectations_does(
    conn, db_url, extra_nulls: int, extra_unseen: int, passes: bool
) -> None:
    cfg = make_cfg(extra_expectations=[], max_unseen_share=0.1)
    rows = clean_rows()
    for i in range(2 + extra_nulls):  # mostly 0.99 over 200 rows: 2 nulls is exactly the limit
        rows[i]["claimed_amount"] = None
    for i in range(20 + extra_unseen):  # mostly 0.9 over 200 values: 20 unseen is exactly the limit
        rows[100 + i]["region"] = "atlantis"
    create_source(conn, rows)
    memory, database = both(conn, db_url, cfg)
    assert_same(memory, database)
    for check in ("not_null:claimed_amount", "in_set:region"):
        assert database.result(check).success is passes, check
    assert database.result("in_set:region").details["kwargs"]["mostly"] == 0.9
    assert database.failed_rows == (0 if passes else 3 + 21)


def test_failed_rows_follow_the_row_condition_and_count_each_row_once(conn, db_url) -> None:
    cfg = make_cfg(extra_expectations=[])
    rows = clean_rows()
    for i in (10, 11, 12):  # failed requests: no prediction by design, not flagged
        rows[i]["prediction"], rows[i]["error"] = float("nan"), True
    rows[13]["prediction"] = float("inf")  # a served row without a usable prediction
    rows[13]["latency_ms"] = -1.0  # the same row also fails a second check
    rows[14]["latency_ms"] = -2.0
    rows[15]["request_id"] = rows[16]["request_id"]
    create_source(conn, rows)
    memory, database = both(conn, db_url, cfg)
    assert_same(memory, database)
    assert {r.expectation_id for r in database.failed_results} == {
        "not_null:prediction", "non_negative:latency_ms", "unique:request_id"}
    assert database.result("not_null:prediction").unexpected_count == 1
    assert database.failed_rows == 4  # rows 13, 14, 15 and 16


def shared_scan(conn: psycopg.Connection, cfg: EndpointConfig, drop_from_bad_rows: str = ""
                ) -> tuple[BadRowsPlan, QualityPlan]:
    """Bad rows and quality on one `AggregatePlan`, evaluated in a single scan, as `compute: database` runs them."""
    types = describe_source(conn, cfg.source)
    plan = AggregatePlan(cfg, START, END)
    bad_rows = BadRowsPlan(cfg, {c: t for c, t in types.items() if c != drop_from_bad_rows}, plan)
    quality = QualityPlan(cfg, PROFILE, types, plan, now=NOW)
    plan.execute(conn)
    return bad_rows, quality


def test_one_grouping_by_request_id_serves_bad_rows_and_the_uniqueness_check(conn, db_url) -> None:
    extras = [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "region", "mostly": 0.5}},
        {"type": "expect_column_values_to_be_unique",
         "kwargs": {"column": "request_id", "row_condition": "`error` != True", "condition_parser": "pandas"}},
    ]  # fmt: skip
    cfg = make_cfg(extra_expectations=extras)
    rows = seeded_rows()
    rows[90]["request_id"], rows[91]["error"] = rows[91]["request_id"], True  # a duplicate only among all rows
    create_source(conn, rows)
    memory, _ = both(conn, db_url, cfg)
    bad_rows, quality = shared_scan(conn, cfg)
    bad, duplicates = bad_rows.report(conn)
    assert duplicates == DuplicateIds("request_id", 7)
    assert bad == bad_rows_in_database(conn, cfg, describe_source(conn, cfg.source), START, END)
    assert bad.by_reason["duplicate_request_id"] == 4  # every occurrence after the first
    assert_same(memory, quality.outcome(conn, duplicates))

    # the shared count answers exactly the check on the same column over all rows; the others group by themselves
    doctored = quality.outcome(conn, DuplicateIds("request_id", 1))
    assert doctored.result("unique:request_id").unexpected_count == 1
    for expectation_id in ("extra[0]:expect_column_values_to_be_unique:region",
                           "extra[1]:expect_column_values_to_be_unique:request_id"):
        assert doctored.result(expectation_id).unexpected_count == memory.result(expectation_id).unexpected_count
    assert memory.result("extra[1]:expect_column_values_to_be_unique:request_id").unexpected_count == 5
    assert quality.outcome(conn, DuplicateIds("region", 1)).result("unique:request_id").unexpected_count == 7


def test_without_a_request_id_column_nothing_is_shared(conn, db_url) -> None:
    cfg = make_cfg(extra_expectations=[])
    create_source(conn, seeded_rows())
    memory, _ = both(conn, db_url, cfg)
    bad_rows, quality = shared_scan(conn, cfg, drop_from_bad_rows=cfg.source.request_id_column)
    bad, duplicates = bad_rows.report(conn)
    assert duplicates is None and bad.rows == 200 and bad.bad_rows > 0
    assert {"duplicate_request_id", "null_request_id"}.isdisjoint(bad.by_reason)
    # the uniqueness check then groups the window itself
    assert_same(memory, quality.outcome(conn, None))


def test_counts_the_summaries_scan_answers_equal_the_filters_they_replace(conn) -> None:
    """Null, non-finite, range and set counts read from the fine buckets equal the FILTERs, edge values included."""
    amount = "claimed_amount"
    extras = [
        *SUPPORTED_EXTRAS,
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": amount, "min_value": 10_000}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": amount, "min_value": 10_000, "max_value": 10_000, "strict_min": True}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": amount, "max_value": 10_000.0, "strict_max": True}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 95, "max_value": 95}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "max_value": sys.float_info.max}},
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "region", "value_set": ["north", "atlantis"]}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "region", "value_set": []}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "region"}},
    ]  # fmt: skip
    cfg = make_cfg(extra_expectations=extras)
    create_source(conn, seeded_rows())
    types = describe_source(conn, cfg.source)

    def planned() -> AggregatePlan:
        plan = AggregatePlan(cfg, START, END)
        BadRowsPlan(cfg, types, plan)
        QualityPlan(cfg, PROFILE, types, plan, now=NOW)
        return plan

    derived, direct = planned(), planned()
    summaries_in_database(conn, cfg, PROFILE, START, END, cfg.drift.band_k, non_finite_as_null=True, plan=derived)
    direct.execute(conn)
    assert not direct.answered
    assert {name: derived[name] for name in derived.names} == {name: direct[name] for name in direct.names}
    answered = derived.answered
    assert {"bad_rows.null:claimed_amount", "bad_rows.non_finite:claimed_amount", "bad_rows.null:region"} <= answered
    assert "bad_rows.null:prediction" not in answered  # missing on error rows is allowed: a FILTER of its own
    quality = QualityPlan(cfg, PROFILE, types, AggregatePlan(cfg, START, END), now=NOW)
    index = {c.spec.id: i for i, c in enumerate(quality.checks)}

    def unexpected_answered(check_id: str) -> bool:
        return f"quality.{index[check_id]}.unexpected" in answered

    assert unexpected_answered("range:claimed_amount") and unexpected_answered("in_set:region")
    assert unexpected_answered(f"extra[{len(SUPPORTED_EXTRAS) + 1}]:expect_column_values_to_be_between:{amount}")
    # a limit with no finite edge above it and a set with an unseen category stay FILTERs (crossed bounds, which
    # did too, are a config error now)
    for i in (4, 5):
        extra = extras[len(SUPPORTED_EXTRAS) + i]
        check_id = f"extra[{len(SUPPORTED_EXTRAS) + i}]:{extra['type']}:{extra['kwargs']['column']}"
        assert not unexpected_answered(check_id)
    assert derived["bad_rows.non_finite:claimed_amount"] == 2 and derived["bad_rows.null:claimed_amount"] == 1


def test_bad_rows_in_the_database_equal_normalise_frame_on_seeded_defects(conn, db_url) -> None:
    """The one-sum defect test (x * 0 per numeric column) flags exactly the rows `normalise_frame` drops."""
    cfg = make_cfg(extra_expectations=[])
    rows = seeded_rows()
    rows[120]["age"], rows[120]["claimed_amount"] = None, float("nan")  # two defects on one row
    rows[121]["latency_ms"] = float("-inf")
    rows[122]["prediction"], rows[122]["error"] = float("-inf"), True  # non-finite counts on error rows too
    rows[123]["claimed_amount"] = sys.float_info.max  # finite: x * 0 is 0, not an overflow
    create_source(conn, rows)
    _, memory = normalise_frame(read_window(db_url, cfg, START, END), cfg)
    database = bad_rows_in_database(conn, cfg, describe_source(conn, cfg.source), START, END)
    assert database == memory
    assert database.bad_rows == 19 and database.by_reason["null:claimed_amount"] == 2  # 16 defective rows, 3 repeats


def test_checks_with_many_unexpected_rows_sample_them_with_a_limit_query(conn, db_url, monkeypatch) -> None:
    """Every check takes the LIMIT path (`_RARE_UNEXPECTED` = 0): the same samples as the shared scan gives."""
    import monitoring_lib.compute.database.quality as in_database

    cfg = make_cfg(extra_expectations=SUPPORTED_EXTRAS)
    create_source(conn, seeded_rows())
    memory, shared = both(conn, db_url, cfg)
    monkeypatch.setattr(in_database, "_RARE_UNEXPECTED", 0)
    limited = run_quality_in_database(conn, cfg, PROFILE, START, END, now=NOW)
    assert_same(memory, limited)
    for a, b in zip(shared.results, limited.results, strict=True):
        if (a.unexpected_count or 0) > 20:  # a sample of many: either path may pick other ones
            continue
        assert sorted(map(repr, a.details.get("partial_unexpected_list", []))) == sorted(
            map(repr, b.details.get("partial_unexpected_list", []))), a.expectation_id
    assert limited.result("range:claimed_amount").details["partial_unexpected_list"] == [10_000.0] * 20
