"""Performance metrics from late labels read prediction, label and bucket columns by their SQL type."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import psycopg
import pytest

from monitoring_lib.config_check import check_columns
from monitoring_lib.errors import SourceError
from monitoring_lib.performance import (
    classification_metrics,
    is_score,
    recompute_recent,
    regression_metrics,
    usable,
)
from monitoring_lib.runner import run_interval
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
    assert set(stored) == {("all", m) for m in expected} | {("all", "unusable_rows")}
    for metric, value in expected.items():
        assert stored[("all", metric)] == (pytest.approx(value), 200)


def test_numeric_predictions_beyond_float_max_do_not_fail_the_recompute(conn, db_url):
    rng = np.random.default_rng(4)
    truth = rng.normal(1000, 100, 120).round(2)
    pred = truth + rng.normal(0, 10, 120).round(2)
    amounts = np.array([50.0 + i for i in range(120)])
    # r0's label lands later
    rows = [(f"r{i}", f"{p:.2f}", None if i == 0 else f"{t:.2f}", float(a))
            for i, (p, t, a) in enumerate(zip(pred, truth, amounts, strict=True))]
    _tables(conn, "numeric", "numeric", rows)
    cfg = _config("regression", bucket_column="claimed_amount", buckets=[0, 100, 1000])
    assert check_columns(conn, cfg) == []
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    assert recompute_recent(db_url, cfg, WINDOW_END)["windows"] == 1
    stored = _stored(conn)
    for metric, value in regression_metrics(truth[1:], pred[1:]).items():
        assert stored[("all", metric)] == (pytest.approx(value), 119)
    low = amounts < 100
    low[0] = False
    assert stored[("0-100", "mae")] == (pytest.approx(regression_metrics(truth[low], pred[low])["mae"]), 49)

    # r0's label lands, and its prediction is beyond float8's range: read as +Infinity, it is counted as
    # unusable and the metrics come from the other rows, as before it landed
    conn.execute("UPDATE public.inference SET prediction = '1e400' WHERE request_id = 'r0'")
    conn.execute("INSERT INTO public.labels VALUES ('r0', %s)", (f"{truth[0]:.2f}",))
    conn.commit()
    assert recompute_recent(db_url, cfg, WINDOW_END)["windows"] == 1
    stored = _stored(conn)
    assert stored[("all", "unusable_rows")] == (1.0, 119)
    for metric, value in regression_metrics(truth[1:], pred[1:]).items():
        assert stored[("all", metric)] == (pytest.approx(value), 119)
    assert stored[("0-100", "mae")] == (pytest.approx(regression_metrics(truth[low], pred[low])["mae"]), 49)
    high = amounts >= 100
    assert stored[("100-1000", "mae")] == (
        pytest.approx(regression_metrics(truth[high], pred[high])["mae"]), int(high.sum()))
    # nothing changed since: the window is not recomputed
    assert recompute_recent(db_url, cfg, WINDOW_END)["windows"] == 0


def test_scores_outside_zero_one_and_fractional_labels_are_counted_not_fatal(conn, db_url):
    """One score of 1.7, one of -0.2 and a label of 0.5 used to make scikit-learn raise (the window was
    read as class ids) and stop every later window's recompute."""
    rng = np.random.default_rng(5)
    scores = rng.uniform(0, 1, 100).round(3)
    truth = (rng.uniform(0, 1, 100) < scores).astype(float)
    scores[10], scores[11], truth[12] = 1.7, -0.2, 0.5
    rows = [(f"r{i}", float(p), float(t), 100.0) for i, (p, t) in enumerate(zip(scores, truth, strict=True))]
    _tables(conn, "float8", "float8", rows)
    cfg = _config("classification")
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    assert recompute_recent(db_url, cfg, WINDOW_END)["windows"] == 1
    keep = np.ones(100, dtype=bool)
    keep[[10, 11, 12]] = False
    stored = _stored(conn)
    assert stored[("all", "unusable_rows")] == (3.0, 97)
    expected = classification_metrics(truth[keep], scores[keep])
    assert "roc_auc" in expected
    for metric, value in expected.items():
        assert stored[("all", metric)] == (pytest.approx(value), 97)


