"""Small synthetic inference logs written to a real PostgreSQL, for tests that need a source table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
from psycopg import sql

from monitoring_lib.config import EndpointConfig

WINDOW_START = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
WINDOW_END = WINDOW_START + timedelta(hours=1)


def make_config(**overrides: object) -> EndpointConfig:
    data: dict = {
        "endpoint_id": "claims-test",
        "project": "insurance-claims",
        "model": {"name": "claims_model", "version": "1", "class": "sklearn.ensemble.HistGradientBoostingRegressor",
                  "function_uri": "insurance-claims/serve"},
        "source": {"table": "public.inference", "timestamp_column": "ts", "request_id_column": "request_id",
                   "numeric_features": ["claimed_amount", "vehicle_age"], "categorical_features": ["region"],
                   "prediction_column": "prediction", "latency_column": "latency_ms", "error_column": "error"},
        "quality": {"enabled": False},
        "dynatrace": {"enabled": False},
        "kpis": [{"name": "total_claimed_amount", "column": "claimed_amount", "agg": "sum"}],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return EndpointConfig.model_validate(data)


def create_inference_table(
    conn: psycopg.Connection, table: str = "inference", vehicle_age_type: str = "double precision"
) -> None:
    conn.execute(sql.SQL(
        "CREATE TABLE {} (request_id text, ts timestamptz, claimed_amount double precision, vehicle_age {},"
        " region text, prediction double precision, latency_ms double precision, error boolean)"
    ).format(sql.Identifier(table), sql.SQL(vehicle_age_type)))


def insert_rows(conn: psycopg.Connection, rows: list[tuple], table: str = "inference") -> None:
    with conn.cursor() as cur, cur.copy(sql.SQL(
        "COPY {} (request_id, ts, claimed_amount, vehicle_age, region, prediction, latency_ms, error) FROM STDIN"
    ).format(sql.Identifier(table))) as copy:
        for row in rows:
            copy.write_row(row)


def clean_rows(n: int, start: datetime = WINDOW_START, seed: int = 0, prefix: str = "r") -> list[tuple]:
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, 3600, n))
    amounts = rng.lognormal(8, 0.5, n)
    ages = rng.integers(0, 20, n).astype(float)
    regions = rng.choice(["north", "south", "east", "west"], n)
    latency = rng.gamma(2.0, 20.0, n)
    errors = rng.random(n) < 0.02
    return [
        (f"{prefix}{i}", start + timedelta(seconds=float(offsets[i])), float(amounts[i]), float(ages[i]),
         str(regions[i]), None if errors[i] else float(amounts[i] * 0.8), float(latency[i]), bool(errors[i]))
        for i in range(n)
    ]


def seed_source(conn: psycopg.Connection, n: int = 600) -> list[tuple]:
    create_inference_table(conn)
    rows = clean_rows(n)
    # rows just outside the window must never be read
    rows += [("before", WINDOW_START - timedelta(microseconds=1), 1.0, 1.0, "north", 1.0, 1.0, False),
             ("at-end", WINDOW_END, 1.0, 1.0, "north", 1.0, 1.0, False)]
    insert_rows(conn, rows)
    conn.commit()
    return rows
