"""`mlmon init-demo`: the first start of the compose stack, so the monitoring loop has everything it needs.

Fills the demo's training table, writes a few quiet hours of history (labels included) into an empty
inference log, fits the reference profile of the model in service, and computes the seeded windows, so
the dashboards and `mlmon status` show drift, quality and performance before the first scheduled run.
Each step is skipped when its data is already there: running it again (every `docker compose up`)
changes nothing, and never touches the live traffic written since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import sql

from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.demo.claims_model import (
    CATEGORICAL_FEATURES,
    LABEL_COLUMN,
    MODEL_DRAW,
    NUMERIC_FEATURES,
    ClaimsModel,
    make_training_data,
    train,
)
from monitoring_lib.demo.scenario import Quiet, Scenario, current_hour
from monitoring_lib.demo.seed import (
    INFERENCE_TABLE,
    LABELS_TABLE,
    SCHEMA,
    TRAINING_TABLE,
    create_source_tables,
    load_frame,
)
from monitoring_lib.demo.simulator import generate_inference, generate_labels
from monitoring_lib.performance import recompute_recent
from monitoring_lib.reference import fit_and_store, read_training_data
from monitoring_lib.results.endpoints import current_version, ensure_endpoint
from monitoring_lib.results.profiles import load_active_profile
from monitoring_lib.results.view import has_windows
from monitoring_lib.runner import run_interval
from monitoring_lib.schedule import windows

TRAINING_ROWS = 20_000
TRAINING_SEED = 42
HISTORY_HOURS = 6
TRAINING_HISTORY = timedelta(days=14)


@dataclass(frozen=True)
class InitReport:
    """What this run wrote (zero / None where the data was already there)."""

    training_rows: int
    inference_rows: int
    label_rows: int
    reference_version: int | None
    model_version: str
    windows: int


def demo_model() -> ClaimsModel:
    """The model in service for the demo: the same deterministic fit for the seed and the live traffic."""
    return train(make_training_data(TRAINING_ROWS, TRAINING_SEED + MODEL_DRAW), numeric_features=NUMERIC_FEATURES,
                 categorical_features=CATEGORICAL_FEATURES, label_column=LABEL_COLUMN)


def live_scenario() -> Scenario:
    """Live traffic from the training population: no drift until the world changes."""
    return Scenario(phases=(Quiet(name="live", start_hour=0),))


def _count(conn, table: str) -> int:  # noqa: ANN001
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, table))).fetchone()[0]


def _seed_training(conn, end: datetime) -> int:  # noqa: ANN001
    if _count(conn, TRAINING_TABLE):
        return 0
    training = make_training_data(TRAINING_ROWS, TRAINING_SEED)
    step = TRAINING_HISTORY / TRAINING_ROWS
    training.insert(0, "ts", [end - TRAINING_HISTORY + i * step for i in range(TRAINING_ROWS)])
    return load_frame(conn, f"{SCHEMA}.{TRAINING_TABLE}", training)


def _seed_history(conn, model: ClaimsModel, end: datetime, now: datetime, rows_per_hour: int) -> tuple[int, int]:  # noqa: ANN001
    """Quiet hours before `end`, only into an empty inference log (never over live traffic)."""
    if _count(conn, INFERENCE_TABLE):
        return 0, 0
    scenario = live_scenario()
    inference = generate_inference(scenario, model, end=end, hours=HISTORY_HOURS, rows_per_hour=rows_per_hour,
                                   seed=TRAINING_SEED)
    labels = generate_labels(inference, seed=TRAINING_SEED + 1, delay_hours=scenario.label_delay_hours,
                             landed_by=now)
    return (load_frame(conn, f"{SCHEMA}.{INFERENCE_TABLE}", inference),
            load_frame(conn, f"{SCHEMA}.{LABELS_TABLE}", labels))


def _fit_reference(url: str, cfg: EndpointConfig, model: ClaimsModel) -> tuple[int | None, str]:
    """Fit from the training table unless the model in service already has an active profile."""

    with connect(url) as conn:
        version = current_version(conn, cfg.endpoint_id)
        if version is None:  # registered once; a later start leaves the row (and the version in service) alone
            version = ensure_endpoint(conn, cfg)
            conn.commit()
        if load_active_profile(conn, cfg.endpoint_id, version) is not None:
            return None, version
    training, _ = read_training_data(url, table=f"{SCHEMA}.{TRAINING_TABLE}")
    training[cfg.source.prediction_column] = model.predict(training)
    return fit_and_store(url, cfg, frame=training, model_version=version).version, version


def _compute_history(url: str, cfg: EndpointConfig, end: datetime) -> int:
    """On first start (no window stored yet), compute the seeded hours and their performance."""

    with connect(url) as conn:
        done = has_windows(conn, cfg.endpoint_id)
    if done:
        return 0
    todo = windows(end - timedelta(hours=HISTORY_HOURS), end, cfg.schedule.interval)
    for start, stop in todo:
        run_interval(url, cfg, start, stop)
    recompute_recent(url, cfg, end)
    return len(todo)


def init_demo(url: str, cfg: EndpointConfig, *, now: datetime | None = None, rows_per_hour: int = 2000) -> InitReport:
    """Everything the demo endpoint needs on first start; safe to run on every start."""
    now = now or datetime.now(UTC)
    end = current_hour(now)
    model = demo_model()
    with connect(url) as conn:
        create_source_tables(conn)
        with conn.transaction():
            training_rows = _seed_training(conn, end - timedelta(hours=HISTORY_HOURS))
            inference_rows, label_rows = _seed_history(conn, model, end, now, rows_per_hour)
        conn.commit()
    reference_version, model_version = _fit_reference(url, cfg, model)
    computed = _compute_history(url, cfg, end)
    return InitReport(training_rows, inference_rows, label_rows, reference_version, model_version, computed)


def describe(report: InitReport) -> str:
    parts = [
        f"training rows written: {report.training_rows or 'none (table already filled)'}",
        f"history: {report.inference_rows} predictions, {report.label_rows} labels"
        if report.inference_rows else "history: none (the inference log already has rows)",
        f"reference profile v{report.reference_version} fitted for model version {report.model_version}"
        if report.reference_version else f"reference profile: model version {report.model_version} already has one",
        f"windows computed: {report.windows}",
    ]
    return "; ".join(parts)