def test_scores_with_exact_zeros_and_ones_are_read_as_scores_in_every_segment():
    """Tree ensembles emit exact 0 and 1 among their scores: the window is one reading, not a majority vote."""
    pred = np.array([1, 0, 1, 1, 0, 1, 0.9, 0.8, 0.7, 0.2])
    y = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 0], dtype=float)
    assert is_score(pred) and usable("classification", y, pred).all()
    # a segment that happens to hold mostly exact values keeps the window's reading
    metrics = classification_metrics(np.array([1, 1, 1, 0.0]), np.array([0.8, 1, 1, 0]), True)
    assert metrics["accuracy"] == 1.0 and metrics["roc_auc"] == 1.0


def test_class_id_predictions_keep_their_reading_despite_one_fractional_value():
    y = np.array([0, 1, 1, 0, 1, 2, 2, 0], dtype=float)
    pred = np.array([0, 1, 0, 0, 1, 2, 1, 0.4])
    keep = usable("classification", y, pred)
    assert keep.tolist() == [True] * 7 + [False]
    metrics = classification_metrics(y[keep], pred[keep])
    assert metrics["accuracy"] == pytest.approx(5 / 7) and "roc_auc" not in metrics


def test_boolean_columns_a_sql_source_and_a_label_table_sharing_column_names(conn, db_url):
    """The label table lives in another schema and its columns are named like the source's; the label
    column is even called `prediction`. Prediction, label and bucket column are booleans."""
    conn.execute("CREATE TABLE public.inference (request_id text, ts timestamptz, claimed_amount float8,"
                 " region text, prediction boolean, latency_ms float8, error boolean, flagged boolean)")
    conn.execute("CREATE SCHEMA lab")
    conn.execute('CREATE TABLE lab."Outcomes" (request_id text, prediction boolean, ts text)')
    truth = [True, False, True, True, False, False]
    guess = [True, False, False, True, True, False]
    flagged = [True, True, False, False, True, False]
    for i, (t, g, f) in enumerate(zip(truth, guess, flagged, strict=True)):
        conn.execute("INSERT INTO public.inference VALUES (%s, %s, 10, 'north', %s, 5, false, %s)",
                     (f"r{i}", WINDOW_START + timedelta(minutes=i), g, f))
        conn.execute('INSERT INTO lab."Outcomes" VALUES (%s, %s, %s)', (f"r{i}", t, "not a time"))
    conn.commit()
    cfg = _config("classification", bucket_column="flagged", buckets=[0, 1, 2])
    cfg = cfg.model_copy(update={
        "source": cfg.source.model_copy(update={"table": None, "sql": "SELECT * FROM public.inference"}),
        "labels": cfg.labels.model_copy(update={"table": "lab.Outcomes", "label_column": "prediction"})})
    assert check_columns(conn, cfg) == []
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    assert recompute_recent(db_url, cfg, WINDOW_END)["windows"] == 1
    stored = _stored(conn)
    y, p = np.array(truth, dtype=float), np.array(guess, dtype=float)
    for metric, value in classification_metrics(y, p).items():
        assert stored[("all", metric)] == (pytest.approx(value), 6)
    on = np.array(flagged)
    assert stored[("1-2", "accuracy")] == (pytest.approx(float((y[on] == p[on]).mean())), 3)
    assert stored[("0-1", "accuracy")] == (pytest.approx(float((y[~on] == p[~on]).mean())), 3)


def test_a_text_label_is_named_by_validation_and_by_the_recompute(conn, db_url):
    _tables(conn, "float8", "text", [("r1", 1.0, "1.0", 10.0), ("r2", 2.0, "2.5", 10.0)])
    cfg = _config("regression")
    assert check_columns(conn, cfg) == [f"{cfg.source_file}: labels.label_column: column 'label' is text,"
                                        " expected a numeric or boolean type"]
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    message = "labels.label_column: column 'label' of public.labels is text, expected a numeric or boolean type"
    with pytest.raises(SourceError, match=re.escape(message)):
        recompute_recent(db_url, cfg, WINDOW_END)
    assert _stored(conn) == {}


