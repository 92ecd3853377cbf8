"""A window belongs to the model version that served it, whenever it is computed, on a real PostgreSQL.

Four hours of traffic; model version 2 is promoted half-way through the third hour, with a reference
fitted on other data, so comparing a version-1 window with it would show drift.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import psycopg
import pytest

from monitoring_lib import migrations
from monitoring_lib.config import EndpointConfig
from monitoring_lib.config_check import check_columns
from monitoring_lib.errors import SourceError
from monitoring_lib.reference import fit_and_store
from monitoring_lib.results.endpoints import record_promotion, serving_version, window_version
from monitoring_lib.results.report import stored_report
from monitoring_lib.runner import run_interval
from monitoring_lib.tasks import compute_window
from tests.sources import WINDOW_START, clean_rows, create_inference_table, insert_rows, make_config

HOUR = timedelta(hours=1)
PROMOTED_AT = WINDOW_START + 2 * HOUR + timedelta(minutes=30)
COLUMNS = ["request_id", "ts", "claimed_amount", "vehicle_age", "region", "prediction", "latency_ms", "error"]


def hour(i: int) -> tuple[datetime, datetime]:
    return WINDOW_START + i * HOUR, WINDOW_START + (i + 1) * HOUR


def iso(i: int) -> dict[str, str]:
    start, end = hour(i)
    return {"start": start.isoformat(), "end": end.isoformat()}


def training(seed: int, scale: float = 1.0) -> pd.DataFrame:
    df = pd.DataFrame(clean_rows(3000, seed=seed), columns=COLUMNS)
    df["claimed_amount"] *= scale
    df["prediction"] = df["claimed_amount"] * 0.8
    return df


def promote(url: str, cfg: EndpointConfig, version: str, at: datetime) -> None:
    """As the retraining job does: the registry's version and the promotion history in one transaction."""
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("UPDATE monitoring.model_endpoints SET model_version = %s WHERE endpoint_id = %s",
                     (version, cfg.endpoint_id))
        record_promotion(conn, cfg.endpoint_id, version, promoted_at=at)


@pytest.fixture()
def served(conn: psycopg.Connection, db_url: str) -> str:
    """Four hours of traffic; version 1 with its active reference at v2 (fitted twice), version 2 with v1."""
    create_inference_table(conn)
    insert_rows(conn, [r for i in range(4) for r in clean_rows(400, start=hour(i)[0], seed=10 + i, prefix=f"h{i}-")])
    conn.commit()
    cfg = make_config()
    fit_and_store(db_url, cfg, frame=training(1))  # registers the endpoint with version 1, in service from now
    with psycopg.connect(db_url) as other:  # as if registered before its traffic: promotions are recorded after
        record_promotion(other, cfg.endpoint_id, "1", promoted_at=WINDOW_START - 24 * HOUR, source="registered")
    assert fit_and_store(db_url, cfg, frame=training(2)).version == 2
    assert fit_and_store(db_url, cfg, frame=training(3, scale=4.0), model_version="2").version == 1
    return db_url


def run_of(conn: psycopg.Connection, i: int) -> tuple:
    conn.commit()
    return conn.execute("SELECT model_version, reference_version, drift_status FROM monitoring.interval_runs"
                        " WHERE window_start = %s", (hour(i)[0],)).fetchone()


def results_of(conn: psycopg.Connection, i: int) -> list[tuple]:
    return conn.execute("SELECT feature, metric, value, status FROM monitoring.feature_drift WHERE window_start = %s"
                        " ORDER BY 1, 2", (hour(i)[0],)).fetchall()


