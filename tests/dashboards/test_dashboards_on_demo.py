"""Every Grafana panel, run against summary tables filled by the real pipeline on the demo scenario."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from grafana_sql import expand
from test_grafana_dashboards import DASHBOARD_FILES, KEY_PANELS, _load, _resolve_variables, _run

from monitoring_lib.demo.seed import TRAINING_TABLE, seed_demo
from monitoring_lib.performance import recompute_recent
from monitoring_lib.reference import fit_and_store, read_training_data
from monitoring_lib.runner import run_interval
from tests.database.test_pipeline import demo_config

END = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
START = END - timedelta(hours=12)


def test_panels_and_applications_on_pipeline_output(conn, db_url):
    seeded = seed_demo(conn, end=END, hours=12, rows_per_hour=300, seed=9, now=END + timedelta(hours=1))
    conn.commit()
    cfg = demo_config(drift={"anomaly_window": 3})
    cfg = cfg.model_validate({**cfg.model_dump(by_alias=True), "applications": [
        {"name": "large_claims", "callable": "tests.user_apps:share_of_large_claims", "params": {"threshold": 8000}},
        {"name": "buggy", "callable": "tests.user_apps:broken"}]})
    training, _ = read_training_data(db_url, table=f"public.{TRAINING_TABLE}")
    training[cfg.source.prediction_column] = seeded.model.predict(training)
    fit_and_store(db_url, cfg, frame=training)
    for i in range(12):
        run_interval(db_url, cfg, START + timedelta(hours=i), START + timedelta(hours=i + 1))
    assert recompute_recent(db_url, cfg, END)["windows"] > 0

    apps = conn.execute("SELECT application, metric, status, value, extra FROM monitoring.app_results"
                        " WHERE window_start = %s", (START + timedelta(hours=11),)).fetchall()
    by_name = {(a[0], a[1]): a for a in apps}
    assert by_name[("large_claims", "large_claim_share")][3] is not None
    assert by_name[("buggy", "application_error")][2] == "error"
    assert "this application has a bug" in by_name[("buggy", "application_error")][4]["error"]
    assert ("drift", "general_drift") in by_name and ("kpi", "total_claimed_amount") in by_name
    anomalies = conn.execute("SELECT status, count(*) FROM monitoring.app_results WHERE application = 'anomaly'"
                             " GROUP BY status").fetchall()
    assert dict(anomalies).get("anomaly", 0) > 0  # the drifting claim amounts leave their rolling band
    conn.commit()

    conn.execute("SET ROLE mlmon_readonly")
    for path in DASHBOARD_FILES:
        dash = _load(path)
        variables = _resolve_variables(conn, dash, time_from=START, time_to=END,
                                       prefer={"feature": "claimed_amount"})
        for panel in dash["panels"]:
            for target in panel["targets"]:
                text = expand(target["rawSql"], variables, time_from=START, time_to=END,
                              interval=timedelta(minutes=5))
                _, rows = _run(conn, text)
                if (dash["uid"], panel["title"]) in KEY_PANELS:
                    assert rows, f"{dash['uid']}: {panel['title']} returned no rows on the demo's data"
