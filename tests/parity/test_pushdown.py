"""In-database summaries against the in-memory ones, on the same rows of a real PostgreSQL table.

Counts are compared exactly; min/max/moments within 1e-9 relative (summation order differs);
quantiles within 1e-9 relative (the order statistics are read exactly and interpolated as `np.quantile` does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from monitoring_lib.compute.database import scan as pushdown
from monitoring_lib.compute.database.scan import summaries_in_database
from monitoring_lib.compute.database.snapshot import beside
from monitoring_lib.compute.memory.bad_rows import normalise_frame
from monitoring_lib.compute.memory.operational import bucket_metrics
from monitoring_lib.compute.memory.summaries import summarise_frame
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.engine import compute_drift
from monitoring_lib.drift.profile import NumericProfile, ReferenceProfile
from monitoring_lib.drift.summaries import ColumnSummary
from monitoring_lib.errors import SourceError
from monitoring_lib.reference.fit import fit_reference
from monitoring_lib.source import read_window, window_query
from monitoring_lib.sql_common import as_float, error_flag

START = datetime(2026, 4, 2, 9, tzinfo=timezone.utc)
END = START + timedelta(hours=1)
ODD = 'claim "amount" €'
REL = 1e-9
COLUMNS = ("request_id text, ts timestamptz, x float8, k int4, {odd} float8, region text, code int4,"
           " prediction float8, latency_ms float8, error boolean")


def make_cfg(categorical: tuple[str, ...] = ("region", "code"), **source: object) -> EndpointConfig:
    return EndpointConfig.model_validate({
        "endpoint_id": "pushdown-test", "project": "p", "model": {"name": "m", "version": "1"},
        "source": {"table": "public.inference", "timestamp_column": "ts", "numeric_features": ["x", "k", ODD],
                   "categorical_features": list(categorical), **source},
        "drift": {"bins": 8},
        "quality": {"enabled": False}, "dynatrace": {"enabled": False},
    })


def reference_frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "x": rng.normal(10.0, 2.0, n), "k": rng.integers(0, 50, n), ODD: rng.lognormal(6, 0.4, n),
        "region": rng.choice(["north", "south", "east"], n), "code": rng.integers(1, 5, n),
        "prediction": rng.normal(0.5, 0.1, n),
    })


def interval_rows(profile: ReferenceProfile, n: int = 300) -> list[tuple]:
    """Ordinary rows plus every edge case: nulls, NaN, ±Infinity, values on edges and beyond the range."""
    rng = np.random.default_rng(11)
    edges = profile.features["x"].edges
    xs: list[float | None] = list(rng.normal(10.5, 2.5, n))
    xs[:len(edges)] = list(edges)  # exactly on every edge, the last one included
    xs[20:26] = [None, float("nan"), float("inf"), float("-inf"), edges[0] - 5.0, edges[-1] + 5.0]
    regions = list(rng.choice(["north", "south", "east", "west", "unknown"], n))
    regions[30:32] = [None, ""]
    codes = [None if i % 37 == 0 else int(c) for i, c in enumerate(rng.integers(1, 7, n))]
    odd = list(rng.lognormal(6.1, 0.5, n))
    odd[40:43] = [float("nan"), None, 1e12]
    latency = list(rng.gamma(2.0, 15.0, n))
    latency[50:53] = [None, float("nan"), 0.0]
    offsets = np.sort(rng.uniform(0, 3600, n))
    rows = []
    for i in range(n):
        error = None if i % 41 == 0 else bool(rng.random() < 0.05)
        rows.append((f"r{i}", START + timedelta(seconds=float(offsets[i])), xs[i],
                     None if i % 53 == 0 else int(rng.integers(-5, 60)), odd[i], regions[i], codes[i],
                     None if error else float(rng.normal(0.55, 0.12)), latency[i], error))
    # outside the window: never read
    rows.append(("before", START - timedelta(microseconds=1), 1e9, 1, 1.0, "zzz", 99, 1.0, 1.0, True))
    rows.append(("at-end", END, -1e9, 1, 1.0, "zzz", 99, 1.0, 1.0, True))
    return rows


def seed(conn: psycopg.Connection, cfg: EndpointConfig) -> ReferenceProfile:
    profile = fit_reference(reference_frame(), cfg, source="test")
    conn.execute(sql.SQL("CREATE TABLE inference (" + COLUMNS + ")").format(odd=sql.Identifier(ODD)))
    with conn.cursor().copy(sql.SQL("COPY inference FROM STDIN")) as copy:
        for row in interval_rows(profile):
            copy.write_row(row)
    conn.commit()
    return profile


def read_arrow_frame(db_url: str, cfg: EndpointConfig) -> pd.DataFrame:
    """The window read through Arrow, keeping NULL and NaN apart as the database does."""
    import adbc_driver_postgresql.dbapi as adbc

    text = window_query(cfg).as_string()
    with adbc.connect(db_url) as aconn, aconn.cursor() as cur:
        cur.execute(text, (START, END))
        return cur.fetch_arrow_table().to_pandas(types_mapper=pd.ArrowDtype)


def columns_of(cfg: EndpointConfig, profile: ReferenceProfile) -> list[str]:
    return [*cfg.source.features, *([cfg.source.prediction_column] if profile.prediction is not None else [])]


def close(a: float | None, b: float | None, scale: float = 0.0) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=REL, abs_tol=REL * scale)


def assert_same_summary(db: ColumnSummary, mem: ColumnSummary) -> None:
    exact = ("name", "kind", "counts", "n", "null_count", "invalid_count", "outside_band", "unseen_count", "shift")
    assert {f: getattr(db, f) for f in exact} == {f: getattr(mem, f) for f in exact}
    # sum(x - shift) can be near zero; judge it against the size of its terms
    assert close(db.sum, mem.sum, scale=math.sqrt(mem.n * mem.sum_sq)), (db.name, db.sum, mem.sum)
    assert close(db.sum_sq, mem.sum_sq), (db.name, db.sum_sq, mem.sum_sq)
    assert close(db.min, mem.min) and close(db.max, mem.max)
    assert close(db.mean, mem.mean, scale=abs(mem.shift)) and close(db.std, mem.std)
    assert db.quantiles.keys() == mem.quantiles.keys()
    assert all(close(db.quantiles[k], mem.quantiles[k]) for k in mem.quantiles), (db.quantiles, mem.quantiles)


def assert_same_drift(db: dict[str, ColumnSummary], mem: dict[str, ColumnSummary], profile: ReferenceProfile,
                      cfg: EndpointConfig, *, equal: Callable[[float | None, float | None, float], bool] = close,
                      skip_stats: Collection[tuple[str, str]] = (), skip_summary: Collection[str] = ()) -> None:
    """The same drift results from both summaries; `skip_*` leave out figures built on a mean or std that only
    a conditioning-aware comparison accepts (`tests/parity/test_pushdown_random.py`)."""
    a, b = compute_drift(db, profile, cfg), compute_drift(mem, profile, cfg)
    assert (a.status, a.reasons, a.drifted_features) == (b.status, b.reasons, b.drifted_features)
    assert len(a.feature_rows) == len(b.feature_rows) > 0
    for ra, rb in zip(a.feature_rows, b.feature_rows, strict=True):
        assert {k: v for k, v in ra.items() if k not in ("value", "p_value")} == \
            {k: v for k, v in rb.items() if k not in ("value", "p_value")}
        assert equal(ra["value"], rb["value"], 1.0) and equal(ra["p_value"], rb["p_value"], 1.0), (ra, rb)
    summary = a.summary.keys() - set(skip_summary)
    assert summary == b.summary.keys() - set(skip_summary)
    assert all(equal(a.summary[k], b.summary[k], 1.0) for k in summary), (a.summary, b.summary)
    stats_a = {(r["feature"], r["metric"]): r["value"] for r in a.feature_stats_rows}
    stats_b = {(r["feature"], r["metric"]): r["value"] for r in b.feature_stats_rows}
    stats = stats_a.keys() - set(skip_stats)
    assert stats == stats_b.keys() - set(skip_stats)
    assert all(equal(stats_a[k], stats_b[k], 1.0) for k in stats), [
        (k, stats_a[k], stats_b[k]) for k in stats if not equal(stats_a[k], stats_b[k], 1.0)]


def assert_same_operational(db: list[tuple], mem: list[tuple]) -> None:
    assert [(t, m) for t, m, _ in db] == [(t, m) for t, m, _ in mem]
    assert all(close(a, b) for (_, _, a), (_, _, b) in zip(db, mem, strict=True))


def test_database_summaries_equal_in_memory_summaries_of_the_same_rows(conn, db_url):
    cfg = make_cfg()
    profile = seed(conn, cfg)
    result = summaries_in_database(conn, cfg, profile, START, END, cfg.drift.band_k)

    frame = read_arrow_frame(db_url, cfg)
    memory = summarise_frame(frame, profile, columns_of(cfg, profile), cfg.drift.band_k)
    assert result.rows == len(frame) == 300
    assert result.summaries.keys() == memory.keys()
    for name in memory:
        assert_same_summary(result.summaries[name], memory[name])
    x = result.summaries["x"]
    # NULL is a null; NaN and ±Infinity are invalid; values beyond the edges land in the outer bins
    assert (x.null_count, x.invalid_count) == (1, 3)
    assert x.counts[0] >= 1 and x.counts[-1] >= 1
    assert result.summaries["region"].unseen_count > 0 and result.summaries["code"].unseen_count > 0
    assert result.first_ts == frame["ts"].min() and result.last_ts == frame["ts"].max()
    assert_same_drift(result.summaries, memory, profile, cfg)
    assert set(result.timings) == {"counts", "moments", "quantiles", "operational"}


def test_with_a_snapshot_twin_the_quantile_columns_are_split_between_the_sessions(conn, db_url, monkeypatch):
    """x (NaN, ±Infinity) and k go to the main session, the odd column (NaN) and the prediction to the twin: the
    order statistics and the recomputed finite moments of both halves land on their own columns. The split is
    for servers whose `array_agg` runs in one process (before 16); this one is made to take that path."""
    cfg = make_cfg()
    profile = seed(conn, cfg)
    alone = summaries_in_database(conn, cfg, profile, START, END, cfg.drift.band_k)

    def with_twin() -> pushdown.PushdownResult:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            with beside(conn, db_url) as side:
                assert side.parallel
                return summaries_in_database(conn, cfg, profile, START, END, cfg.drift.band_k, beside=side)

    assert ("quantiles_beside" in with_twin().timings) == (conn.info.server_version < 160000)
    monkeypatch.setattr(pushdown, "_arrays_in_one_process", lambda _conn: True)
    split = with_twin()
    assert set(split.timings) == {"counts", "moments", "quantiles", "quantiles_beside", "operational"}
    assert split.summaries.keys() == alone.summaries.keys()
    for name in alone.summaries:
        assert_same_summary(split.summaries[name], alone.summaries[name])
    assert split.summaries[ODD].invalid_count == 1 and split.summaries["x"].invalid_count == 3
    assert (split.rows, split.first_ts, split.last_ts) == (alone.rows, alone.first_ts, alone.last_ts)


def test_last_edge_belongs_to_the_last_inner_bin(conn):
    cfg = make_cfg()
    profile = seed(conn, cfg)
    col = profile.features["x"]
    assert isinstance(col, NumericProfile)
    conn.execute("DELETE FROM inference")
    conn.execute("INSERT INTO inference (request_id, ts, x) SELECT 'e' || i, %s, e FROM unnest(%s::float8[])"
                 " WITH ORDINALITY AS t(e, i)", (START, [col.edges[0] - 1, *col.edges, col.edges[-1] + 1]))
    x = summaries_in_database(conn, cfg, profile, START, END, 3.0).summaries["x"]
    # below | one value per inner bin, the last inner bin also holding edges[-1] | above
    assert x.counts == (1, *([1] * (len(col.edges) - 2)), 2, 1)


def test_pipeline_view_matches_normalised_frame_and_bucket_metrics(conn, db_url):
    """With non-finite values read as nulls, the summaries are what `run_interval` computes in memory."""
    cfg = make_cfg(categorical=("region",))
    profile = seed(conn, cfg)
    result = summaries_in_database(conn, cfg, profile, START, END, cfg.drift.band_k, non_finite_as_null=True)

    df, _ = normalise_frame(read_window(db_url, cfg, START, END), cfg)
    memory = summarise_frame(df, profile, columns_of(cfg, profile), cfg.drift.band_k)
    for name in memory:
        assert_same_summary(result.summaries[name], memory[name])
    assert result.summaries["x"].null_count == 4 and result.summaries["x"].invalid_count == 0
    assert_same_drift(result.summaries, memory, profile, cfg)

    expected = bucket_metrics(df, cfg, START, END)
    assert len(expected) == 12 * 6
    assert_same_operational(result.operational, expected)


def test_operational_buckets_without_latency_and_with_a_text_error_flag(conn, db_url):
    cfg = make_cfg(latency_column=None, error_column="failed")
    profile = seed(conn, cfg)
    conn.execute("ALTER TABLE inference ADD COLUMN failed text")
    conn.execute("UPDATE inference SET failed = CASE WHEN x > 12 THEN ' Yes ' WHEN x < 8 THEN '0'"
                 " WHEN k > 40 THEN '2.5' WHEN k < 0 THEN 'no' END")
    conn.commit()
    result = summaries_in_database(conn, cfg, profile, START, END, 3.0)
    df, _ = normalise_frame(read_window(db_url, cfg, START, END), cfg)
    expected = bucket_metrics(df, cfg, START, END)
    assert {m for _, m, _ in expected} == {"predictions", "errors"}
    assert sum(v for _, m, v in expected if m == "errors") > 0
    assert_same_operational(result.operational, expected)


def test_empty_window_and_sql_source(conn):
    cfg = make_cfg(table=None, sql="SELECT * FROM inference WHERE region IS DISTINCT FROM 'west'")
    profile = seed(conn, cfg)
    later = END + timedelta(days=1)
    empty = summaries_in_database(conn, cfg, profile, later, later + timedelta(hours=1), 3.0)
    memory = summarise_frame(pd.DataFrame({c: pd.Series([], dtype=float) for c in columns_of(cfg, profile)}),
                             profile, columns_of(cfg, profile), 3.0)
    assert empty.rows == 0 and empty.operational == [] and empty.first_ts is None
    assert empty.summaries == memory

    filtered = summaries_in_database(conn, cfg, profile, START, END, 3.0)
    west = conn.execute("SELECT count(*) FROM inference WHERE region = 'west' AND ts >= %s AND ts < %s",
                        (START, END)).fetchone()[0]
    assert filtered.rows == 300 - west and west > 0
    assert "west" not in profile.features["region"].categories


def test_missing_source_column_is_a_source_error_and_the_connection_stays_usable(conn):
    cfg = make_cfg()
    profile = seed(conn, cfg)
    conn.execute("ALTER TABLE inference DROP COLUMN code")
    conn.commit()
    with pytest.raises(SourceError, match="code"):
        summaries_in_database(conn, cfg, profile, START, END, 3.0)
    assert conn.execute("SELECT count(*) FROM inference").fetchone()[0] == 302


def test_inside_a_callers_transaction_the_planner_settings_are_left_as_they_were(conn):
    """The counts scan lowers `parallel_tuple_cost` for itself only; the caller's later queries plan as before."""
    cfg = make_cfg()
    profile = seed(conn, cfg)
    with conn.transaction():
        conn.execute("SET LOCAL parallel_tuple_cost = 0.25")
        result = summaries_in_database(conn, cfg, profile, START, END, 3.0)
        assert conn.execute("SELECT current_setting('parallel_tuple_cost')").fetchone()[0] == "0.25"
    assert result.rows == 300 and result.summaries["x"].n > 0


