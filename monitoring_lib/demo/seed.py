"""Write the demo's source tables: training set, inference log and the labels that have landed.

Seeding is idempotent: a period written again replaces its own rows (inference rows by time window,
labels by request id, the training set as a whole), so re-running the demo never duplicates data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from monitoring_lib.demo.claims_model import (
    CATEGORICAL_FEATURES,
    LABEL_COLUMN,
    MODEL_DRAW,
    NUMERIC_FEATURES,
    ClaimsModel,
    make_training_data,
    train,
)
from monitoring_lib.demo.scenario import Scenario, default_scenario, period
from monitoring_lib.demo.simulator import LABEL_COLUMNS, generate_inference, generate_labels

SCHEMA = "public"
INFERENCE_TABLE = "claims_inference"
LABELS_TABLE = "claims_labels"
TRAINING_TABLE = "claims_training"
TRAINING_HISTORY = timedelta(days=14)

_FEATURE_COLUMNS = [
    *(sql.SQL("{} double precision").format(sql.Identifier(c)) for c in NUMERIC_FEATURES),
    *(sql.SQL("{} text").format(sql.Identifier(c)) for c in CATEGORICAL_FEATURES),
]


@dataclass(frozen=True)
class SeedReport:
    """What one seeding run wrote, and the model whose predictions are in the inference log."""

    start: datetime
    end: datetime
    training_rows: int
    inference_rows: int
    label_rows: int
    labels_pending: int
    model: ClaimsModel


def _table(name: str, schema: str = SCHEMA) -> sql.Identifier:
    return sql.Identifier(schema, name)


def _qualified(table: str) -> sql.Identifier:
    """'schema.table' or 'table' as an identifier, each part quoted."""
    return sql.Identifier(*table.split(".", 1))


def create_source_tables(conn: psycopg.Connection, *, schema: str = SCHEMA) -> None:
    """Create the inference log (indexed by time and request id), labels and training tables if missing."""
    features = sql.SQL(", ").join(_FEATURE_COLUMNS)
    inference = _table(INFERENCE_TABLE, schema)
    statements = [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (request_id text NOT NULL, ts timestamptz NOT NULL, {},"
            " prediction double precision, latency_ms double precision,"
            " error boolean NOT NULL DEFAULT false, savings double precision)"
        ).format(inference, features),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (ts)").format(
            sql.Identifier(f"{INFERENCE_TABLE}_ts"), inference
        ),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (request_id)").format(
            sql.Identifier(f"{INFERENCE_TABLE}_request_id"), inference
        ),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (request_id text PRIMARY KEY,"
            " {} double precision NOT NULL, labelled_at timestamptz NOT NULL)"
        ).format(_table(LABELS_TABLE, schema), sql.Identifier(LABEL_COLUMN)),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (labelled_at)").format(
            sql.Identifier(f"{LABELS_TABLE}_labelled_at"), _table(LABELS_TABLE, schema)
        ),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (ts timestamptz NOT NULL, {}, {} double precision NOT NULL)"
        ).format(_table(TRAINING_TABLE, schema), features, sql.Identifier(LABEL_COLUMN)),
    ]
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)


def _python_values(series: pd.Series) -> list[object]:
    """Column values as Python objects with None for missing (NaN/NaT/NA); infinities are kept."""
    missing = series.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = list(series.astype(object))  # Timestamps, which psycopg dumps as datetimes
    elif isinstance(series.dtype, np.dtype):
        values = series.to_numpy().tolist()  # native float/int/bool
    else:
        values = series.astype(object).tolist()
    if missing.any():
        for i in np.flatnonzero(missing):
            values[i] = None
    return values


def load_frame(conn: psycopg.Connection, table: str, df: pd.DataFrame) -> int:
    """Append `df` to `table` ('schema.table' or 'table') with COPY; columns are matched by name."""
    if df.empty:
        return 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        _qualified(table), sql.SQL(", ").join(sql.Identifier(str(c)) for c in df.columns)
    )
    columns = [_python_values(df[c]) for c in df.columns]
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in zip(*columns, strict=True):
            copy.write_row(row)
    return len(df)


def _upsert_labels(conn: psycopg.Connection, labels: pd.DataFrame, schema: str) -> None:
    """Labels are keyed by request id: stage with COPY, then insert-or-replace."""
    stage = sql.Identifier("claims_labels_stage")
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(stage, _table(LABELS_TABLE, schema))
    )
    load_frame(conn, "claims_labels_stage", labels)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in LABEL_COLUMNS)
    updates = sql.SQL(", ").join(
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in LABEL_COLUMNS[1:]
    )
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT (request_id) DO UPDATE SET {}").format(
            _table(LABELS_TABLE, schema), columns, columns, stage, updates
        )
    )
    conn.execute(sql.SQL("DROP TABLE {}").format(stage))  # the caller's transaction may not commit yet


def seed_demo(
    conn: psycopg.Connection,
    *,
    end: datetime,
    hours: int,
    rows_per_hour: int,
    seed: int,
    now: datetime | None = None,
    training_rows: int = 20_000,
    scenario: Scenario | None = None,
    schema: str = SCHEMA,
) -> SeedReport:
    """Train the demo model on pre-drift data, simulate [end - hours, end) and write it all in one
    transaction (committed unless the caller already has one open). Labels are written only if they
    have landed by `now` (default: the wall clock)."""
    scenario = scenario or default_scenario(hours)
    start, end = period(end, hours)
    now = now or datetime.now(UTC)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)

    training = make_training_data(training_rows, seed)
    model = train(
        make_training_data(training_rows, seed + MODEL_DRAW),
        numeric_features=NUMERIC_FEATURES,
        categorical_features=CATEGORICAL_FEATURES,
        label_column=LABEL_COLUMN,
    )
    # The training set is history from before the period, spread over the preceding two weeks.
    history_us = np.random.default_rng(seed + 2).integers(0, int(TRAINING_HISTORY / timedelta(microseconds=1)),
                                                      training_rows)
    training.insert(0, "ts", pd.Timestamp(start - TRAINING_HISTORY) + pd.to_timedelta(np.sort(history_us),
                                                                                       unit="us"))
    inference = generate_inference(scenario, model, end=end, hours=hours, rows_per_hour=rows_per_hour, seed=seed)
    all_labels = generate_labels(inference, seed=seed + 1, delay_hours=scenario.label_delay_hours)
    landed = all_labels[all_labels["labelled_at"] <= pd.Timestamp(now)]

    create_source_tables(conn, schema=schema)
    inference_table, labels_table = _table(INFERENCE_TABLE, schema), _table(LABELS_TABLE, schema)
    with conn.transaction():
        conn.execute(
            sql.SQL("DELETE FROM {} l USING {} i WHERE l.request_id = i.request_id"
                    " AND i.ts >= %s AND i.ts < %s").format(labels_table, inference_table),
            (start, end),
        )
        conn.execute(sql.SQL("DELETE FROM {} WHERE ts >= %s AND ts < %s").format(inference_table), (start, end))
        conn.execute(sql.SQL("DELETE FROM {}").format(_table(TRAINING_TABLE, schema)))
        load_frame(conn, f"{schema}.{TRAINING_TABLE}", training)
        load_frame(conn, f"{schema}.{INFERENCE_TABLE}", inference)
        _upsert_labels(conn, landed, schema)
    return SeedReport(
        start=start,
        end=end,
        training_rows=len(training),
        inference_rows=len(inference),
        label_rows=len(landed),
        labels_pending=len(all_labels) - len(landed),
        model=model,
    )
