"""Model performance from labels that land hours after the predictions.

Each run recomputes the recent windows whose labelled-row count changed since they were last
computed, so performance fills in as labels arrive and never double counts.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.drift.profile import SegmentProfile
from monitoring_lib.drift.segments import segment_keys
from monitoring_lib.dynatrace.lines import build_performance_lines, performance_key_prefix
from monitoring_lib.errors import SourceError
from monitoring_lib.results.endpoints import window_version
from monitoring_lib.results.outbox import stage_lines
from monitoring_lib.results.performance import computed_windows, stored_label_counts
from monitoring_lib.results.profiles import load_active_profile
from monitoring_lib.results.tables import replace_window
from monitoring_lib.source import describe_relation, describe_source
from monitoring_lib.sql_common import (
    NUMBER_OR_BOOL_TYPES,
    as_number,
    category_key,
    in_window,
    qualified,
    source_relation,
)


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    err = pred - y
    nonzero = y != 0
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "mape": float(np.abs(err[nonzero] / y[nonzero]).mean() * 100) if nonzero.any() else float("nan"),
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
    }


def is_score(pred: np.ndarray) -> bool:
    """Whether classifier outputs are probabilities rather than class ids, decided once per window.

    Scores when some values are fractional and they outnumber whole values other than 0 and 1: a
    score model may well emit exact 0s and 1s, class ids above 1 mark a multi-class model, and one
    corrupt value either way does not flip how the window is read.
    """
    pred = pred[np.isfinite(pred)]
    whole = pred == np.floor(pred)
    fractional = int(np.count_nonzero(~whole & (pred >= 0) & (pred <= 1)))
    other_classes = int(np.count_nonzero(whole & (pred != 0) & (pred != 1)))
    return fractional > 0 and fractional > other_classes


def usable(task: str, y: np.ndarray, pred: np.ndarray, score: bool | None = None) -> np.ndarray:
    """The rows performance metrics can use: finite numbers, and for a classifier whole-number labels
    and predictions that are scores in [0, 1] or class ids (`score`, default `is_score`). The rest
    are counted, never fatal."""
    ok = np.isfinite(y) & np.isfinite(pred)
    if task == "regression":
        return ok
    ok &= y == np.floor(np.where(ok, y, 0))
    if is_score(pred[ok]) if score is None else score:
        return ok & (pred >= 0) & (pred <= 1)
    return ok & (pred == np.floor(np.where(ok, pred, 0)))


def classification_metrics(y: np.ndarray, pred: np.ndarray, score: bool | None = None) -> dict[str, float]:
    """Metrics of scores (thresholded at 0.5, plus ROC AUC) or of class ids, on rows `usable` kept.

    `score` is the window's reading (`is_score` of the whole window, so a segment never reads differently).
    """
    from sklearn import metrics  # 0.9 s to import: paid only by windows whose labels have landed

    scores = pred.astype(float)
    score = is_score(scores) if score is None else score
    labels = (scores >= 0.5).astype(int) if score else np.rint(scores).astype(int)
    y = y.astype(int)
    binary = len(np.unique(y)) <= 2
    avg = "binary" if binary and set(np.unique(np.concatenate([y, labels]))) <= {0, 1} else "macro"
    out = {
        "accuracy": float(metrics.accuracy_score(y, labels)),
        "precision": float(metrics.precision_score(y, labels, average=avg, zero_division=0)),
        "recall": float(metrics.recall_score(y, labels, average=avg, zero_division=0)),
        "f1": float(metrics.f1_score(y, labels, average=avg, zero_division=0)),
    }
    if score and binary and len(np.unique(y)) == 2:
        out["roc_auc"] = float(metrics.roc_auc_score(y, scores))
    return out


def _segments(df: pd.DataFrame, cfg: EndpointConfig,
              named: tuple[SegmentProfile, ...] = ()) -> list[tuple[str, pd.DataFrame]]:
    """'all', the buckets of `performance.bucket_column`, and each segment `column=value` of the profile's."""
    out = [("all", df)]
    col, edges = cfg.performance.bucket_column, cfg.performance.buckets
    if col and len(edges) >= 2 and "bucket_value" in df:
        labels = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
        cut = pd.cut(df["bucket_value"], bins=list(edges), labels=labels, right=False)
        out += [(label, df[cut == label]) for label in labels]
    for seg in named:
        if f"segment:{seg.column}" in df:
            keys = segment_keys(df[f"segment:{seg.column}"], seg)
            out += [(f"{seg.column}={value}", df[keys == i]) for i, value in enumerate(seg.values)]
    return out