def replace_rows(conn: psycopg.Connection, x: list[float | None], **columns: list) -> None:
    """The window holds exactly these rows: x (and any other given column) per row, spread over the hour."""
    conn.execute("DELETE FROM inference")
    n = len(x)
    names = ["x", *columns]
    with conn.cursor().copy(sql.SQL("COPY inference (request_id, ts, {}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, names)))) as copy:
        for i in range(n):
            copy.write_row((f"r{i}", START + timedelta(seconds=3600 * i / n), x[i], *(v[i] for v in columns.values())))
    conn.commit()


def assert_matches_memory(conn, db_url: str, cfg: EndpointConfig,
                          profile: ReferenceProfile) -> dict[str, ColumnSummary]:
    result = summaries_in_database(conn, cfg, profile, START, END, cfg.drift.band_k)
    memory = summarise_frame(read_arrow_frame(db_url, cfg), profile, columns_of(cfg, profile), cfg.drift.band_k)
    for name in memory:
        assert_same_summary(result.summaries[name], memory[name])
    return result.summaries


def test_quantiles_in_the_open_outer_bins_are_exact(conn, db_url):
    """An interval far outside the reference range: every order statistic lies beyond the outer edges."""
    cfg = make_cfg()
    profile = seed(conn, cfg)
    edges = profile.features["x"].edges
    rng = np.random.default_rng(3)
    above = list(edges[-1] + rng.lognormal(3.0, 1.5, 700))
    below = list(edges[0] - rng.lognormal(8.0, 0.1, 300))
    replace_rows(conn, [*above, *below, None, float("nan")])
    x = assert_matches_memory(conn, db_url, cfg, profile)["x"]
    assert x.counts[0] == 300 and x.counts[-1] == 700 and sum(x.counts[1:-1]) == 0
    assert x.quantiles["p01"] < edges[0] and x.quantiles["p50"] > edges[-1]


def test_values_crowded_into_one_sub_bin(conn, db_url):
    """Many distinct values (and repeats) inside a sliver of one reference bin: one fine bucket holds them all."""
    cfg = make_cfg()
    profile = seed(conn, cfg)
    mid = profile.features["x"].mean  # next to the shift, so the spread of 1e-7 survives in the moments
    rng = np.random.default_rng(5)
    values = list(mid + rng.uniform(0, 1e-7, 500)) + [mid] * 20
    replace_rows(conn, values)
    x = assert_matches_memory(conn, db_url, cfg, profile)["x"]
    assert sum(1 for c in x.counts if c) == 1 and x.n == 520


def test_window_with_one_row_and_a_numeric_column_entirely_null(conn, db_url):
    cfg = make_cfg()
    profile = seed(conn, cfg)
    replace_rows(conn, [12.5], k=[None], region=["north"])
    summaries = assert_matches_memory(conn, db_url, cfg, profile)
    x, k = summaries["x"], summaries["k"]
    assert x.n == 1 and x.min == x.max == 12.5 and set(x.quantiles.values()) == {12.5}
    assert (k.n, k.null_count, k.quantiles, k.min) == (0, 1, {}, None)
    assert summaries["region"].counts[profile.features["region"].categories.index("north")] == 1


def test_huge_target_buckets_fall_back_to_percentile_cont(conn, db_url, monkeypatch):
    """With no room to read order statistics, quantiles come from `percentile_cont`: still equal to NumPy's."""
    monkeypatch.setattr(pushdown, "_MAX_FETCH", 0)
    cfg = make_cfg()
    profile = seed(conn, cfg)
    summaries = assert_matches_memory(conn, db_url, cfg, profile)
    assert summaries["x"].quantiles and summaries[ODD].quantiles


def test_aggregate_plan_rides_on_the_moments_scan(conn):
    """Other modules' aggregates come back from the moments scan itself, and the summaries do not change."""
    cfg = make_cfg()
    profile = seed(conn, cfg)
    alone = summaries_in_database(conn, cfg, profile, START, END, cfg.drift.band_k)
    plan = pushdown.AggregatePlan(cfg, START, END)
    plan.add("rows", sql.SQL("count(*)"))
    plan.add("rows", sql.SQL("count(*)"))  # a second module needing the same aggregate
    plan.add("x_null", sql.SQL("count(*) FILTER (WHERE x IS NULL)"))
    plan.add("north", sql.SQL("count(*) FILTER (WHERE region = {})").format(plan.params("north")))
    with pytest.raises(ValueError, match="already planned"):
        plan.add("rows", sql.SQL("count(x)"))

    shared = summaries_in_database(conn, cfg, profile, START, END, cfg.drift.band_k, plan=plan)
    rows = interval_rows(profile)[:300]
    assert set(shared.timings) == {"counts", "moments", "quantiles", "operational"}  # no scan of its own
    assert (plan["rows"], plan["x_null"], plan["north"]) == (300, 1, sum(r[5] == "north" for r in rows))
    assert shared.summaries == alone.summaries and shared.operational == alone.operational
    with pytest.raises(RuntimeError, match="after the plan was evaluated"):
        plan.add("late", sql.SQL("count(*)"))
    with pytest.raises(ValueError, match="aggregate plan of"):
        summaries_in_database(conn, cfg, profile, START, END + timedelta(hours=1), 3.0,
                              plan=pushdown.AggregatePlan(cfg, START, END))


def test_aggregate_plan_without_numeric_columns_or_profile_is_still_evaluated_in_one_scan(conn):
    cfg = make_cfg()
    seed(conn, cfg)
    categorical_only = make_cfg(numeric_features=[])
    categories = fit_reference(reference_frame().drop(columns="prediction"), categorical_only, source="test")
    assert categories.prediction is None
    for config, prof in ((categorical_only, categories), (cfg, None)):
        plan = pushdown.AggregatePlan(config, START, END)
        plan.add("rows", sql.SQL("count(*)"))
        result = summaries_in_database(conn, config, prof, START, END, 3.0, plan=plan)
        assert plan["rows"] == result.rows == 300 and result.operational
        # the moments scan carries the plan alone; no quantile scan without a numeric column
        assert set(result.timings) == {"moments", "operational"} | ({"counts"} if prof else set())
        # without a profile there is nothing to summarise against: operational buckets only
        assert result.summaries.keys() == ({"region", "code"} if prof else set())


# Texts an error column may hold, with what pandas' reading of the flag makes of them (`frames._as_bool`).
ERROR_TEXTS = ["true", " Yes ", "\tY\n", "T", "false", "no", "", " ", "abc", "None", "0", "-0", "0.0", "+0", "0e0",
               "1", " 1 ", "\x0b2.5", "1.", ".5", "+.5e3", "1E5", "1_0", "0x1", "1d5", "--1", "1e", "1.5.2",
               "inf", "-inf", "+inf", "Infinity", "-INFINITY", "iNf", " inf", "inf ", "infinite", "nan", "NaN", "-nan",
               "1e999", "-1e999", "1e0999", "1e99999", "1e-99999", "0e99999", "1e-400", "1e-310", "4e-324",
               "2e-324", "3e-324", "2.4703282292062327e-324", "2.4703282292062328e-324", "0." + "0" * 1200 + "1",
               "1" + "0" * 1200, "0" * 1200, "\xa0yes", "yes\u3000", "\u2003TRUE\x1c", "\xa01", "\xa02", "2\u3000",
               None]


def test_the_error_flag_reads_text_as_pandas_does(conn):
    """Words, numbers, infinities and numbers beyond float8's range or below its smallest value: the error flag
    in SQL is true exactly where the memory mode reads true, and no text fails the query."""
    conn.execute("CREATE TABLE flags (i int, failed text)")
    with conn.cursor().copy("COPY flags FROM STDIN") as copy:
        for i, text in enumerate(ERROR_TEXTS):
            copy.write_row((i, text))
    rows = conn.execute(sql.SQL("SELECT {} FROM flags ORDER BY i").format(error_flag("failed", "text")))
    cfg = make_cfg(error_column="failed", latency_column=None)
    df, _ = normalise_frame(pd.DataFrame({"failed": pd.Series(ERROR_TEXTS, dtype=object)}), cfg)
    expected = df["failed"].tolist()
    got = [r[0] for r in rows.fetchall()]
    assert [(t, g, e) for t, g, e in zip(ERROR_TEXTS, got, expected, strict=True) if g != e] == []
    assert got == expected
    assert sum(expected) == 30  # both readings are exercised


NUMERIC_TEXTS = ["0", "1.5", "1e-300", "1e-310", "-1e-320", "2.4703282292062327e-324", "2.4703282292062328e-324",
                 "-3e-324", "1e-400", "-1e-400", "1e-16000", "1.7976931348623157e308", "1.7976931348623158e308",
                 "1.797693134862315807e308", "1e400", "-1e400", "NaN"]


def test_numeric_values_convert_to_the_float_their_text_parses_to(conn):
    """Beyond float8's range either way a `numeric` is ±Infinity or ±0.0, as Python parses its text, where the
    plain cast fails the query with an out-of-range error."""
    query = sql.SQL("SELECT {} FROM (SELECT x::numeric AS x, i FROM unnest(%s::text[]) WITH ORDINALITY AS t(x, i))"
                    " AS v ORDER BY i").format(as_float("x", "numeric"))
    rows = conn.execute(query, (NUMERIC_TEXTS,))
    got = [repr(r[0]) for r in rows.fetchall()]
    assert got == [repr(float(t)) for t in NUMERIC_TEXTS]  # repr: -0.0 and NaN compare too