def test_a_window_recomputed_after_a_promotion_keeps_its_version_and_reference(served, conn):
    cfg = make_config(dynatrace={"enabled": True})
    before = [compute_window(served, cfg, iso(i)) for i in range(2)]
    assert [(r["model_version"], r["reference_version"]) for r in before] == [("1", 2), ("1", 2)]
    first_results = results_of(conn, 0)
    assert first_results and run_of(conn, 0)[2] != "drift_detected"

    promote(served, cfg, "2", PROMOTED_AT)
    # the older window is still current: a promotion does not make it stale
    assert compute_window(served, cfg, iso(1))["reused"] is True
    # a forced recompute (a cleared task, a backfill) stores it as version 1 against version 1's reference
    again = compute_window(served, cfg, iso(0), force=True)
    assert again["reused"] is False and (again["model_version"], again["reference_version"]) == ("1", 2)
    assert run_of(conn, 0) == ("1", 2, before[0]["drift_status"])
    assert results_of(conn, 0) == first_results
    lines = [r[0] for r in conn.execute("SELECT line FROM monitoring.dynatrace_outbox WHERE window_start = %s",
                                        (hour(0)[0],))]
    assert lines and all('model_version="1"' in line for line in lines)

    # the window the promotion falls in was served by version 2 at its end; the next one entirely
    straddling, later = compute_window(served, cfg, iso(2)), compute_window(served, cfg, iso(3))
    assert (straddling["model_version"], straddling["reference_version"]) == ("2", 1)
    assert (later["model_version"], later["reference_version"]) == ("2", 1)
    assert run_of(conn, 3)[:2] == ("2", 1)
    assert all('model_version="2"' in r[0] for r in conn.execute(
        "SELECT line FROM monitoring.dynatrace_outbox WHERE window_start = %s", (hour(3)[0],)))


def test_a_window_stored_under_the_wrong_version_is_recomputed_as_its_own(served, conn):
    """A window stored as version 2 before the history existed (the old attribution) is stale, not reused."""
    cfg = make_config()
    run_interval(served, cfg, *hour(0))
    conn.execute("UPDATE monitoring.interval_runs SET model_version = '2', reference_version = 1")
    conn.commit()
    promote(served, cfg, "2", PROMOTED_AT)
    assert stored_report(served, cfg, *hour(0)) is None
    assert compute_window(served, cfg, iso(0))["model_version"] == "1"
    assert run_of(conn, 0)[:2] == ("1", 2)


def test_the_promotion_boundary_is_the_windows_end(served, conn):
    """The version promoted last strictly before the window's end served it; before any promotion, the first."""
    cfg = make_config()
    run_interval(served, cfg, *hour(0))
    record_promotion(conn, cfg.endpoint_id, "1", promoted_at=WINDOW_START + HOUR, source="registered")
    assert serving_version(conn, cfg.endpoint_id, *hour(0)) == "1"  # before the first promotion: the first version
    record_promotion(conn, cfg.endpoint_id, "2", promoted_at=WINDOW_START + 2 * HOUR)
    e = cfg.endpoint_id
    assert serving_version(conn, e, WINDOW_START - HOUR, WINDOW_START) == "1"  # before the first promotion
    assert serving_version(conn, e, *hour(1)) == "1"  # version 2 promoted exactly at its end: not served
    assert serving_version(conn, e, WINDOW_START + 90 * timedelta(minutes=1), WINDOW_START + 150 * timedelta(
        minutes=1)) == "2"  # straddles the promotion: the version serving at its end
    assert serving_version(conn, e, *hour(2)) == "2"
    assert serving_version(conn, "unknown", *hour(2)) is None
    assert window_version(conn, make_config(endpoint_id="unknown"), *hour(2)) == "1"  # the config's version


def test_no_reference_for_the_version_that_served_the_window_names_it(served, conn):
    cfg = make_config()
    promote(served, cfg, "3", PROMOTED_AT)
    report = compute_window(served, cfg, iso(3))
    reason = "no reference fitted for model version 3, which served the window"
    assert (report["model_version"], report["reference_version"], report["drift_status"]) == ("3", None,
                                                                                              "no_reference")
    assert report["reasons"] == [reason]
    reused = compute_window(served, cfg, iso(3))
    assert reused["reused"] is True and reused["reasons"] == [reason]
    # the windows version 1 served still have its reference
    assert compute_window(served, cfg, iso(0))["drift_status"] != "no_reference"


@pytest.mark.parametrize("compute", ["memory", "database"])
def test_a_model_version_column_decides_the_windows_version(served, conn, compute):
    cfg = make_config(compute=compute, source={"model_version_column": "served_by"})
    conn.execute("ALTER TABLE public.inference ADD COLUMN served_by integer")
    # hour 0: mostly version 2 by the log, though the history says version 1; hour 1: all NULL
    conn.execute("UPDATE public.inference SET served_by = CASE WHEN request_id < 'h0-2' THEN 1 ELSE 2 END"
                 " WHERE ts >= %s AND ts < %s", hour(0))
    conn.commit()
    assert window_version(conn, cfg, *hour(0)) == "2"
    logged = compute_window(served, cfg, iso(0))
    assert (logged["model_version"], logged["reference_version"]) == ("2", 1)
    assert run_of(conn, 0)[:2] == ("2", 1)
    assert compute_window(served, cfg, iso(0))["reused"] is True
    fallback = compute_window(served, cfg, iso(1))
    assert (fallback["model_version"], fallback["reference_version"]) == ("1", 2)
    # rows logged by another version change the window's version: the stored result is no longer current
    conn.execute("UPDATE public.inference SET served_by = 1 WHERE ts >= %s AND ts < %s", hour(0))
    conn.commit()
    assert stored_report(served, cfg, *hour(0)) is None
    assert compute_window(served, cfg, iso(0))["model_version"] == "1"


