"""Per-segment drift: one region drifts while the whole population does not, found and named in both
compute modes (and by the feature-groups mode), against the reference's own segment."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from monitoring_lib.compute.groups.partials import summarise_group
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.profile import OTHER_SEGMENT
from monitoring_lib.drift.segments import choose_values
from monitoring_lib.dynatrace.lines import build_interval_lines
from monitoring_lib.performance import recompute_recent
from monitoring_lib.reference import fit_and_store
from monitoring_lib.results.window import segment_only_windows
from monitoring_lib.retraining.decisions import decide_and_record
from monitoring_lib.runner import run_interval
from tests.database.test_pipeline import END, demo_config, seed_and_fit
from tests.parity.test_compute_database import assert_same_results, stored
from tests.sources import WINDOW_END, WINDOW_START, create_inference_table, insert_rows, make_config

COLUMNS = ["request_id", "ts", "claimed_amount", "vehicle_age", "region", "prediction", "latency_ms", "error"]
# north is small and has its own amounts: a shift inside it barely moves the population's histogram
SHARES = {"north": 0.03, "south": 0.32, "east": 0.32, "west": 0.32, "tiny": 0.01}
MEANS = {"north": 1000.0, "south": 4000.0, "east": 4500.0, "west": 5000.0, "tiny": 4000.0}


def rows(n: int, seed: int, north_shift: float = 0.0, start=WINDOW_START, prefix: str = "r") -> list[tuple]:
    rng = np.random.default_rng(seed)
    region = rng.choice(list(SHARES), n, p=list(SHARES.values()))
    amount = np.array([MEANS[r] for r in region]) + rng.normal(0, 200, n)
    amount[region == "north"] += north_shift
    age = rng.normal(8, 3, n)
    offsets = np.sort(rng.uniform(0, 3600, n))
    errors = rng.random(n) < np.where(region == "north", 0.2, 0.01)
    return [(f"{prefix}{i}", start + timedelta(seconds=float(offsets[i])), float(amount[i]), float(age[i]),
             str(region[i]), 2000.0, 10.0 + (30.0 if region[i] == "north" else 0.0), bool(errors[i]))
            for i in range(n)]


def config(compute: str = "memory", **extra: object) -> EndpointConfig:
    cfg = make_config(drift={"feature": {"metric": "hellinger"}},
                      segments={"columns": ["region"], "values": {"region": ["north", "south", "east", "tiny"]}},
                      **extra)
    return EndpointConfig.model_validate({**cfg.model_dump(by_alias=True), "compute": compute})


@pytest.fixture()
def fitted(conn, db_url):
    create_inference_table(conn)
    conn.commit()
    reference = pd.DataFrame(rows(60_000, seed=1, start=WINDOW_START - timedelta(days=30), prefix="t"),
                             columns=COLUMNS)
    return fit_and_store(db_url, config(), frame=reference)


def segment_rows(conn) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in conn.execute(
        "SELECT metric, status, extra FROM monitoring.app_results WHERE application = 'segment' ORDER BY metric")}


def test_the_profile_holds_each_segments_own_counts(fitted):
    [seg] = fitted.segments
    assert seg.column == "region" and seg.values == ("north", "south", "east", "tiny", OTHER_SEGMENT)
    assert sum(seg.rows) == 60_000 and 1500 < seg.rows[0] < 2100 and seg.rows[-1] > 18_000  # west is 'other'
    # each segment binned over its own values: north's amounts, a tenth of the population's range, get every bin
    north, whole = seg.features["claimed_amount"][0], fitted.features["claimed_amount"]
    assert north.max - north.min < (whole.max - whole.min) / 3 and len(north.edges) == len(whole.edges)
    assert north.count == seg.rows[0] and sum(north.counts) == north.count
    # a categorical feature keeps the profile's categories: the segments' counts add up to the whole
    region = np.array([c.counts for c in seg.features["region"]])
    assert region.sum(axis=0).tolist() == list(fitted.features["region"].counts)
    assert [c.count for c in seg.features["vehicle_age"]] == list(seg.rows)


def test_one_region_drifts_and_the_population_does_not(conn, db_url, fitted):
    insert_rows(conn, rows(45_000, seed=2, north_shift=300.0))
    conn.commit()
    report = run_interval(db_url, config(), WINDOW_START, WINDOW_END)
    assert report.drift_status == "no_drift", report.reasons
    assert conn.execute("SELECT count(*) FROM monitoring.feature_drift WHERE segment = 'all'"
                        " AND status = 'drift_detected'").fetchone()[0] == 0
    segments = segment_rows(conn)
    assert set(segments) == {"region=north", "region=south", "region=east", "region=tiny", "region=other"}
    status, extra = segments["region=north"]
    assert status == "drift_detected" and extra["drifted_features"] == ["claimed_amount"]
    assert any("claimed_amount" in r for r in extra["reasons"])
    assert 1100 < extra["rows"] < 1600 and extra["reference_rows"] > 1500
    assert extra["errors"] > 0.1 * extra["rows"] and extra["latency_avg"] == pytest.approx(40.0)
    assert segments["region=tiny"][0] == "too_small" and segments["region=tiny"][1]["drifted_features"] == []
    assert {segments[s][0] for s in ("region=south", "region=east", "region=other")} == {"no_drift"}
    north = conn.execute("SELECT feature, status FROM monitoring.feature_drift WHERE segment = 'region=north'"
                         " ORDER BY feature").fetchall()
    assert north == [("claimed_amount", "drift_detected"), ("region", "no_drift"), ("vehicle_age", "no_drift")]
    # Dynatrace: one status series per judged segment
    cfg = config(dynatrace={"enabled": True})
    with conn.transaction():
        lines = build_interval_lines(conn, cfg, WINDOW_START, WINDOW_END, "1").lines
    levels = {dict(line.dimensions)["segment"]: line.payload for line in lines
              if line.key.endswith("segment.drift.status")}
    assert levels.keys() == {"region=north", "region=south", "region=east", "region=other"}
    assert levels["region=north"] == "gauge,2" and levels["region=south"] == "gauge,0"


def test_both_modes_and_feature_groups_store_the_same_segments(conn, db_url, fitted):
    insert_rows(conn, rows(40_000, seed=3, north_shift=300.0))
    conn.commit()
    run_interval(db_url, config(), WINDOW_START, WINDOW_END)
    memory, memory_segments = stored(conn), segment_rows(conn)
    run_interval(db_url, config("database"), WINDOW_START, WINDOW_END)
    assert_same_results(memory, stored(conn))
    database_segments = segment_rows(conn)
    assert database_segments.keys() == memory_segments.keys()
    for name, (status, extra) in memory_segments.items():
        other_status, other_extra = database_segments[name]
        assert other_status == status
        assert {k: v for k, v in other_extra.items() if k != "latency_avg"} == \
            {k: v for k, v in extra.items() if k != "latency_avg"}
        assert other_extra["latency_avg"] == pytest.approx(extra["latency_avg"])
    grouped = config(scale_out={"feature_group_size": 1})
    now = datetime.now(timezone.utc)
    partials = [summarise_group(db_url, grouped, i, WINDOW_START, WINDOW_END, now=now) for i in range(3)]
    run_interval(db_url, grouped, WINDOW_START, WINDOW_END, now=now, groups=partials)
    assert_same_results(memory, stored(conn))
    assert {k: v[0] for k, v in segment_rows(conn).items()} == {k: v[0] for k, v in memory_segments.items()}


def test_a_window_that_failed_quality_has_no_segment_verdicts(conn, db_url, fitted):
    insert_rows(conn, rows(500, seed=4, north_shift=300.0))
    conn.commit()
    strict = config(quality={"enabled": True, "row_count": {"min": 10_000}})
    report = run_interval(db_url, strict, WINDOW_START, WINDOW_END)
    assert report.drift_status == "skipped" and segment_rows(conn) == {}


def test_top_k_keeps_the_most_frequent_values_and_pools_the_rest():
    raw = pd.Series(["a"] * 5 + ["b"] * 3 + ["c"] * 2 + [None] * 4 + [7.0])
    assert choose_values(raw, "x", {}, 2) == ("a", "b", OTHER_SEGMENT)
    assert choose_values(raw, "x", {"x": ("c",)}, 2) == ("c", OTHER_SEGMENT)
    assert choose_values(raw, "x", {}, 10) == ("a", "b", "c", "7", OTHER_SEGMENT)


def test_a_segment_column_must_be_a_categorical_feature():
    with pytest.raises(ValueError, match="segments.columns: not a configured categorical feature: \\['channel'\\]"):
        make_config(segments={"columns": ["channel"]})
    with pytest.raises(ValueError, match="'other' is the pool"):
        make_config(segments={"columns": ["region"], "values": {"region": ["other"]}})
    with pytest.raises(ValueError, match="retraining.segment_drift: needs `segments.columns`"):
        make_config(retraining={"segment_drift": True})
    with pytest.raises(ValueError, match="retraining.performance_drop: needs `performance.estimation.enabled`"):
        make_config(retraining={"performance_drop": True})


def test_performance_realised_and_estimated_per_segment(conn, db_url):
    """Labels are the claimed amounts and the model always predicts 2000: its error differs by region, and
    north's shift moves its own error only."""
    create_inference_table(conn)
    conn.execute("CREATE TABLE public.labels (request_id text, label float8)")
    conn.commit()
    cfg = config(labels={"table": "public.labels"}, performance={"estimation": {"enabled": True}}, kpis=[])
    reference = pd.DataFrame(rows(60_000, seed=1, start=WINDOW_START - timedelta(days=30), prefix="t"),
                             columns=COLUMNS)
    fit_and_store(db_url, cfg, frame=reference.assign(label=reference["claimed_amount"]))
    window = rows(45_000, seed=5, north_shift=300.0)
    insert_rows(conn, window)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.labels VALUES (%s, %s)", [(r[0], r[2]) for r in window])
    conn.commit()
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    assert recompute_recent(db_url, cfg, WINDOW_END)["windows"] == 1
    mae = {(r[0], r[1]): r[2] for r in conn.execute(
        "SELECT segment, estimated, value FROM monitoring.model_performance WHERE metric = 'mae'")}
    truth = {region: float(np.mean([abs(2000.0 - r[2]) for r in window if r[4] == region]))
             for region in ("north", "south")}
    assert mae[("region=north", False)] == pytest.approx(truth["north"])
    assert mae[("region=south", False)] == pytest.approx(truth["south"])
    # the estimate follows each region's own error level, from the predictions and features alone
    assert mae[("region=north", True)] == pytest.approx(truth["north"], rel=0.15)
    assert mae[("region=south", True)] == pytest.approx(truth["south"], rel=0.05)
    assert {s for s, estimated in mae if estimated} == {"all", "region=north", "region=south", "region=east",
                                                        "region=tiny", "region=other"}


