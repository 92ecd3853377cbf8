"""The built-in checks answered with pandas give exactly the results Great Expectations gives.

Each test runs the same specs on the same frame twice, once through `native` and once through GX alone
(`native_checks` off), and requires equal results: success, counts, percentages, observed values and
GX's `partial_unexpected_list`. Frames carry the cases where a shortcut would drift from GX: nulls and
NaN, strict and open bounds, `mostly` on the boundary, row conditions, duplicates outside the rows a
condition keeps, more than 20 unexpected values, int, float, text and time-zone-aware columns.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitoring_lib.compute.memory import quality_native as native
from monitoring_lib.compute.memory.bad_rows import normalise_frame
from monitoring_lib.compute.memory.quality import _evaluate, run_quality
from monitoring_lib.quality.suite import ExpectationSpec, build_expectations
from tests.database.test_quality import END, NOW, PROFILE, START, clean_frame, make_cfg

N = 400


@pytest.fixture(scope="module", autouse=True)
def _great_expectations() -> None:
    import great_expectations  # noqa: F401


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    amount = rng.normal(100.0, 50.0, N)
    amount[rng.choice(N, 40, replace=False)] = np.nan
    amount[:3] = [100.0, 40.0, 160.0]  # exactly on the bounds below
    ids = [f"r{i % 370}" for i in range(N)]  # 30 values repeated
    ids[5] = None
    region = pd.array(rng.choice(["north", "south", "east", "west", "mars"], N, p=[.3, .3, .2, .15, .05]),
                      dtype="string")
    region[7:12] = pd.NA
    ts = pd.Timestamp(START) + pd.to_timedelta(rng.integers(-300, 4000, N), unit="s")
    error = np.zeros(N, dtype=bool)
    error[rng.choice(N, 60, replace=False)] = True
    return pd.DataFrame({"ts": ts, "request_id": pd.array(ids, dtype="string"), "amount": amount,
                         "age": rng.integers(0, 120, N), "region": region, "error": error})


def spec(kind: str, column: str | None = None, **kwargs: Any) -> ExpectationSpec:
    if column is not None:
        kwargs["column"] = column
    return ExpectationSpec(f"{kind}:{column}:{sorted(kwargs.items())!r}", kind, kwargs, column, "warning")


ERROR_ROWS_OUT = {"row_condition": "`error` != True", "condition_parser": "pandas"}
MODELLED = [
    spec("ExpectColumnValuesToNotBeNull", "amount"),
    spec("ExpectColumnValuesToNotBeNull", "amount", mostly=0.9),
    spec("ExpectColumnValuesToNotBeNull", "amount", mostly=0.95),
    spec("ExpectColumnValuesToNotBeNull", "region", **ERROR_ROWS_OUT),
    spec("ExpectColumnValuesToNotBeNull", "ts"),
    spec("ExpectColumnValuesToBeBetween", "amount", min_value=40.0, max_value=160.0),
    spec("ExpectColumnValuesToBeBetween", "amount", min_value=40.0, max_value=160.0, strict_min=True,
         strict_max=True),
    spec("ExpectColumnValuesToBeBetween", "amount", min_value=100.0),
    spec("ExpectColumnValuesToBeBetween", "amount", max_value=100.0, strict_max=True, mostly=0.5),
    spec("ExpectColumnValuesToBeBetween", "amount", min_value=80, max_value=120, **ERROR_ROWS_OUT),
    spec("ExpectColumnValuesToBeBetween", "amount", min_value=-1.7976931348623157e308,
         max_value=1.7976931348623157e308),
    spec("ExpectColumnValuesToBeBetween", "age", min_value=18, max_value=99),
    spec("ExpectColumnValuesToBeBetween", "ts", min_value=START, max_value=END, strict_max=True),
    spec("ExpectColumnValuesToBeBetween", "ts", max_value=END + timedelta(minutes=10)),
    spec("ExpectColumnValuesToBeInSet", "region", value_set=["north", "south", "east", "west"]),
    spec("ExpectColumnValuesToBeInSet", "region", value_set=["north", "south", "east", "west"], mostly=0.95),
    spec("ExpectColumnValuesToBeInSet", "region", value_set=[]),
    spec("ExpectColumnValuesToBeInSet", "age", value_set=[1, 2, 3, 50, "50"]),
    spec("ExpectColumnValuesToBeUnique", "request_id"),
    spec("ExpectColumnValuesToBeUnique", "request_id", **ERROR_ROWS_OUT),
    spec("ExpectColumnValuesToBeUnique", "age", mostly=0.01),
    spec("ExpectTableColumnsToMatchSet", column_set=["ts", "request_id", "amount"], exact_match=False),
    spec("ExpectTableColumnsToMatchSet", column_set=["ts", "request_id", "amount", "label"]),
    spec("ExpectTableColumnsToMatchSet", column_set=["ts", "request_id", "amount", "age", "region", "error"]),
    spec("ExpectTableRowCountToBeBetween", min_value=1, max_value=None),
    spec("ExpectTableRowCountToBeBetween", min_value=N, max_value=N, strict_max=True),
]
# Cases GX treats in its own way: left to GX, and the results are still GX's.
FOR_GX = [
    spec("ExpectColumnValuesToBeBetween", "region", min_value="a", max_value="n"),
    spec("ExpectColumnValuesToBeBetween", "amount", min_value=200.0, max_value=100.0),
    spec("ExpectColumnValuesToBeBetween", "amount"),
    spec("ExpectColumnValuesToBeInSet", "ts", value_set=[START.isoformat()]),
    spec("ExpectColumnValuesToNotBeNull", "amount", row_condition="amount > 0"),
    spec("ExpectColumnValuesToNotBeNull", "amount", row_condition="amount > 0", condition_parser="python"),
    spec("ExpectColumnValuesToNotBeNull", "amount", result_format="COMPLETE"),
    spec("ExpectColumnValuesToNotBeNull", "no_such_column"),
    spec("ExpectColumnMeanToBeBetween", "amount", min_value=0, max_value=1000),
]


def both(df: pd.DataFrame, specs: list[ExpectationSpec]) -> tuple[dict, dict]:
    fast, _ = _evaluate(df, specs, native_checks=True)
    gx, _ = _evaluate(df, specs, native_checks=False)
    return fast, gx


def test_every_modelled_case_is_answered_natively_with_the_results_gx_gives() -> None:
    df = frame()
    answered, _ = native.evaluate(df, MODELLED)
    assert set(answered) == {s.id for s in MODELLED}
    fast, gx = both(df, MODELLED)
    for s in MODELLED:
        assert fast[s.id] == gx[s.id], s.id
    # the frame exercises what it is meant to: failures, partial lists cut at 20, successes within mostly
    between = fast[MODELLED[5].id]
    assert not between.success and between.unexpected_count > 20
    assert len(between.details["partial_unexpected_list"]) == 20
    assert fast[MODELLED[1].id].success and not fast[MODELLED[2].id].success  # 10 % nulls: mostly 0.9 is the boundary
    assert fast[MODELLED[18].id].unexpected_count == 58  # 29 repeated ids (r5 lost its twin to a null), both rows


def test_cases_gx_treats_its_own_way_are_left_to_gx() -> None:
    df = frame()
    answered, _ = native.evaluate(df, FOR_GX)
    assert answered == {}
    fast, gx = both(df, FOR_GX)
    assert fast == gx
    assert "error" in fast[FOR_GX[1].id].details  # min above max: GX's own error is kept


def test_flagged_rows_follow_the_domain_first() -> None:
    """Uniqueness under a row condition counts duplicates among the kept rows only, as GX does."""
    df = pd.DataFrame({"request_id": ["a", "a", "b", "b", "c"], "error": [False, True, False, False, False]})
    check = spec("ExpectColumnValuesToBeUnique", "request_id", **ERROR_ROWS_OUT)
    answered, flagged = native.evaluate(df, [check])
    assert answered[check.id].unexpected_count == 2
    assert flagged[check.id].tolist() == [False, False, True, True, False]
    assert answered[check.id] == both(df, [check])[1][check.id]


def test_empty_domain_and_all_null_columns_match_gx() -> None:
    df = frame()
    df["amount"] = np.nan
    df["error"] = True
    specs = [s for s in MODELLED if s.column == "amount"] + [MODELLED[14], MODELLED[19]]
    fast, gx = both(df, specs)
    assert fast == gx
    assert all(fast[s.id].success for s in specs if s.column == "amount" and "NotBeNull" not in s.id)
    assert fast[MODELLED[14].id].details["element_count"] == N and fast[MODELLED[19].id].details["element_count"] == 0


@pytest.mark.parametrize("defect", ["clean", "broken"])
def test_the_built_in_suite_gives_the_same_outcome_either_way(defect: str) -> None:
    df = clean_frame()
    if defect == "broken":
        df.loc[3:30, "claimed_amount"] = np.nan
        df.loc[40:45, "request_id"] = "req-00001"
        df.loc[50:80, "region"] = "atlantis"
        df.loc[90:95, "prediction"] = np.inf
        df.loc[100:102, "timestamp"] = pd.Timestamp(END) + timedelta(hours=3)
    specs = build_expectations(make_cfg(), PROFILE, START, END, NOW)
    answered, _ = native.evaluate(df.assign(timestamp=df["timestamp"].dt.tz_convert("UTC")), specs)
    assert len(answered) == sum(1 for s in specs if not s.local_check) - 1  # all but the extra GX check
    fast = run_quality(df, make_cfg(), PROFILE, START, END, now=NOW)
    gx = run_quality(df, make_cfg(native_checks=False), PROFILE, START, END, now=NOW)
    assert fast.results == gx.results
    assert (fast.state, fast.failed_rows, fast.row_count) == (gx.state, gx.failed_rows, gx.row_count)
    if defect == "broken":
        assert fast.state == "failed" and fast.failed_rows > 60
    else:
        assert fast.state == "passed"


def test_native_checks_can_be_turned_off() -> None:
    assert make_cfg().quality.native_checks is True
    off = make_cfg(native_checks=False)
    assert dataclasses.asdict(run_quality(clean_frame(), off, PROFILE, START, END, now=NOW))["state"] == "passed"


def test_a_repeated_request_id_keeps_a_clean_row_whichever_is_read_first() -> None:
    """Of a repeated id's rows all but one are bad, and the one kept is clean when one is: the count cannot
    depend on the order rows arrive in, which SQL does not define."""
    df = clean_frame()
    df.loc[[10, 11, 12], "request_id"] = "req-shared"
    df.loc[10, "claimed_amount"] = None  # the first read of the id is defective, a later one is clean
    df.loc[[20, 21], "request_id"] = "req-both-bad"
    df.loc[[20, 21], "claimed_amount"] = None
    cfg = make_cfg()
    _, bad = normalise_frame(df, cfg)
    _, reversed_bad = normalise_frame(df.iloc[::-1].reset_index(drop=True), cfg)
    assert bad.by_reason["duplicate_request_id"] == 3 and bad.by_reason["null:claimed_amount"] == 3
    assert bad.bad_rows == 4  # row 10 and one copy of the clean row; both rows of the id without a clean row
    assert reversed_bad.bad_rows == bad.bad_rows


def test_request_ids_hashed_once_for_bad_rows_give_the_same_uniqueness_result() -> None:
    df = clean_frame()
    df.loc[40:45, "request_id"] = "req-00001"
    df.loc[50, "request_id"] = None
    cfg = make_cfg()
    frame_, bad = normalise_frame(df, cfg)
    assert bad.by_reason["duplicate_request_id"] == 6 and bad.by_reason["null_request_id"] == 1
    shared = run_quality(frame_, cfg, PROFILE, START, END, now=NOW, repeated={"request_id": bad.repeated_ids})
    own = run_quality(frame_, cfg, PROFILE, START, END, now=NOW)
    assert shared.results == own.results and shared.failed_rows == own.failed_rows
    assert shared.result("unique:request_id").unexpected_count == 7  # row 1 and its six copies
