"""Performance metrics from late labels read prediction, label and bucket columns by their SQL type."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from monitoring_lib.errors import SourceError
from monitoring_lib.performance import classification_metrics, recompute_recent, regression_metrics
from monitoring_lib.runner import run_interval
from monitoring_lib.validation import check_columns
from tests.sources import WINDOW_END, WINDOW_START, make_config


def _tables(conn: psycopg.Connection, prediction: str, label: str, rows: list[tuple]) -> None:
    """An inference log and a label table; rows are (request id, prediction, label, claimed amount)."""
    conn.execute(f"CREATE TABLE public.inference (request_id text, ts timestamptz, claimed_amount float8,"
                 f" region text, prediction {prediction}, latency_ms float8, error boolean)")
    conn.execute(f"CREATE TABLE public.labels (request_id text, label {label})")
    step = (WINDOW_END - WINDOW_START) / (len(rows) + 1)
    with conn.cursor() as cur:
        for i, (rid, pred, lab, amount) in enumerate(rows):
            cur.execute("INSERT INTO public.inference VALUES (%s, %s, %s, 'north', %s, 10.0, false)",
                        (rid, WINDOW_START + step * (i + 1), amount, pred))
            if lab is not None:
                cur.execute("INSERT INTO public.labels VALUES (%s, %s)", (rid, lab))
    conn.commit()


def _config(task: str, **performance: object):
    cls = "sklearn.linear_model." + ("Ridge" if task == "regression" else "LogisticRegression")
    return make_config(
        model={"name": "m", "version": "1", "class": cls, "function_uri": "p/serve", "task": task},
        source={"table": "public.inference", "timestamp_column": "ts", "request_id_column": "request_id",
                "numeric_features": ["claimed_amount"], "categorical_features": ["region"],
                "prediction_column": "prediction", "latency_column": "latency_ms", "error_column": "error"},
        labels={"table": "public.labels"}, performance=performance, kpis=[])


def _stored(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[float | None, int]]:
    rows = conn.execute("SELECT segment, metric, value, label_count FROM monitoring.model_performance").fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def test_boolean_labels_score_a_classifier(conn, db_url):
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 200).round(3)
    truth = rng.uniform(0, 1, 200) < scores
    rows = [(f"r{i}", float(s), bool(t), 100.0) for i, (s, t) in enumerate(zip(scores, truth, strict=True))]
    rows.append(("unlabelled", 0.5, None, 100.0))
    _tables(conn, "numeric", "boolean", rows)
    cfg = _config("classification")
    assert check_columns(conn, cfg) == []
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)

    assert recompute_recent(db_url, cfg, WINDOW_END)["windows"] == 1
    expected = classification_metrics(truth.astype(float), scores)
    stored = _stored(conn)
    assert set(stored) == {("all", m) for m in expected}
    for metric, value in expected.items():
        assert stored[("all", metric)] == (pytest.approx(value), 200)


def test_numeric_predictions_beyond_float_max_do_not_fail_the_recompute(conn, db_url):
    rng = np.random.default_rng(4)
    truth = rng.normal(1000, 100, 120).round(2)
    pred = truth + rng.normal(0, 10, 120).round(2)
    amounts = [50.0 + i for i in range(120)]
    rows = [(f"r{i}", f"{p:.2f}", f"{t:.2f}", a) for i, (p, t, a) in enumerate(zip(pred, truth, amounts, strict=True))]
    _tables(conn, "numeric", "numeric", rows)
    cfg = _config("regression", bucket_column="claimed_amount", buckets=[0, 100, 1000])
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    assert recompute_recent(db_url, cfg, WINDOW_END)["windows"] == 1
    stored = _stored(conn)
    for metric, value in regression_metrics(truth, pred).items():
        assert stored[("all", metric)] == (pytest.approx(value), 120)
    low = np.array(amounts) < 100
    assert stored[("0-100", "mae")] == (pytest.approx(regression_metrics(truth[low], pred[low])["mae"]), int(low.sum()))

    # one prediction beyond float8's range: read as +Infinity, so the error metrics have no finite value
    conn.execute("UPDATE public.inference SET prediction = '1e400' WHERE request_id = 'r0'")
    conn.execute("INSERT INTO public.labels VALUES ('r0', 1000)")  # one more label: the window is recomputed
    conn.commit()
    assert recompute_recent(db_url, cfg, WINDOW_END)["windows"] == 1
    stored = _stored(conn)
    assert stored[("all", "mae")] == (None, 121)
    assert stored[("all", "rmse")] == (None, 121)
    # r0's claimed amount is 50: the 100-1000 bucket is untouched
    high = ~low
    assert stored[("100-1000", "mae")] == (
        pytest.approx(regression_metrics(truth[high], pred[high])["mae"]), int(high.sum()))


def test_a_text_label_is_named_by_validation_and_by_the_recompute(conn, db_url):
    _tables(conn, "float8", "text", [("r1", 1.0, "1.0", 10.0), ("r2", 2.0, "2.5", 10.0)])
    cfg = _config("regression")
    assert check_columns(conn, cfg) == [f"{cfg.source_file}: labels.label_column: column 'label' is text,"
                                        " expected a numeric or boolean type"]
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    with pytest.raises(SourceError, match="labels.label_column 'label' of public.labels is text"):
        recompute_recent(db_url, cfg, WINDOW_END)
    assert _stored(conn) == {}


def test_a_text_prediction_with_labels_is_a_validation_problem(conn):
    _tables(conn, "text", "float8", [("r1", "1.0", 1.0, 10.0)])
    cfg = _config("regression")
    assert check_columns(conn, cfg) == [f"{cfg.source_file}: source.prediction_column: column 'prediction' is text,"
                                        " expected a numeric or boolean type with labels"]
