"""Generate a period of inference traffic and its late labels from a scenario, vectorised and seeded.

Predictions come from the real trained model on the features as logged (after any incident
corrupted them), because that is what a serving endpoint would have seen and returned.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Protocol

import numpy as np
import pandas as pd

from monitoring_lib.demo.claims_model import LABEL_COLUMN, NUMERIC_FEATURES, sample_claims, settle
from monitoring_lib.demo.scenario import (
    FeatureShift,
    GradualDrift,
    LatencySpike,
    Phase,
    QualityIncident,
    RelationBreak,
    Scenario,
    SegmentShift,
    SuddenShift,
    period,
)

INFERENCE_COLUMNS: tuple[str, ...] = (
    "request_id",
    "ts",
    *NUMERIC_FEATURES,
    "region",
    "claim_type",
    "prediction",
    "latency_ms",
    "error",
    "savings",
)
LABEL_COLUMNS: tuple[str, ...] = ("request_id", LABEL_COLUMN, "labelled_at")
_HOUR_US = 3_600_000_000


class Predictor(Protocol):
    def predict(self, df: pd.DataFrame) -> np.ndarray: ...


@lru_cache(maxsize=1)
def reference_moments() -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each numeric feature in the pre-drift population."""
    sample = sample_claims(50_000, np.random.default_rng(20_240_501))
    return {c: (float(sample[c].mean()), float(sample[c].std())) for c in NUMERIC_FEATURES}


def hourly_counts(start: datetime, hours: int, rows_per_hour: int, scenario: Scenario,
                  rng: np.random.Generator) -> np.ndarray:
    """Rows per hour following a daily cycle (peak at `peak_hour_utc`) with Poisson noise."""
    hour_of_day = (start.hour + np.arange(hours)) % 24
    cycle = 1.0 + scenario.daily_amplitude * np.cos(2 * np.pi * (hour_of_day - scenario.peak_hour_utc) / 24)
    return rng.poisson(rows_per_hour * cycle).astype(np.int64)


def _apply_shift(df: pd.DataFrame, mask: np.ndarray, shift: FeatureShift) -> None:
    values = df[shift.feature].to_numpy(dtype=float, copy=True)
    values[mask] = values[mask] * shift.scale + shift.add
    df[shift.feature] = values


def _pick(rng: np.random.Generator, candidates: np.ndarray, share: float) -> np.ndarray:
    count = int(round(share * len(candidates)))
    return rng.choice(candidates, size=count, replace=False) if count else candidates[:0]


def _corrupt(df: pd.DataFrame, hour: np.ndarray, incident: QualityIncident, rng: np.random.Generator,
             latency: np.ndarray) -> np.ndarray:
    """Apply one incident in place; returns the row positions to log twice (retried requests)."""
    rows = np.flatnonzero(_covered(hour, incident))
    for column in incident.null_features:
        values = df[column].to_numpy(dtype=float, copy=True)
        values[_pick(rng, rows, incident.null_share)] = np.nan
        df[column] = values
    values = df[incident.inf_feature].to_numpy(dtype=float, copy=True)
    values[_pick(rng, rows, incident.inf_share)] = np.inf
    df[incident.inf_feature] = values
    for shift in incident.out_of_range:
        mask = np.zeros(len(df), dtype=bool)
        mask[_pick(rng, rows, incident.out_of_range_share)] = True
        _apply_shift(df, mask, shift)
    unseen = df[incident.unseen_feature].to_numpy(dtype=object, copy=True)
    unseen[_pick(rng, rows, incident.unseen_share)] = incident.unseen_category
    df[incident.unseen_feature] = pd.array(unseen, dtype="str")
    latency[_pick(rng, rows, incident.negative_latency_share)] = -1.0
    return np.sort(_pick(rng, rows, incident.duplicate_share))


def _covered(hour: np.ndarray, phase: Phase) -> np.ndarray:
    """Per row: is the row's hour inside `phase`?"""
    by_hour = np.array([phase.covers(h) for h in range(int(hour.max(initial=-1)) + 1)], dtype=bool)
    return by_hour[hour]


def _shift_population(df: pd.DataFrame, scenario: Scenario, hour: np.ndarray, offset_us: np.ndarray) -> None:
    """Apply drift and shift phases in place: who files claims changes, the data stays valid."""
    moments = reference_moments()
    for phase in scenario.phases:
        if isinstance(phase, GradualDrift):
            mean, std = moments[phase.feature]
            progress = np.clip((offset_us / _HOUR_US - phase.start_hour) / phase.ramp_hours, 0.0, 1.0)
            progress[~_covered(hour, phase)] = 0.0
            df[phase.feature] = (df[phase.feature] * (1.0 + progress * phase.shift_std * std / mean)).round(2)
        elif isinstance(phase, SuddenShift):
            for shift in phase.shifts:
                _apply_shift(df, _covered(hour, phase), shift)
        elif isinstance(phase, SegmentShift):
            mask = _covered(hour, phase) & (df[phase.column].astype(str).to_numpy() == phase.value)
            for shift in phase.shifts:
                _apply_shift(df, mask, shift)
        elif isinstance(phase, RelationBreak):
            rows = np.flatnonzero(_covered(hour, phase))
            # its own stream: the draws of every other phase stay as they were without this one
            shuffled = np.random.default_rng([phase.start_hour, len(rows)]).permutation(rows)
            df.loc[rows, phase.feature] = df[phase.feature].to_numpy()[shuffled]


