"""The retraining job: train a challenger on recent labelled data, promote it only if it beats the champion.

The champion is judged by the predictions it actually served (logged in the source table) on a
time-ordered holdout, so no serving artifact is needed to compare; the challenger predicts the
same holdout. A promoted model gets the next version, its artifact on disk, and a fresh reference
profile fitted from its own training data, so drift is measured against what it was trained on.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from monitoring_lib.applications import load_callable
from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.errors import MonitoringError
from monitoring_lib.performance import classification_metrics, regression_metrics
from monitoring_lib.reference import fit_profile
from monitoring_lib.results.endpoints import current_version, record_promotion, set_served_model
from monitoring_lib.results.profiles import save_profile
from monitoring_lib.results.retraining_events import training_outcome, upsert_training
from monitoring_lib.sql_common import qualified, source_relation

MODEL_DIR_ENV = "MLMON_MODEL_DIR"


def model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_ENV) or Path.cwd() / ".mlmon" / "models")


def next_version(version: str) -> str:
    return str(int(version) + 1) if version.isdigit() else f"{version}.1"


def load_labelled(conn: psycopg.Connection, cfg: EndpointConfig, since: datetime) -> pd.DataFrame:
    """Features, served prediction and label of every prediction since `since` whose label has landed.

    Labels lag predictions by hours, so the job takes everything labelled by the time it runs rather
    than stopping at the triggering window's end.
    """
    src, lab = cfg.source, cfg.labels
    if lab is None:
        raise MonitoringError(f"{cfg.endpoint_id}: retraining needs a label source (labels: in config)")
    cols = [*src.features, src.prediction_column, src.timestamp_column]
    query = sql.SQL(
        "SELECT {cols}, l.{label} AS __label FROM {rel} JOIN {labels} AS l ON l.{key} = s.{rid}"
        " WHERE s.{ts} >= %s AND l.{label} IS NOT NULL ORDER BY s.{ts}"
    ).format(cols=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in dict.fromkeys(cols)),
             label=sql.Identifier(lab.label_column), rel=source_relation(src, alias="s"), labels=qualified(lab.table),
             key=sql.Identifier(lab.join_key), rid=sql.Identifier(src.request_id_column),
             ts=sql.Identifier(src.timestamp_column))
    with conn.cursor() as cur:
        cur.execute(query, (since,))
        names = [d.name for d in cur.description]
        df = pd.DataFrame(cur.fetchall(), columns=names)
    df = df.rename(columns={"__label": lab.label_column})
    for col in [*src.numeric_features, src.prediction_column, lab.label_column]:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df.replace([np.inf, -np.inf], np.nan).dropna(subset=[*src.numeric_features, lab.label_column])


def _score(cfg: EndpointConfig, y: np.ndarray, pred: np.ndarray) -> tuple[str, float, dict[str, float]]:
    """The primary metric (lower is better for regression RMSE; F1 higher is better) and all metrics."""
    if cfg.model.task == "regression":
        metrics = regression_metrics(y, pred)
        return "rmse", metrics["rmse"], metrics
    metrics = classification_metrics(y, pred)
    return "f1", -metrics["f1"], metrics


def retrain(url: str, cfg: EndpointConfig, start: datetime, end: datetime, *, reasons: Sequence[str] = (),
            run_id: str | None = None) -> dict[str, Any]:
    """Train, evaluate and maybe promote for the window [start, end) whose drift triggered it (`reasons`);
    recorded once per triggering window (a re-run returns the record)."""
    if not cfg.retraining.training_callable:
        raise MonitoringError(f"{cfg.endpoint_id}: retraining.training_callable is not set in config")
    conf = {"reasons": list(reasons), "run_id": run_id}
    with connect(url) as conn:
        done = _recorded(conn, cfg, start, end)
        if done:
            return done
        current = current_version(conn, cfg.endpoint_id)
        if current is None:
            raise MonitoringError(f"{cfg.endpoint_id} is not registered yet: run the monitoring first")
        df = load_labelled(conn, cfg, end - cfg.retraining.training_window)
    label = cfg.labels.label_column  # type: ignore[union-attr]
    if len(df) < 50:
        return _record(url, cfg, start, end, "rejected", current, None,
                       {"reason": f"only {len(df)} labelled rows in the training window; need 50"}, conf)
    cut = int(len(df) * (1 - cfg.retraining.holdout_fraction))
    train_df, holdout = df.iloc[:cut], df.iloc[cut:]
    model = load_callable(cfg.retraining.training_callable)(
        train_df, numeric_features=list(cfg.source.numeric_features),
        categorical_features=list(cfg.source.categorical_features), label_column=label)
    y = holdout[label].to_numpy(dtype=float)
    served = holdout[cfg.source.prediction_column].to_numpy(dtype=float)
    ok = ~np.isnan(served)
    metric, champion, champion_all = _score(cfg, y[ok], served[ok])
    _, challenger, challenger_all = _score(cfg, y, np.asarray(model.predict(holdout), dtype=float))
    evidence = {"metric": metric, "champion": champion_all, "challenger": challenger_all,
                "train_rows": len(train_df), "holdout_rows": len(holdout), "reasons": conf.get("reasons", [])}
    if not challenger < champion:
        return _record(url, cfg, start, end, "rejected", current, None, evidence, conf)
    new_version = next_version(current)
    path = model_dir() / cfg.endpoint_id / f"{new_version}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(model))
    reference = train_df.copy()
    reference[cfg.source.prediction_column] = np.asarray(model.predict(train_df), dtype=float)
    fitted = fit_profile(reference, cfg, "frame", new_version)
    # profile, promotion and record commit together: a retry after a crash finds either none of them
    # (and promotes once) or the record (and returns it), never a promoted model without its record
    with connect(url) as conn, conn.transaction():
        locked = current_version(conn, cfg.endpoint_id, lock=True)
        done = _recorded(conn, cfg, start, end)
        if done:
            return done
        if locked != current:
            raise MonitoringError(f"{cfg.endpoint_id}: the served model changed from {current} while this "
                                  "retraining ran; nothing was promoted, re-run the task to train against the new one")
        profile = save_profile(conn, fitted)
        set_served_model(conn, cfg.endpoint_id, new_version, {"path": str(path), "version": new_version,
                                                              "metrics": challenger_all,
                                                              "reference_version": profile.version})
        # from now on windows belong to the new version; those it did not serve keep theirs when recomputed
        record_promotion(conn, cfg.endpoint_id, new_version, source="retraining")
        evidence["reference_version"] = profile.version
        evidence["artifact"] = str(path)
        return _insert_record(conn, cfg, start, end, "promoted", current, new_version, evidence, conf)


def _recorded(conn: psycopg.Connection, cfg: EndpointConfig, start: datetime, end: datetime) -> dict[str, Any] | None:
    done = training_outcome(conn, cfg.endpoint_id, start, end)
    return None if done is None else {**done, "repeated": True}


def _record(url: str, cfg: EndpointConfig, start: datetime, end: datetime, outcome: str, before: str,
            after: str | None, evidence: dict[str, Any], conf: dict[str, Any]) -> dict[str, Any]:
    with connect(url) as conn, conn.transaction():
        return _insert_record(conn, cfg, start, end, outcome, before, after, evidence, conf)


def _insert_record(conn: psycopg.Connection, cfg: EndpointConfig, start: datetime, end: datetime, outcome: str,
                   before: str, after: str | None, evidence: dict[str, Any], conf: dict[str, Any]) -> dict[str, Any]:
    upsert_training(conn, cfg.endpoint_id, start, end, outcome=outcome, before=before, after=after,
                    evidence=evidence, reasons=conf.get("reasons", []), run_id=conf.get("run_id"))
    return {"outcome": outcome, "model_version_before": before, "model_version_after": after, "evidence": evidence}