UNUSABLE = "unusable_rows"


def _labelled_pairs(df: pd.DataFrame) -> pd.DataFrame:
    return df.dropna(subset=["prediction", "label"])


def window_rows(df: pd.DataFrame, cfg: EndpointConfig,
                segments: tuple[SegmentProfile, ...] = ()) -> list[tuple[str, str, float, int]]:
    """(segment, metric, value, label_count) for one window's labelled predictions.

    Rows `usable` rejects (an infinite prediction, a score outside [0, 1]) leave the metrics, which the
    rest still give; segment 'all' stores their count as metric `unusable_rows`, its label_count the rows used.
    """
    pairs = _labelled_pairs(df)
    predictions = pairs["prediction"].to_numpy(dtype=float)
    task = cfg.model.task
    score = task != "regression" and is_score(predictions)  # one reading for the window and all its segments
    compute = regression_metrics if task == "regression" else partial(classification_metrics, score=score)
    used = pairs[usable(task, pairs["label"].to_numpy(dtype=float), predictions, score)]
    rows = [("all", UNUSABLE, float(len(pairs) - len(used)), len(used))]
    for segment, part in _segments(used, cfg, segments):
        if part.empty:
            continue
        y = part["label"].to_numpy(dtype=float)
        pred = part["prediction"].to_numpy(dtype=float)
        for metric, value in compute(y, pred).items():
            rows.append((segment, metric, None if not np.isfinite(value) else value, len(part)))
    return rows


def _column_types(conn: psycopg.Connection, cfg: EndpointConfig) -> dict[str, str]:
    """SQL types of the source's columns (as 's.name') and the label table's (as 'l.name'), once per recompute."""
    return {**{f"s.{k}": v for k, v in describe_source(conn, cfg.source).items()},
            **{f"l.{k}": v for k, v in describe_relation(conn, qualified(cfg.labels.table)).items()}}


def _labelled(
    conn: psycopg.Connection, cfg: EndpointConfig, types: dict[str, str], start: datetime, end: datetime
) -> pd.DataFrame:
    """The window's predictions joined to their labels, both as float8.

    Each column is converted by its SQL type (`compute.database.sql.as_number`): a `numeric` beyond float8's range
    reads as ±Infinity rather than failing the cast, a boolean as 0 or 1. A column of another type is a
    `SourceError` naming it, not a cast error from deep inside the query.
    """
    src, lab = cfg.source, cfg.labels

    def number(alias: str, column: str, field: str) -> sql.Composed:
        pgtype = types.get(f"{alias}.{column}")
        if pgtype not in NUMBER_OR_BOOL_TYPES:
            where = lab.table if alias == "l" else (src.table or "source.sql")
            problem = "not found" if pgtype is None else f"{pgtype}, expected a numeric or boolean type"
            raise SourceError(f"{cfg.endpoint_id} ({cfg.source_file or 'config'}): {field}: column '{column}' of"
                              f" {where} is {problem} for performance metrics")
        return as_number(sql.Identifier(alias, column), pgtype)

    bucket = (number("s", cfg.performance.bucket_column, "performance.bucket_column")
              if cfg.performance.bucket_column else sql.SQL("NULL::float8"))
    segment_columns = [c for c in cfg.segments.columns if f"s.{c}" in types]
    segments = sql.SQL("").join(sql.SQL(", {} AS {}").format(category_key(sql.Identifier("s", c), types[f"s.{c}"]),
                                                             sql.Identifier(f"segment:{c}")) for c in segment_columns)
    query = sql.SQL(
        "SELECT s.{ts} AS ts, {pred} AS prediction, {label} AS label, {bucket} AS bucket_value{segments}"
        " FROM {rel} JOIN {labels} AS l ON l.{key} = s.{rid}"
        " WHERE {window}"
    ).format(ts=sql.Identifier(src.timestamp_column), window=in_window(src, sql.SQL("%s"), sql.SQL("%s"), alias="s"),
             segments=segments,
             pred=number("s", src.prediction_column, "source.prediction_column"),
             label=number("l", lab.label_column, "labels.label_column"), bucket=bucket,
             rel=source_relation(src, alias="s"),
             labels=qualified(lab.table), key=sql.Identifier(lab.join_key), rid=sql.Identifier(src.request_id_column))
    rows = conn.execute(query, (start, end)).fetchall()
    return pd.DataFrame(rows, columns=["ts", "prediction", "label", "bucket_value",
                                       *(f"segment:{c}" for c in segment_columns)])