def _service(scenario: Scenario, hour: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Latency (ms) and error flag per request; spikes slow everything down and time some requests out."""
    total = len(hour)
    latency = rng.lognormal(np.log(scenario.base_latency_ms), scenario.latency_sigma, total)
    error = rng.random(total) < scenario.base_error_rate
    for phase in scenario.phases:
        if isinstance(phase, LatencySpike):
            spike = _covered(hour, phase)
            latency[spike] *= phase.latency_factor * rng.lognormal(0.0, 0.3, int(spike.sum()))
            timed_out = spike & (rng.random(total) < phase.error_rate)
            error |= timed_out
            latency[timed_out] = phase.timeout_ms * rng.uniform(1.0, 1.5, int(timed_out.sum()))
    return latency, error


def _request_ids(start: datetime, hours: int, counts: np.ndarray, hour: np.ndarray) -> pd.Series:
    """`clm-<YYYYMMDDHH>-<nnnnnn>`: stable for a given hour, so re-seeding a period reuses the same ids."""
    position = np.arange(len(hour)) - np.repeat(np.cumsum(counts) - counts, counts)
    hour_label = pd.Series(pd.date_range(start, periods=hours, freq="h").strftime("%Y%m%d%H"))
    ids = "clm-" + hour_label.iloc[hour].reset_index(drop=True) + "-" + pd.Series(position).astype(str).str.zfill(6)
    return ids.astype("str")


def generate_inference(
    scenario: Scenario,
    model: Predictor,
    *,
    end: datetime,
    hours: int,
    rows_per_hour: int,
    seed: int,
) -> pd.DataFrame:
    """One row per logged request in [end - hours, end), ordered by `ts`, with the model's predictions.

    Errored requests have no prediction (and so no savings). The same arguments give the same frame.
    """
    rng = np.random.default_rng(seed)
    start, end = period(end, hours)
    counts = hourly_counts(start, hours, rows_per_hour, scenario, rng)
    total = int(counts.sum())
    hour = np.repeat(np.arange(hours), counts)
    within = rng.integers(0, _HOUR_US, total)
    within = within[np.lexsort((within, hour))]  # rows are grouped by hour already: sort inside each
    offset_us = hour.astype(np.int64) * _HOUR_US + within

    df = sample_claims(total, rng)
    _shift_population(df, scenario, hour, offset_us)
    latency, error = _service(scenario, hour, rng)
    duplicates = [_corrupt(df, hour, p, rng, latency) for p in scenario.phases if isinstance(p, QualityIncident)]

    prediction = np.full(total, np.nan)
    served = ~error
    prediction[served] = np.round(model.predict(df.loc[served]), 2)
    claimed = df["claimed_amount"].to_numpy(dtype=float)

    out = pd.DataFrame(
        {
            "request_id": _request_ids(start, hours, counts, hour),
            "ts": pd.Timestamp(start) + pd.to_timedelta(offset_us, unit="us"),
        }
    )
    out = pd.concat([out, df], axis=1)
    out["prediction"] = prediction
    out["latency_ms"] = np.round(latency, 3)
    out["error"] = error
    with np.errstate(invalid="ignore"):
        out["savings"] = np.round(np.clip(claimed - prediction, 0.0, None), 2)

    repeat = np.concatenate(duplicates) if duplicates else np.empty(0, dtype=np.int64)
    if len(repeat):
        again = out.iloc[repeat].copy()
        # A retry is logged a few seconds after the original, still inside the same hour.
        delay = pd.to_timedelta(rng.integers(1_000_000, 30_000_000, len(repeat)), unit="us")
        hour_end = pd.Timestamp(start) + pd.to_timedelta(hour[repeat] + 1, unit="h") - pd.Timedelta(1, "us")
        again["ts"] = np.minimum(again["ts"] + delay, hour_end)
        out = pd.concat([out, again], ignore_index=True)
    out = out.sort_values(["ts", "request_id"], kind="stable", ignore_index=True)
    out["ts"] = out["ts"].astype("datetime64[us, UTC]")
    return out[list(INFERENCE_COLUMNS)]


def generate_labels(
    inference: pd.DataFrame,
    *,
    seed: int,
    delay_hours: tuple[float, float] = (2.0, 6.0),
    landed_by: datetime | None = None,
) -> pd.DataFrame:
    """The settled amount of each served request, landing `delay_hours` after the prediction.

    One label per request id (retries share one claim). Errored requests went to manual handling and
    get no label. With `landed_by`, only labels that have arrived by then are returned.
    """
    rng = np.random.default_rng(seed)
    served = inference[~inference["error"].astype(bool)].drop_duplicates("request_id", keep="first")
    low, high = delay_hours
    delay_us = (rng.uniform(low, high, len(served)) * _HOUR_US).astype(np.int64)
    labels = pd.DataFrame(
        {
            "request_id": served["request_id"].to_numpy(),
            LABEL_COLUMN: settle(served.reset_index(drop=True), rng),
            "labelled_at": (served["ts"] + pd.to_timedelta(delay_us, unit="us")).to_numpy(),
        }
    )
    labels["labelled_at"] = labels["labelled_at"].astype("datetime64[us, UTC]")
    if landed_by is not None:
        landed = pd.Timestamp(landed_by)
        landed = landed.tz_localize("UTC") if landed.tzinfo is None else landed.tz_convert("UTC")
        labels = labels[labels["labelled_at"] <= landed].reset_index(drop=True)
    return labels[list(LABEL_COLUMNS)]
