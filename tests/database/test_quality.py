"""Quality checks: a clean interval passes every check, each seeded defect fires exactly its check(s),
severities decide the state, and results are stored idempotently in the real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import psycopg
import pytest
import yaml

from monitoring_lib.compute.memory.quality import run_quality
from monitoring_lib.config import EndpointConfig, load_endpoint_config
from monitoring_lib.drift.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from monitoring_lib.errors import ConfigError
from monitoring_lib.quality import build_expectations
from monitoring_lib.quality.suite import not_null_mostly
from monitoring_lib.results.quality import write_quality_results

START = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
END = START + timedelta(hours=1)
NOW = END + timedelta(minutes=5)
N = 200
REGIONS = ("north", "south", "east", "west")


def make_cfg(**quality: object) -> EndpointConfig:
    return EndpointConfig.model_validate(
        {
            "endpoint_id": "claims-model",
            "project": "insurance",
            "model": {"name": "claims", "version": "3"},
            "source": {
                "table": "public.inference_log",
                "numeric_features": ["claimed_amount", "age"],
                "categorical_features": ["region"],
            },
            "quality": {
                "row_count": {"min": 10, "max": 1000},
                "extra_expectations": [
                    {
                        "type": "expect_column_mean_to_be_between",
                        "kwargs": {"column": "claimed_amount", "min_value": 0, "max_value": 5000},
                        "severity": "warning",
                    }
                ],
                **quality,
            },
        }
    )


def _numeric(name: str, lo: float, hi: float) -> NumericProfile:
    edges = tuple(float(x) for x in np.linspace(lo, hi, 5))
    return NumericProfile(
        name=name, edges=edges, counts=(0, 25, 25, 25, 25, 0), count=100, null_count=0,
        mean=(lo + hi) / 2, std=(hi - lo) / 4, min=lo, max=hi, quantiles={},
    )  # fmt: skip


PROFILE = ReferenceProfile(
    endpoint_id="claims-model",
    model_version="3",
    features={
        "claimed_amount": _numeric("claimed_amount", 100.0, 3000.0),
        "age": _numeric("age", 18.0, 90.0),
        "region": CategoricalProfile(
            name="region", categories=REGIONS, counts=(25, 25, 25, 25, 0), count=100, null_count=0
        ),
    },
    prediction=_numeric("prediction", 0.0, 5000.0),
    label=None,
    row_count=100,
    null_rates={"claimed_amount": 0.0, "age": 0.02, "region": 0.0},
)


def clean_frame(n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    seconds = np.sort(rng.integers(0, 3600, n))
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(START) + pd.to_timedelta(seconds, unit="s"),
            "request_id": [f"req-{i:05d}" for i in range(n)],
            "claimed_amount": rng.uniform(150, 2900, n),
            "age": rng.integers(20, 85, n),
            "region": [REGIONS[i % 4] for i in range(n)],
            "prediction": rng.uniform(100, 4000, n),
            "latency_ms": rng.uniform(5, 80, n),
            "error": np.zeros(n, dtype=bool),
        }
    )


def failed_ids(outcome) -> set[str]:
    return {r.expectation_id for r in outcome.failed_results}


@pytest.fixture(scope="module", autouse=True)
def _great_expectations() -> None:
    """Import Great Expectations (about 3 s) once for the module, not inside whichever test runs first."""
    import great_expectations  # noqa: F401


@pytest.fixture(scope="module")
def cfg() -> EndpointConfig:
    return make_cfg()


@pytest.fixture(scope="module")
def clean_outcome(cfg: EndpointConfig):
    """Validating once per module pays the Great Expectations import once for every test here."""
    return run_quality(clean_frame(), cfg, PROFILE, START, END, now=NOW)


# --- the suite ---------------------------------------------------------------------------------------

def test_suite_has_every_check_with_unique_ids_and_reference_thresholds(cfg: EndpointConfig) -> None:
    specs = {s.id: s for s in build_expectations(cfg, PROFILE, START, END, NOW)}
    assert set(specs) == {
        "columns_exist", "row_count",
        "type:timestamp", "type:claimed_amount", "type:age", "type:prediction", "type:latency_ms", "type:error",
        "not_null:request_id", "unique:request_id", "not_null:timestamp", "in_window:timestamp",
        "not_future:timestamp", "not_null:claimed_amount", "not_null:age", "not_null:region",
        "range:claimed_amount", "range:age", "range:prediction", "in_set:region",
        "not_null:prediction", "non_negative:latency_ms",
        "extra[0]:expect_column_mean_to_be_between:claimed_amount",
    }  # fmt: skip
    # mostly = 1 - max(3 * rate, rate + 0.01): 0.99 with no reference nulls, 0.94 for age's 2 %.
    assert specs["not_null:claimed_amount"].kwargs["mostly"] == pytest.approx(0.99)
    assert specs["not_null:age"].kwargs["mostly"] == pytest.approx(0.94)
    assert "mostly" not in specs["not_null:request_id"].kwargs
    # reference [100, 3000] widened by 10 % of its width on both sides
    assert specs["range:claimed_amount"].kwargs["min_value"] == pytest.approx(-190.0)
    assert specs["range:claimed_amount"].kwargs["max_value"] == pytest.approx(3290.0)
    assert specs["range:claimed_amount"].kwargs["mostly"] == pytest.approx(0.95)
    assert specs["in_set:region"].kwargs["value_set"] == list(REGIONS)
    # a finished window is bounded by its end, so re-running it later builds the same expectation
    assert specs["not_future:timestamp"].kwargs["max_value"] == END + timedelta(minutes=10)
    assert specs["not_null:prediction"].kwargs["row_condition"] == "`error` != True"
    severities = {i: s.severity for i, s in specs.items()}
    assert severities["not_null:age"] == severities["range:age"] == severities["in_set:region"] == "warning"
    assert severities["non_negative:latency_ms"] == "warning"
    assert severities["not_null:request_id"] == severities["not_null:timestamp"] == "critical"
    assert severities["unique:request_id"] == severities["row_count"] == "critical"


def test_not_null_mostly_formula() -> None:
    assert not_null_mostly(0.0) == pytest.approx(0.99)
    assert not_null_mostly(0.1) == pytest.approx(0.7)
    assert not_null_mostly(0.5) == 0.0


def test_without_profile_reference_checks_are_left_out(cfg: EndpointConfig) -> None:
    ids = {s.id for s in build_expectations(cfg, None, START, END, NOW)}
    assert not any(i.startswith(("range:", "in_set:")) for i in ids)
    assert {"columns_exist", "not_null:age", "not_null:prediction"} <= ids


def test_extra_expectation_accepts_camel_case() -> None:
    extra = {"type": "ExpectColumnMaxToBeBetween", "kwargs": {"column": "age", "max_value": 120}}
    specs = build_expectations(make_cfg(extra_expectations=[extra]), PROFILE, START, END, NOW)
    assert specs[-1].id == "extra[0]:expect_column_max_to_be_between:age"
    assert specs[-1].expectation_type == "ExpectColumnMaxToBeBetween"


def test_unknown_extra_expectation_type_is_a_config_error_naming_the_field() -> None:
    bad = make_cfg(extra_expectations=[{"type": "expect_column_values_to_be_green", "kwargs": {"column": "age"}}])
    with pytest.raises(ConfigError, match=r"quality\.extra_expectations\[0\]\.type"):
        build_expectations(bad, PROFILE, START, END, NOW)


def test_invalid_extra_expectation_kwargs_are_a_config_error_naming_the_field() -> None:
    bad = make_cfg(extra_expectations=[{"type": "expect_column_values_to_be_between", "kwargs": {"colum": "age"}}])
    with pytest.raises(ConfigError, match=r"quality\.extra_expectations\[0\]\.kwargs"):
        build_expectations(bad, PROFILE, START, END, NOW)


# --- validation ----------------------------------------------------------------------------------------

def test_clean_interval_passes_every_check(clean_outcome) -> None:
    assert clean_outcome.state == "passed", clean_outcome.summary()
    assert failed_ids(clean_outcome) == set()
    assert len(clean_outcome.results) == 23
    assert clean_outcome.failed_rows == 0
    assert clean_outcome.row_count == N
    assert clean_outcome.result("row_count").observed_value == N
    assert clean_outcome.result("type:error").observed_value == "bool"
    assert clean_outcome.result("unique:request_id").unexpected_count == 0


def test_results_are_json_serialisable(clean_outcome) -> None:
    for r in clean_outcome.results:
        json.dumps({"observed": r.observed_value, "details": r.details}, allow_nan=False)


def _set(column: str, rows: slice | list[int], value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[df.index[rows], column] = value
        return df

    return mutate


def _outside_window(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[0, "timestamp"] = START - timedelta(seconds=1)
    df.loc[N - 1, "timestamp"] = END  # the window is half-open
    return df


def _duplicate_ids(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[1, "request_id"] = df.loc[0, "request_id"]
    return df


def _numbers_as_text(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(claimed_amount=df["claimed_amount"].round(2).astype(str))


def _unseen_region(df: pd.DataFrame) -> pd.DataFrame:
    df["region"] = df["region"].where(df.index % 10 != 0, "atlantis")  # 10 % > max_unseen_share 5 %
    return df


SEEDED = [
    # (name, mutation, failing ids, state)
    ("missing column", lambda df: df.drop(columns=["age"]),
     {"columns_exist", "type:age", "not_null:age", "range:age"}, "failed"),
    ("wrong numeric type", _numbers_as_text,
     {"type:claimed_amount", "range:claimed_amount",
      "extra[0]:expect_column_mean_to_be_between:claimed_amount"}, "failed"),
    ("error flag not boolean", lambda df: df.assign(error=np.where(df.index % 2, "yes", "no")),
     {"type:error"}, "failed"),
    ("feature nulls above reference rate", _set("age", slice(0, 40), np.nan), {"not_null:age"}, "warning"),
    ("null request id", _set("request_id", [3], None), {"not_null:request_id"}, "failed"),
    ("null timestamp", _set("timestamp", [3], pd.NaT), {"not_null:timestamp"}, "failed"),
    ("values out of reference range", _set("claimed_amount", slice(0, 20), 10_000.0),
     {"range:claimed_amount"}, "warning"),
    ("unseen category", _unseen_region, {"in_set:region"}, "warning"),
    ("duplicate request ids", _duplicate_ids, {"unique:request_id"}, "failed"),
    ("timestamp outside window", _outside_window, {"in_window:timestamp"}, "failed"),
    ("too few rows", lambda df: df.head(5), {"row_count"}, "failed"),
    ("NaN prediction on a served row", _set("prediction", [4], np.nan), {"not_null:prediction"}, "failed"),
    ("negative latency", _set("latency_ms", [2], -3.0), {"non_negative:latency_ms"}, "warning"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "expected", "state"), [s[1:] for s in SEEDED], ids=[s[0] for s in SEEDED])
def test_each_seeded_defect_fires_its_check(
    cfg: EndpointConfig, clean_outcome, mutate: Callable[[pd.DataFrame], pd.DataFrame], expected: set[str],
    state: str,
) -> None:
    outcome = run_quality(mutate(clean_frame()), cfg, PROFILE, START, END, now=NOW)
    assert failed_ids(outcome) == expected
    assert outcome.state == state
    for r in outcome.results:
        json.dumps({"observed": r.observed_value, "details": r.details}, allow_nan=False)


def test_timestamp_in_the_future_fails_even_inside_the_window(cfg: EndpointConfig, clean_outcome) -> None:
    df = clean_frame()
    now = START + timedelta(minutes=30)  # the run looks at a window that has not finished yet
    df.loc[N - 1, "timestamp"] = now + timedelta(minutes=20)
    outcome = run_quality(df, cfg, PROFILE, START, END, now=now)
    assert failed_ids(outcome) == {"not_future:timestamp"}
    assert outcome.result("not_future:timestamp").unexpected_count >= 1
    assert outcome.state == "failed"


def test_too_many_rows_fails_row_count(clean_outcome) -> None:
    cfg = make_cfg(row_count={"min": 1, "max": 100})
    outcome = run_quality(clean_frame(), cfg, PROFILE, START, END, now=NOW)
    assert failed_ids(outcome) == {"row_count"}
    assert outcome.result("row_count").observed_value == N


def test_missing_prediction_on_an_error_row_is_fine(cfg: EndpointConfig, clean_outcome) -> None:
    df = clean_frame()
    df.loc[[4, 9], "error"] = True
    df.loc[[4, 9], "prediction"] = np.nan
    outcome = run_quality(df, cfg, PROFILE, START, END, now=NOW)
    assert outcome.state == "passed", outcome.summary()


@pytest.mark.parametrize("severity", ["critical", "warning"])
def test_failing_extra_expectation_carries_its_severity(severity: str, clean_outcome) -> None:
    extra = {"type": "expect_column_max_to_be_between", "kwargs": {"column": "age", "max_value": 30},
             "severity": severity}
    outcome = run_quality(clean_frame(), make_cfg(extra_expectations=[extra]), PROFILE, START, END, now=NOW)
    failed = outcome.failed_results
    assert [r.expectation_id for r in failed] == ["extra[0]:expect_column_max_to_be_between:age"]
    assert failed[0].severity == severity
    assert failed[0].observed_value > 30
    assert outcome.state == ("failed" if severity == "critical" else "warning")


def test_critical_and_warning_together_is_failed(cfg: EndpointConfig, clean_outcome) -> None:
    df = _duplicate_ids(_set("latency_ms", [2], -1.0)(clean_frame()))
    outcome = run_quality(df, cfg, PROFILE, START, END, now=NOW)
    assert failed_ids(outcome) == {"unique:request_id", "non_negative:latency_ms"}
    assert outcome.state == "failed"
    summary = outcome.summary()
    assert summary["failed_critical"] == ["unique:request_id"]
    assert summary["failed_warning"] == ["non_negative:latency_ms"]


def test_failed_rows_counts_distinct_rows(cfg: EndpointConfig, clean_outcome) -> None:
    df = clean_frame()
    df.loc[0:19, "claimed_amount"] = 10_000.0  # 20 rows out of range (10 %)
    df.loc[0:4, "latency_ms"] = -1.0  # 5 of the same rows also have a negative latency
    df.loc[50, "prediction"] = np.nan  # one more row
    outcome = run_quality(df, cfg, PROFILE, START, END, now=NOW)
    assert failed_ids(outcome) == {"range:claimed_amount", "non_negative:latency_ms", "not_null:prediction"}
    assert sum(r.unexpected_count for r in outcome.failed_results) == 26
    assert outcome.failed_rows == 21


def test_nulls_within_tolerance_pass_and_flag_no_rows(cfg: EndpointConfig, clean_outcome) -> None:
    df = clean_frame()
    df.loc[[1, 2], "age"] = np.nan  # 1 %: within age's 6 % tolerance
    outcome = run_quality(df, cfg, PROFILE, START, END, now=NOW)
    assert outcome.state == "passed"
    assert outcome.result("not_null:age").unexpected_count == 2
    assert outcome.failed_rows == 0


def test_boolean_ish_error_columns_and_naive_timestamps_pass(cfg: EndpointConfig, clean_outcome) -> None:
    as_object = clean_frame().assign(error=lambda d: pd.Series([True if i == 3 else None for i in range(N)],
                                                               dtype=object))
    as_int = clean_frame().assign(error=lambda d: (d.index == 3).astype("int64"))
    naive = clean_frame().assign(timestamp=lambda d: d["timestamp"].dt.tz_localize(None))
    for df in (as_object, as_int, naive):
        outcome = run_quality(df, cfg, PROFILE, START, END, now=NOW)
        assert outcome.state == "passed", outcome.summary()


def test_empty_interval_fails_row_count_only(clean_outcome) -> None:
    cfg = make_cfg(extra_expectations=[])  # a mean over no rows is undefined and would fail too
    outcome = run_quality(clean_frame().head(0), cfg, PROFILE, START, END, now=NOW)
    assert failed_ids(outcome) == {"row_count"}
    assert outcome.failed_rows == 0


# --- storage ---------------------------------------------------------------------------------------------

def _stored(conn: psycopg.Connection) -> dict[str, tuple]:
    rows = conn.execute(
        "SELECT expectation_id, success, severity, unexpected_count, observed_value, details, column_name"
        " FROM monitoring.data_quality_results WHERE endpoint_id = %s AND window_start = %s AND window_end = %s",
        ("claims-model", START, END),
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_results_are_written_and_rewriting_the_window_replaces_them(
    conn: psycopg.Connection, db_url: str, cfg: EndpointConfig, clean_outcome
) -> None:
    written = write_quality_results(conn, "claims-model", START, END, clean_outcome)
    assert written == len(clean_outcome.results)
    with psycopg.connect(db_url) as other:  # nothing is visible before the caller commits
        assert other.execute("SELECT count(*) FROM monitoring.data_quality_results").fetchone()[0] == 0
    conn.commit()
    stored = _stored(conn)
    assert set(stored) == {r.expectation_id for r in clean_outcome.results}
    assert all(success for success, *_ in stored.values())
    assert stored["row_count"][3] == N
    assert stored["range:claimed_amount"][5] == "claimed_amount"

    # A re-run after a config change: one check fails now and the extra expectation no longer exists.
    rerun_cfg = make_cfg(extra_expectations=[])
    df = _set("latency_ms", [2], -3.0)(clean_frame())
    rerun = run_quality(df, rerun_cfg, PROFILE, START, END, now=NOW)
    write_quality_results(conn, "claims-model", START, END, rerun)
    write_quality_results(conn, "claims-model", START, END, rerun)  # twice: still no duplicates
    conn.commit()
    stored = _stored(conn)
    assert set(stored) == {r.expectation_id for r in rerun.results}
    assert len(stored) == len(rerun.results) == 22
    success, severity, unexpected, observed, details, _ = stored["non_negative:latency_ms"]
    assert (success, severity, unexpected) == (False, "warning", 1)
    assert details["partial_unexpected_list"] == [-3.0]
    count = conn.execute("SELECT count(*) FROM monitoring.data_quality_results").fetchone()[0]
    assert count == 22


def test_other_windows_are_left_alone(conn: psycopg.Connection, clean_outcome) -> None:
    write_quality_results(conn, "claims-model", START - timedelta(hours=1), START, clean_outcome)
    write_quality_results(conn, "other-model", START, END, clean_outcome)
    write_quality_results(conn, "claims-model", START, END, clean_outcome)
    conn.commit()
    count = conn.execute("SELECT count(*) FROM monitoring.data_quality_results").fetchone()[0]
    assert count == 3 * len(clean_outcome.results)


@pytest.mark.parametrize(("quality", "field", "reason"), [
    ({"row_count": {"min": 100, "max": 10}}, "quality.row_count", r"max \(10\) is below min \(100\)"),
    ({"extra_expectations": [{"type": "expect_column_values_to_be_between",
                              "kwargs": {"column": "age", "min_value": 90, "max_value": 18.5}}]},
     r"quality.extra_expectations.0", r"kwargs.min_value \(90\) is above kwargs.max_value \(18.5\)"),
    ({"extra_expectations": [{"type": "expect_table_row_count_to_be_between",
                              "kwargs": {"min_value": 5, "max_value": 1}}]},
     r"quality.extra_expectations.0", r"kwargs.min_value \(5\) is above kwargs.max_value \(1\)"),
])
def test_crossed_bounds_are_a_config_error_naming_file_and_field(tmp_path, quality, field, reason) -> None:
    """No value lies between crossed bounds: a typo, rejected before any run (Great Expectations would report
    an error for some checks and count every row as unexpected for others)."""
    data = {"endpoint_id": "claims-model", "project": "insurance", "model": {"name": "claims"},
            "source": {"table": "public.inference_log", "numeric_features": ["age"]}, "quality": quality}
    path = tmp_path / "endpoint.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=rf"^{path}: {field}: [^;]*{reason}$"):
        load_endpoint_config(path)