def test_a_model_version_column_must_exist_and_not_be_a_monitored_column(served, conn):
    cfg = make_config(source={"model_version_column": "no_such_column"})
    assert check_columns(conn, cfg) == [
        ": source.model_version_column: column 'no_such_column' not found in public.inference"]
    with pytest.raises(SourceError, match="source.model_version_column: column 'no_such_column' not found"):
        run_interval(served, cfg, *hour(0))
    with pytest.raises(ValueError, match="model_version_column: 'region' is already"):
        make_config(source={"model_version_column": "region"})


def _upgrade_until(conn: psycopg.Connection, last: int, monkeypatch: pytest.MonkeyPatch) -> None:
    everything = migrations.available()
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "available", lambda: [m for m in everything if m.version <= last])
        migrations.upgrade(conn)
    conn.commit()


def test_the_migration_back_fills_the_history_from_promotions_and_runs(empty_db_url, monkeypatch):
    t = WINDOW_START
    with psycopg.connect(empty_db_url) as conn:
        _upgrade_until(conn, 4, monkeypatch)
        for endpoint, version in (("retrained", "3"), ("never", "7")):
            conn.execute("INSERT INTO monitoring.model_endpoints (endpoint_id, project, model_name, model_version,"
                         " updated_at) VALUES (%s, 'p', 'm', %s, %s)", (endpoint, version, t + 30 * HOUR))
        runs = [("retrained", 0, "1"), ("retrained", 5, "1"), ("retrained", 12, "2"), ("retrained", 20, "3"),
                ("never", 2, "7"), ("never", 3, None)]
        for endpoint, i, version in runs:
            conn.execute("INSERT INTO monitoring.interval_runs (endpoint_id, window_start, window_end, status,"
                         " model_version, library_version, started_at, finished_at, duration_s)"
                         " VALUES (%s, %s, %s, 'ok', %s, 'x', %s, %s, 0)",
                         (endpoint, t + i * HOUR, t + (i + 1) * HOUR, version, t + (i + 1) * HOUR + timedelta(
                             minutes=5), t + (i + 1) * HOUR + timedelta(minutes=6)))
        for before, after, at in (("1", "2", 10), ("2", "3", 18)):
            conn.execute("INSERT INTO monitoring.retraining_events (endpoint_id, window_start, window_end,"
                         " event_type, outcome, model_version_before, model_version_after, created_at)"
                         " VALUES ('retrained', %s, %s, 'training', 'promoted', %s, %s, %s)",
                         (t + (at - 1) * HOUR, t + at * HOUR, before, after, t + at * HOUR + timedelta(minutes=20)))
        conn.commit()
        applied = [m.version for m in migrations.upgrade(conn)]
        assert applied[0] == 5 and applied == [m.version for m in migrations.available() if m.version > 4]
        conn.commit()
        history = conn.execute("SELECT endpoint_id, model_version, promoted_at FROM monitoring.model_versions"
                               " ORDER BY 1, 3").fetchall()
        assert history == [
            ("never", "7", t + 2 * HOUR),  # the start of the first window a live run computed with it
            ("retrained", "1", t),
            ("retrained", "2", t + 10 * HOUR + timedelta(minutes=20)),  # the recorded promotions
            ("retrained", "3", t + 18 * HOUR + timedelta(minutes=20)),
        ]
        # a window version 1 served, recomputed now, belongs to it again; the one after the promotion to 2
        assert serving_version(conn, "retrained", t, t + HOUR) == "1"
        assert serving_version(conn, "retrained", t + 10 * HOUR, t + 11 * HOUR) == "2"
        assert serving_version(conn, "retrained", t + 25 * HOUR, t + 26 * HOUR) == "3"