def test_a_bucket_column_of_another_type_or_missing_is_named(conn, db_url):
    _tables(conn, "float8", "float8", [("r1", 1.0, 1.5, 10.0)])
    conn.execute("ALTER TABLE public.inference ADD COLUMN tier text")
    conn.commit()
    tier = _config("regression", bucket_column="tier", buckets=[0, 1])
    assert check_columns(conn, tier) == [f"{tier.source_file}: performance.bucket_column: column 'tier' is text,"
                                         " expected a numeric or boolean type"]
    missing = _config("regression", bucket_column="nope", buckets=[0, 1])
    assert check_columns(conn, missing) == [f"{missing.source_file}: performance.bucket_column: column 'nope'"
                                            " not found in public.inference"]
    run_interval(db_url, tier, WINDOW_START, WINDOW_END)
    with pytest.raises(SourceError, match=re.escape("performance.bucket_column: column 'tier' of public.inference"
                                                    " is text, expected a numeric or boolean type")):
        recompute_recent(db_url, tier, WINDOW_END)
    with pytest.raises(SourceError, match=re.escape("performance.bucket_column: column 'nope' of public.inference"
                                                    " is not found")):
        recompute_recent(db_url, missing, WINDOW_END)
    assert _stored(conn) == {}


def test_a_text_prediction_with_labels_is_a_validation_problem(conn):
    _tables(conn, "text", "float8", [("r1", "1.0", 1.0, 10.0)])
    cfg = _config("regression")
    assert check_columns(conn, cfg) == [f"{cfg.source_file}: source.prediction_column: column 'prediction' is text,"
                                        " expected a numeric or boolean type with labels"]


def test_performance_reaches_dynatrace_hours_after_its_window(conn, db_url):
    """A window's own lines leave before its labels land; the run that sees the labels sends the
    metrics stamped with its own window end, and a re-run of that interval does not drop them."""
    from ingest_server import IngestServer, parse_line

    from monitoring_lib.dynatrace import IngestClient, push_pending
    from tests.sources import clean_rows, create_inference_table, insert_rows

    create_inference_table(conn)
    first, later = clean_rows(200), clean_rows(50, start=WINDOW_END, seed=1, prefix="s")
    insert_rows(conn, first + later)
    conn.execute("CREATE TABLE public.labels (request_id text, label float8)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.labels VALUES (%s, %s)",
                        [(r[0], r[2] * 0.75) for r in first if r[5] is not None])
    conn.commit()
    cfg = make_config(labels={"table": "public.labels"}, dynatrace={"enabled": True})
    run_end = WINDOW_END + timedelta(hours=1)
    run_interval(db_url, cfg, WINDOW_START, WINDOW_END)
    run_interval(db_url, cfg, WINDOW_END, run_end)
    result = recompute_recent(db_url, cfg, run_end, WINDOW_END)
    assert result["windows"] == 1 and result["dynatrace_lines"] == 6  # mae, rmse, mape, r2, unusable_rows, labels
    run_interval(db_url, cfg, WINDOW_END, run_end)  # a re-run of the interval keeps them queued

    token = "dt0c01.TESTPUBLIC.secret"
    with IngestServer(token=token) as server, IngestClient(server.url, token) as client:
        report = push_pending(conn, client, now=run_end + timedelta(minutes=20))
        assert report.ok and report.expired > 0  # the first window's own lines are over an hour old
        performance = [p for p in map(parse_line, server.accepted) if ".performance." in p.key]
    stored = _stored(conn)
    assert len(performance) == 6
    assert {p.key.rsplit(".", 1)[1]: p.value for p in performance} == {
        "labels": stored[("all", "mae")][1],
        **{m: pytest.approx(stored[("all", m)][0]) for m in ("mae", "rmse", "mape", "r2", "unusable_rows")}}
    assert {p.timestamp_ms for p in performance} == {int(run_end.timestamp() * 1000)}
    # the next run sends the same latest labelled window again, as a current point
    assert recompute_recent(db_url, cfg, run_end + timedelta(hours=1))["dynatrace_lines"] == 6