def recompute_recent(url: str, cfg: EndpointConfig, window_end: datetime,
                     window_start: datetime | None = None) -> dict:
    """Recompute performance for the windows within `labels.lookback` whose label counts changed.

    Then queue the newest labelled window's metrics for Dynatrace under the run's window
    [`window_start`, `window_end`) (default: the interval ending at `window_end`).
    """
    if cfg.labels is None:
        return {"windows": 0, "reason": "no label source configured"}
    end = window_end
    interval = cfg.schedule.interval
    start = end - interval if window_start is None else window_start
    updated = []
    since = end - max(cfg.labels.lookback, interval)
    with connect(url) as conn:
        spans = computed_windows(conn, cfg.endpoint_id, since, end)
        stored = stored_label_counts(conn, cfg.endpoint_id, since, UNUSABLE)
        types = _column_types(conn, cfg) if spans else {}
        profiles: dict[str | None, tuple[SegmentProfile, ...]] = {}
        for start_w, end_w, version in spans:
            if cfg.segments.columns and version not in profiles:  # the segments the window's drift was cut into
                profile = load_active_profile(conn, cfg.endpoint_id, version) if version else None
                profiles[version] = profile.segments if profile is not None else ()
            df = _labelled(conn, cfg, types, start_w, end_w)
            labelled = len(_labelled_pairs(df))
            if labelled == 0 or stored.get((start_w, end_w)) == labelled:
                continue
            with conn.transaction():  # the realised rows only: the window's estimated rows are the run's
                replace_window(conn, "model_performance", cfg.endpoint_id, start_w, end_w,
                               ["segment", "metric", "value", "label_count", "estimated"],
                               ["segment", "metric", "estimated"],
                               [(*row, False) for row in window_rows(df, cfg, profiles.get(version, ()))],
                               scope={"estimated": False})
            updated.append(end_w.isoformat())
        conn.commit()  # the recomputed windows stand whatever the staging below does
        lines = _stage_dynatrace(conn, cfg, start, end, since)
    return {"windows": len(updated), "updated": updated, "dynatrace_lines": lines}


def _stage_dynatrace(conn: psycopg.Connection, cfg: EndpointConfig, start: datetime, end: datetime,
                     since: datetime) -> int:
    if not cfg.dynatrace.enabled:
        return 0

    with conn.transaction():
        # each labelled window's lines carry the version stored with its run; this one only when none is stored
        served = window_version(conn, cfg, start, end)
        batch = build_performance_lines(conn, cfg, end, since, served)
        return stage_lines(conn, cfg.endpoint_id, start, end, batch, family=(performance_key_prefix(cfg), True))
