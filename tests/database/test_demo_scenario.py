"""The demo scenario: its config, its model, the story the traffic tells, and idempotent seeding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql
from sklearn.metrics import r2_score

from monitoring_lib.config import load_endpoint_config
from monitoring_lib.demo.claims_model import (
    CATEGORICAL_FEATURES,
    LABEL_COLUMN,
    NUMERIC_FEATURES,
    ClaimsModel,
    make_training_data,
    train,
)
from monitoring_lib.demo.scenario import (
    GradualDrift,
    LatencySpike,
    QualityIncident,
    RelationBreak,
    SuddenShift,
    default_scenario,
    period,
)
from monitoring_lib.demo.seed import seed_demo
from monitoring_lib.demo.simulator import INFERENCE_COLUMNS, generate_inference, generate_labels

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "claims-approved-amount.yaml"
END = datetime(2026, 11, 20, 12, tzinfo=UTC)
HOURS = 12
ROWS = 250


@pytest.fixture(scope="module")
def model() -> ClaimsModel:
    return train(
        make_training_data(5_000, seed=3),
        numeric_features=NUMERIC_FEATURES,
        categorical_features=CATEGORICAL_FEATURES,
        label_column=LABEL_COLUMN,
    )


@pytest.fixture(scope="module")
def traffic(model: ClaimsModel) -> pd.DataFrame:
    df = generate_inference(default_scenario(HOURS), model, end=END, hours=HOURS, rows_per_hour=ROWS, seed=11)
    start, _ = period(END, HOURS)
    return df.assign(hour=((df["ts"] - pd.Timestamp(start)) // pd.Timedelta(hours=1)).astype(int))


def test_config_file_loads_and_matches_the_demo_tables():
    cfg = load_endpoint_config(CONFIG)
    assert cfg.endpoint_id == "claims-approved-amount"
    assert cfg.source.table == "public.claims_inference"
    assert set(cfg.source.numeric_features) == set(NUMERIC_FEATURES)
    assert set(cfg.source.categorical_features) == set(CATEGORICAL_FEATURES)
    assert set(cfg.source.columns()) <= set(INFERENCE_COLUMNS)
    assert {k.column for k in cfg.kpis} <= set(INFERENCE_COLUMNS)
    assert cfg.labels is not None and cfg.labels.label_column == LABEL_COLUMN
    assert cfg.retraining.training_callable == "monitoring_lib.demo.claims_model:train"
    assert cfg.quality.on_failure == "skip_drift"
    assert cfg.dynatrace.features == ("claimed_amount", "vehicle_age")


def test_model_predicts_holdout_well_and_round_trips_as_bytes(model: ClaimsModel):
    holdout = make_training_data(2_000, seed=99)
    predictions = model.predict(holdout)
    assert r2_score(holdout[LABEL_COLUMN], predictions) > 0.7
    assert (predictions >= 0).all()
    restored = ClaimsModel.from_bytes(model.to_bytes())
    np.testing.assert_array_equal(restored.predict(holdout), predictions)
    assert model.model_class == load_endpoint_config(CONFIG).model.model_class


def test_model_serves_corrupted_rows_without_failing(model: ClaimsModel):
    rows = make_training_data(3, seed=5)
    rows.loc[0, "market_value"] = np.inf
    rows.loc[1, "repair_estimate"] = np.nan
    rows.loc[2, "region"] = "offshore"
    assert np.isfinite(model.predict(rows)).all()


def test_retraining_callable_accepts_logged_traffic_with_its_bad_rows(traffic: pd.DataFrame):
    labelled = traffic.merge(generate_labels(traffic, seed=1), on="request_id", how="left")
    retrained = train(
        labelled,
        numeric_features=list(NUMERIC_FEATURES),
        categorical_features=list(CATEGORICAL_FEATURES),
        label_column=LABEL_COLUMN,
        params={"max_iter": 50},
    )
    assert "offshore" in retrained.categories["region"]
    assert np.isfinite(retrained.predict(traffic)).all()


def test_generation_is_deterministic_and_ends_at_the_requested_hour(model: ClaimsModel, traffic: pd.DataFrame):
    again = generate_inference(default_scenario(HOURS), model, end=END, hours=HOURS, rows_per_hour=ROWS, seed=11)
    pd.testing.assert_frame_equal(again, traffic[list(INFERENCE_COLUMNS)])
    assert list(again.columns) == list(INFERENCE_COLUMNS)
    assert traffic["ts"].min() >= pd.Timestamp(END - timedelta(hours=HOURS))
    assert traffic["ts"].max() < pd.Timestamp(END)
    assert set(traffic["hour"]) == set(range(HOURS))
    assert traffic["ts"].is_monotonic_increasing


def test_gradual_drift_raises_the_claimed_amount(traffic: pd.DataFrame):
    drift = default_scenario(HOURS).phase("claims_inflation")
    assert isinstance(drift, GradualDrift)
    quiet = traffic[traffic["hour"] < drift.start_hour]["claimed_amount"]
    ramped = traffic[traffic["hour"] >= drift.start_hour + drift.ramp_hours]["claimed_amount"]
    ramped = ramped[np.isfinite(ramped) & (ramped > 0)]  # leave the incident's corrupted rows out
    assert ramped.mean() > quiet.mean() + 0.8 * quiet.std()


def test_the_relation_break_keeps_the_claimed_amounts_but_pairs_them_with_the_wrong_claims(model: ClaimsModel):
    scenario = default_scenario(24)
    broken = scenario.phase("mismatched_claims")
    assert isinstance(broken, RelationBreak) and broken.hours == 1 and broken.start_hour == 4
    traffic = generate_inference(scenario, model, end=END, hours=24, rows_per_hour=ROWS, seed=11)
    without = type(scenario)(phases=tuple(p for p in scenario.phases if p.name != "mismatched_claims"))
    intact = generate_inference(without, model, end=END, hours=24, rows_per_hour=ROWS, seed=11)
    start, _ = period(END, 24)
    hour = ((traffic["ts"] - pd.Timestamp(start)) // pd.Timedelta(hours=1)) == broken.start_hour
    same_rows = intact.loc[hour.to_numpy()]
    # the same values, reordered: the marginal is exactly the one the hour would have had
    assert sorted(traffic.loc[hour, "claimed_amount"]) == sorted(same_rows["claimed_amount"])
    assert same_rows["claimed_amount"].corr(same_rows["repair_estimate"]) > 0.8
    assert abs(traffic.loc[hour, "claimed_amount"].corr(traffic.loc[hour, "repair_estimate"])) < 0.3
    # every other hour and column is untouched
    other = ~hour.to_numpy()
    pd.testing.assert_frame_equal(traffic.loc[other, list(INFERENCE_COLUMNS)].reset_index(drop=True),
                                  intact.loc[other].reset_index(drop=True))


def test_a_period_too_short_for_quiet_hours_around_the_break_has_none():
    assert "mismatched_claims" not in {p.name for p in default_scenario(8).phases}
    assert "mismatched_claims" not in {p.name for p in default_scenario(HOURS).phases}
    scenario = default_scenario(36)
    assert scenario.phase("mismatched_claims").start_hour == 6
    assert scenario.phase("claims_inflation").start_hour - 6 >= 3


def test_sudden_shift_makes_vehicles_older_and_cheaper(traffic: pd.DataFrame):
    shift = default_scenario(HOURS).phase("older_fleet")
    assert isinstance(shift, SuddenShift)
    before = traffic[traffic["hour"] == shift.start_hour - 1]
    after = traffic[traffic["hour"] == shift.start_hour]
    assert after["vehicle_age"].median() > before["vehicle_age"].median() + 3
    assert after["market_value"].median() < 0.75 * before["market_value"].median()


def test_incident_hour_has_duplicates_nulls_infinities_and_an_unseen_region(traffic: pd.DataFrame):
    incident = default_scenario(HOURS).phase("data_quality_incident")
    assert isinstance(incident, QualityIncident)
    bad = traffic[traffic["hour"] == incident.start_hour]
    good = traffic[traffic["hour"] != incident.start_hour]
    assert bad["request_id"].duplicated().sum() > 0
    assert bad["repair_estimate"].isna().sum() > 0
    assert np.isinf(bad["market_value"]).sum() > 0
    assert (bad["vehicle_age"] > 100).sum() > 0 and (bad["claimed_amount"] < 0).sum() > 0
    assert (bad["region"] == incident.unseen_category).mean() > 0.05
    assert (bad["latency_ms"] < 0).sum() > 0
    assert not good["request_id"].duplicated().any()
    assert not good[list(NUMERIC_FEATURES)].isna().any().any()
    assert set(good["region"]) <= {"north", "south", "east", "west", "central"}


def test_latency_spike_hour_is_slow_and_errors_have_no_prediction(traffic: pd.DataFrame):
    spike = default_scenario(HOURS).phase("latency_spike")
    assert isinstance(spike, LatencySpike)
    in_spike = traffic["hour"] == spike.start_hour
    normal = ~in_spike & (traffic["latency_ms"] >= 0)
    assert traffic.loc[in_spike, "latency_ms"].median() > 3 * traffic.loc[normal, "latency_ms"].median()
    assert traffic.loc[in_spike, "error"].mean() > 0.03
    assert traffic.loc[in_spike, "error"].mean() > 5 * traffic.loc[~in_spike, "error"].mean()
    assert traffic.loc[traffic["error"], "prediction"].isna().all()
    assert traffic.loc[~traffic["error"], "prediction"].notna().all()
    served = traffic[~traffic["error"] & (traffic["claimed_amount"] >= 0)]
    expected = (served["claimed_amount"] - served["prediction"]).clip(lower=0)
    np.testing.assert_allclose(served["savings"], expected, atol=0.011)


def test_labels_land_hours_later_and_the_last_hours_have_none(traffic: pd.DataFrame):
    labels = generate_labels(traffic, seed=12, landed_by=END)
    assert labels["request_id"].is_unique
    joined = traffic.drop_duplicates("request_id").merge(labels, on="request_id")
    delay = (joined["labelled_at"] - joined["ts"]) / pd.Timedelta(hours=1)
    assert delay.between(2, 6).all()
    assert (labels["labelled_at"] <= pd.Timestamp(END)).all()
    labelled_hours = set(joined["hour"])
    assert {HOURS - 2, HOURS - 1}.isdisjoint(labelled_hours)
    assert set(range(HOURS - 6)) <= labelled_hours
    assert not joined["error"].any()


def _counts(conn: psycopg.Connection) -> tuple[int, int, int]:
    return tuple(
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table))).fetchone()[0]
        for table in ("claims_training", "claims_inference", "claims_labels")
    )


def test_seeding_twice_replaces_rows_instead_of_duplicating(conn: psycopg.Connection):
    kwargs = {"end": END, "hours": 8, "rows_per_hour": 100, "seed": 4, "now": END, "training_rows": 5_000}
    first = seed_demo(conn, **kwargs)
    counts = _counts(conn)
    assert counts == (first.training_rows, first.inference_rows, first.label_rows)
    assert first.label_rows > 0 and first.labels_pending > 0

    second = seed_demo(conn, **kwargs)
    assert _counts(conn) == counts
    assert (second.inference_rows, second.label_rows) == (first.inference_rows, first.label_rows)

    lo, hi, latest_label = conn.execute(
        "SELECT min(ts), max(ts), (SELECT max(labelled_at) FROM public.claims_labels)"
        " FROM public.claims_inference"
    ).fetchone()
    assert lo >= END - timedelta(hours=8) and hi < END and latest_label <= END
    nulls, infinities, errors = conn.execute(
        "SELECT count(*) FILTER (WHERE repair_estimate IS NULL),"
        " count(*) FILTER (WHERE market_value = 'Infinity'::float8),"
        " count(*) FILTER (WHERE error AND prediction IS NULL) FROM public.claims_inference"
    ).fetchone()
    assert nulls > 0 and infinities > 0 and errors > 0
    training_end = conn.execute("SELECT max(ts) FROM public.claims_training").fetchone()[0]
    assert training_end < first.start