def test_the_demos_west_region_drifts_alone(conn, db_url):
    """A 24-hour demo scenario: hours 1-2 raise the policy tenure of the west region's claims only."""
    seed_and_fit(conn, db_url, hours=24, rows_per_hour=2000)
    cfg = demo_config()
    start = END - timedelta(hours=24)
    for hour in range(4):
        run_interval(db_url, cfg, start + timedelta(hours=hour), start + timedelta(hours=hour + 1))
    statuses = dict(conn.execute("SELECT window_start, drift_status FROM monitoring.interval_runs").fetchall())
    assert all(statuses[start + timedelta(hours=h)] != "drift_detected" for h in range(4)), statuses
    hidden = segment_only_windows(conn, cfg.endpoint_id)
    assert [(end, segment, features) for end, segment, features in hidden] == [
        (start + timedelta(hours=2), "region=west", ["policy_tenure"]),
        (start + timedelta(hours=3), "region=west", ["policy_tenure"])]
    west = conn.execute("SELECT window_start, status FROM monitoring.app_results WHERE metric = 'region=west'"
                        " ORDER BY 1").fetchall()
    assert [s for _, s in west][0] != "drift_detected" and [s for _, s in west][3] != "drift_detected"
    # the retraining policy reads the stored segment verdicts when `retraining.segment_drift` is on
    window = (start + timedelta(hours=2), start + timedelta(hours=3))
    assert not decide_and_record(conn, cfg, *window, "run").trigger
    decision = decide_and_record(conn, demo_config(retraining={"segment_drift": True}), *window, "run")
    assert decision.trigger and decision.reasons[0].endswith("drifted segments: region=west")
    assert decision.evidence["segments"][-2:] == [[(start + timedelta(hours=2)).isoformat(), ["region=west"]],
                                                  [window[1].isoformat(), ["region=west"]]]
    conn.commit()
    stored = conn.execute("SELECT outcome, reasons FROM monitoring.retraining_events WHERE window_end = %s",
                          (window[1],)).fetchone()
    assert stored == ("trigger", decision.reasons)
