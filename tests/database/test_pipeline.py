"""The whole interval pipeline (quality, drift, applications, outbox) on the demo scenario, in a real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from monitoring_lib.config import EndpointConfig, load_endpoint_config
from monitoring_lib.demo.seed import TRAINING_TABLE, seed_demo
from monitoring_lib.errors import QualityGateFailed
from monitoring_lib.performance import recompute_recent
from monitoring_lib.reference import fit_and_store, read_training_data
from monitoring_lib.retraining.decisions import decide_and_record
from monitoring_lib.runner import run_interval
from monitoring_lib.tasks import compute_window
from tests.database.test_run_interval import snapshot

REPO = Path(__file__).resolve().parents[2]
END = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
START = END - timedelta(hours=12)
INCIDENT = START + timedelta(hours=9)  # the 12-hour default scenario's data-quality incident


def demo_config(**changes: dict) -> EndpointConfig:
    cfg = load_endpoint_config(REPO / "configs" / "claims-approved-amount.yaml")
    data = cfg.model_dump(by_alias=True)
    for section, values in changes.items():
        data[section] = {**data[section], **values}
    return EndpointConfig.model_validate(data)


@pytest.fixture()
def demo_db(conn, db_url):
    return seed_and_fit(conn, db_url)


def seed_and_fit(conn: psycopg.Connection, db_url: str, *, hours: int = 12, rows_per_hour: int = 400,
                 now: datetime | None = None) -> str:
    """The demo scenario of `hours` ending at END, labels landed by `now` (END + 1 h), with its reference
    profile fitted; returns the database URL."""
    seeded = seed_demo(conn, end=END, hours=hours, rows_per_hour=rows_per_hour, seed=5,
                       now=now or END + timedelta(hours=1))
    conn.commit()
    cfg = demo_config()
    training, _ = read_training_data(db_url, table=f"public.{TRAINING_TABLE}")
    training[cfg.source.prediction_column] = seeded.model.predict(training)
    fit_and_store(db_url, cfg, frame=training)
    return db_url


def test_full_pipeline_rerun_leaves_identical_rows(demo_db, conn):
    cfg = demo_config()
    window = (START + timedelta(hours=8), START + timedelta(hours=9))
    first = run_interval(demo_db, cfg, *window)
    before = snapshot(conn)
    outbox_query = "SELECT series_key, line, status FROM monitoring.dynatrace_outbox ORDER BY 1"
    outbox = conn.execute(outbox_query).fetchall()
    second = run_interval(demo_db, cfg, *window)
    after = snapshot(conn)
    for table in before:
        for a, b in zip(before[table], after[table], strict=True):
            assert a == b, (table, [(x, y) for x, y in zip(a, b, strict=True) if x != y])
    assert after == before
    assert conn.execute(outbox_query).fetchall() == outbox
    assert first.drift_status == second.drift_status == "drift_detected"
    assert first.dq_state == "passed" and first.dynatrace_lines == len(outbox) > 0
    counts = dict(conn.execute(
        "SELECT 'feature_drift', count(*) FROM monitoring.feature_drift UNION ALL "
        "SELECT 'quality', count(*) FROM monitoring.data_quality_results UNION ALL "
        "SELECT 'stats', count(DISTINCT feature) FROM monitoring.feature_stats UNION ALL "
        "SELECT 'kpi', count(*) FROM monitoring.app_results WHERE application = 'kpi'").fetchall())
    # 6 numeric features x 7 metrics (no chi_square) + 2 categorical x 6 (no wasserstein, ks)
    assert counts["feature_drift"] == 6 * 7 + 2 * 6
    assert counts["quality"] > 20 and counts["stats"] == 9 and counts["kpi"] == 4
    summary = dict(conn.execute("SELECT metric, value FROM monitoring.drift_summary").fetchall())
    assert summary["general_drift"] == pytest.approx((summary["tvd_mean"] + summary["hellinger_mean"]) / 2)


def test_quality_failure_skips_drift_by_default_and_is_never_retrained_on(demo_db, conn):
    cfg = demo_config()
    report = run_interval(demo_db, cfg, INCIDENT, INCIDENT + timedelta(hours=1))
    assert report.dq_state == "failed" and report.drift_status == "skipped" and report.bad_rows > 0
    failed = {r[0] for r in conn.execute(
        "SELECT expectation_id FROM monitoring.data_quality_results WHERE NOT success AND severity = 'critical'")}
    assert "unique:request_id" in failed
    assert conn.execute("SELECT count(*) FROM monitoring.feature_drift").fetchone()[0] == 0
    errors = conn.execute("SELECT error_count FROM monitoring.model_endpoints").fetchone()[0]
    assert errors >= report.bad_rows  # failed rows count into the endpoint's errors

    computed = demo_config(quality={"on_failure": "compute_drift"})
    report = run_interval(demo_db, computed, INCIDENT, INCIDENT + timedelta(hours=1))
    assert report.dq_state == "failed" and report.drift_status in ("possible_drift", "drift_detected")
    decision = decide_and_record(conn, computed, INCIDENT, INCIDENT + timedelta(hours=1), "r")
    assert decision.trigger is False and "failed quality" in decision.reasons[0]


def test_fail_task_policy_stores_results_then_raises(demo_db, conn):
    cfg = demo_config(quality={"on_failure": "fail_task"})
    with pytest.raises(QualityGateFailed, match="critical data-quality checks failed"):
        run_interval(demo_db, cfg, INCIDENT, INCIDENT + timedelta(hours=1))
    stored = conn.execute("SELECT dq_state FROM monitoring.interval_runs").fetchone()
    assert stored == ("failed",)
    assert conn.execute("SELECT count(*) FROM monitoring.data_quality_results WHERE NOT success").fetchone()[0] > 0

    # a retry or re-run of the same window reuses the stored result and still fails the task
    window = {"start": INCIDENT.isoformat(), "end": (INCIDENT + timedelta(hours=1)).isoformat()}
    with pytest.raises(QualityGateFailed, match="unique:request_id"):
        compute_window(demo_db, cfg, window)
    lenient = demo_config(quality={"on_failure": "skip_drift"})
    assert compute_window(demo_db, lenient, window)["reused"] is True


def test_performance_fills_in_as_labels_land(demo_db, conn):
    cfg = demo_config()
    for i in range(3):
        run_interval(demo_db, cfg, START + timedelta(hours=i), START + timedelta(hours=i + 1))
    result = recompute_recent(demo_db, cfg, START + timedelta(hours=3))
    assert result["windows"] == 3
    rows = conn.execute("SELECT segment, metric, value, label_count FROM monitoring.model_performance"
                        " WHERE window_start = %s AND NOT estimated", (START,)).fetchall()
    overall = {r[1]: r[2] for r in rows if r[0] == "all"}
    assert set(overall) == {"mae", "rmse", "mape", "r2", "unusable_rows"} and overall["r2"] > 0.5
    assert overall["unusable_rows"] == 0
    assert {r[0] for r in rows} - {"all"}  # claimed-amount buckets
    # nothing new landed: nothing is recomputed
    assert recompute_recent(demo_db, cfg, START + timedelta(hours=3))["windows"] == 0
    # a label lands late for the first window: that window alone is recomputed
    with psycopg.connect(demo_db) as other:
        deleted = other.execute(
            "DELETE FROM public.claims_labels WHERE request_id IN (SELECT request_id FROM public.claims_inference"
            " WHERE ts >= %s AND ts < %s LIMIT 5) RETURNING *", (START, START + timedelta(hours=1))).fetchall()
        other.commit()
    assert recompute_recent(demo_db, cfg, START + timedelta(hours=3))["windows"] == 1
    count = conn.execute("SELECT label_count FROM monitoring.model_performance WHERE window_start = %s"
                         " AND segment = 'all' AND metric = 'mae' AND NOT estimated", (START,)).fetchone()[0]
    assert count == [r for r in rows if r[0] == "all"][0][3] - len(deleted)


def test_a_retraining_that_fails_before_its_record_promotes_nothing_and_its_retry_promotes_once(
        demo_db, conn, tmp_path, monkeypatch):
    """Profile, promotion and record commit together: a task that dies before its record leaves the
    served model as it was, so the retry does not promote a second version."""
    from monitoring_lib.tasks import retrain  # the retraining DAG's task, with the trigger's conf

    monkeypatch.setenv("MLMON_MODEL_DIR", str(tmp_path))
    cfg = demo_config()
    for i in range(12):
        run_interval(demo_db, cfg, START + timedelta(hours=i), START + timedelta(hours=i + 1))
    conf = {"window_start": (END - timedelta(hours=1)).isoformat(), "window_end": END.isoformat(),
            "reasons": ["drift"], "run_id": "retrain__test"}

    def served() -> tuple:
        conn.commit()
        return (conn.execute("SELECT model_version FROM monitoring.model_endpoints").fetchone()[0],
                conn.execute("SELECT count(*) FROM monitoring.reference_profiles").fetchone()[0])

    before = served()
    # the record cannot be written: the task fails as if it died there
    conn.execute("ALTER TABLE monitoring.retraining_events ADD CONSTRAINT crash CHECK (event_type <> 'training')")
    conn.commit()
    with pytest.raises(psycopg.errors.CheckViolation):
        retrain(demo_db, cfg, conf)
    assert served() == before
    conn.execute("ALTER TABLE monitoring.retraining_events DROP CONSTRAINT crash")
    conn.commit()
    outcome = retrain(demo_db, cfg, conf)
    assert outcome["outcome"] == "promoted", outcome
    assert served() == ("2", before[1] + 1)
    again = retrain(demo_db, cfg, conf)
    assert again["repeated"] is True and again["model_version_after"] == "2"
    assert served() == ("2", before[1] + 1)
    # the promotion entered the history with the registry: a window version 1 served, recomputed now, keeps it
    assert [r[0] for r in conn.execute("SELECT model_version FROM monitoring.model_versions"
                                       " ORDER BY promoted_at")] == ["1", "2"]
    recomputed = compute_window(demo_db, cfg, {"start": START.isoformat(),
                                                 "end": (START + timedelta(hours=1)).isoformat()}, force=True)
    assert (recomputed["model_version"], recomputed["reference_version"]) == ("1", 1)
