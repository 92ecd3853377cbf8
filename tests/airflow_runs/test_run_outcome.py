"""A window's outcome as an Airflow operator sees it, in real `dag.test()` runs of the monitoring DAG: the run's
note, the summary assets' event extras, the quality_gate task state, the task log, and inputs that no retry fixes.

The demo's data-quality incident hour (hour 9) fails critical checks; under the example config's
`on_failure: skip_drift` it used to run all green with nothing to show for it.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest
from airflow.sdk.definitions.param import ParamValidationError

from mlmon_monitor_parts import SUMMARY_TABLES, monitor_params
from monitoring_lib.config import load_endpoint_config
from monitoring_lib.demo.orchestrate import ENDPOINT_ID
from monitoring_lib.run_summary import NOTE_LIMIT, WindowOutcome, note_markdown
from tests.airflow_runs.test_dags import REPO, af_env, hour, monitor_spec, run_dags, seeded_url  # noqa: F401 - fixtures

DEMO = REPO / "configs" / "claims-approved-amount.yaml"


@pytest.fixture(scope="module")
def incident_and_clean(af_env):  # noqa: F811
    out = run_dags(af_env, [monitor_spec(hour(9)), monitor_spec(hour(0))])
    return out


def stored(url: str, window: tuple[str, str]) -> dict:
    start, end = (datetime.fromisoformat(w) for w in window)
    with psycopg.connect(url) as conn:
        run = conn.execute("SELECT dq_state, drift_status, rows_seen, bad_rows FROM monitoring.interval_runs"
                           " WHERE window_start = %s AND window_end = %s", (start, end)).fetchone()
        critical = [r[0] for r in conn.execute(
            "SELECT expectation_id FROM monitoring.data_quality_results WHERE window_start = %s AND window_end = %s"
            " AND NOT success AND severity = 'critical' ORDER BY expectation_id", (start, end))]
        drifted = [r[0] for r in conn.execute(
            "SELECT DISTINCT feature FROM monitoring.feature_drift WHERE window_start = %s AND window_end = %s"
            " AND status IN ('possible_drift', 'drift_detected') ORDER BY 1", (start, end))]
    return {"dq_state": run[0], "drift_status": run[1], "rows": run[2], "bad_rows": run[3], "critical": critical,
            "drifted": drifted}


def test_a_quality_incident_skips_the_gate_and_says_so_in_the_note_and_the_asset_events(incident_and_clean,
                                                                                      seeded_url):  # noqa: F811
    incident, _ = incident_and_clean["results"]
    facts = stored(seeded_url, hour(9))
    assert facts["dq_state"] == "failed" and facts["drift_status"] == "skipped" and facts["critical"]
    assert incident["state"] == "success"  # skip_drift: the run goes on, but the gate shows the incident
    assert incident["tasks"]["quality_gate"] == "skipped"
    assert incident["tasks"]["compute_interval"] == "success"

    note = incident["note"]
    # the UI shows the first line until the note is opened: the verdict is there
    head = note.splitlines()[0]
    assert head.startswith("Quality **failed** (") and f"{len(facts['critical'])} critical)" in head
    assert "drift **skipped**" in head and f"{facts['rows']} rows, {facts['bad_rows']} bad" in head
    assert f"`{hour(9)[0]}`" in note and all(f"`{check}`" in note for check in facts["critical"][:3])

    assert set(incident["asset_events"]) == {f"monitoring.{t}" for t in SUMMARY_TABLES}
    extra = incident["asset_events"]["monitoring.drift_summary"]
    assert extra["dq_state"] == "failed" and extra["drift_status"] == "skipped"
    assert extra["window_start"] == hour(9)[0] and extra["rows"] == facts["rows"]
    assert extra["critical_failed"] == facts["critical"][:20] and extra["checks_failed"] >= len(facts["critical"])


def test_a_clean_window_passes_the_gate_and_its_note_names_the_drifted_features(incident_and_clean, seeded_url):  # noqa: F811
    _, clean = incident_and_clean["results"]
    facts = stored(seeded_url, hour(0))
    assert facts["dq_state"] == "passed"
    assert clean["state"] == "success" and clean["tasks"]["quality_gate"] == "success"
    assert clean["xcom"]["quality_gate"] == "passed"
    assert clean["note"].startswith(f"Quality **passed** · drift **{facts['drift_status']}** · ")
    assert all(feature in clean["note"] for feature in facts["drifted"])
    named = clean["asset_events"]["monitoring.feature_drift"]["drifted_features"]  # worst first, at most ten
    assert set(named) <= set(facts["drifted"]) and len(named) == min(10, len(facts["drifted"]))


def test_the_task_log_summarises_the_interval_and_gx_import_noise_is_gone(incident_and_clean):
    log = incident_and_clean["log"]
    assert f"window [{hour(9)[0]}, {hour(9)[1]}) of {ENDPOINT_ID}: ok," in log
    assert "data quality: failed," in log and "drift: skipped; drifted features: -" in log
    assert "bad rows: " in log and "Dynatrace lines queued: " in log and "timings: extract" in log
    assert "Skipping registering function" not in log  # Great Expectations' _docs_decorators at INFO


def test_window_params_are_date_times_and_text_is_refused_before_a_run_exists():
    params = monitor_params(load_endpoint_config(DEMO))
    assert params["window_start"].schema["format"] == "date-time"
    for good in (None, "2026-11-20T10:00:00+00:00", "2026-11-20T10:00:00Z", "2026-11-20T10:00", "2026-11-20 10:00:00"):
        assert params["window_start"].resolve(good) == good
    for bad in ("yesterday", "2026-11-20", "10:00", "now-1h"):
        with pytest.raises(ParamValidationError):
            params["window_end"].resolve(bad)
    assert "logical date" in params["window_start"].description


def test_an_impossible_window_fails_at_once_and_the_run_names_the_task_that_failed(af_env):  # noqa: F811
    # passes the form's pattern, is no date: the sensor fails on its first try, not after four
    spec = monitor_spec(("2026-13-45T10:00:00", hour(1)[1]))
    out = run_dags(af_env, [spec])
    (result,) = out["results"]
    assert result["state"] == "failed"
    assert result["tasks"]["wait_for_data"] == "failed" and result["tries"]["wait_for_data"] == 1
    assert result["tasks"]["model_performance"] == "upstream_failed"
    assert "window_start '2026-13-45T10:00:00' is not an ISO 8601 date-time" in out["log"]
    assert "wait_for_data failed: see its log; so model_performance did not run" in out["log"]
    assert "model_performance failed" not in out["log"]
    assert result["note"] == "**Window not computed.** Failed: wait_for_data (see the task log)"


def test_the_note_fits_airflows_note_column():
    many = [{"feature": f"feature_{i:03d}_with_a_long_name", "status": "drift_detected", "metric": "psi",
             "value": 1.0} for i in range(10)]
    outcome = WindowOutcome(endpoint_id="e", window_start="a", window_end="b", status="ok", rows=1, bad_rows=0,
                            bad_rows_by_reason={}, dq_state="failed", checks_failed=40,
                            critical_failed=[f"check_{i:02d}_on_a_column_with_a_long_name" for i in range(20)],
                            failed_checks=[], drift_status="drift_detected", drifted=many,
                            reasons=["x" * 300], model_version="1", reference_version=1, compute_mode="memory",
                            dynatrace_lines=0)
    note = note_markdown(outcome, ["compute_interval"])
    assert len(note) == NOTE_LIMIT and note.endswith("…")
    assert note.startswith("Quality **failed** (40 checks failed, 20 critical) · drift **drift_detected** · 1 rows,"
                           " 0 bad · **failed:** compute_interval\n")
