"""The provisioned Grafana dashboards and alert rules: structure, and every query run for real.

Grafana cannot run here, so each panel and variable query is expanded the way Grafana would
(`tests/grafana_sql.py`) and executed against a migrated PostgreSQL filled with two endpoints of
hourly results, as the read-only role the Grafana login belongs to.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from grafana_sql import expand, expand_macros, expand_variables, parse_interval
from psycopg import sql
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "dashboards" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_UID = "mlmon-postgres"
PANEL_TYPES = {"stat", "table", "timeseries", "heatmap", "piechart", "bargauge"}

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
RANGE_FROM, RANGE_TO = T0 - timedelta(hours=1), T0 + timedelta(hours=7)
ENDPOINT_A = "claims-approved-amount"  # six healthy-then-drifting windows
ENDPOINT_B = "claims-fraud-score"  # data for three windows, then none
PROJECT = "claims"
NUMERIC = ("claimed_amount", "vehicle_age")
CATEGORICAL = ("region",)
DRIFT_METRICS = ("tvd", "hellinger", "kld", "psi", "jensen_shannon", "wasserstein", "ks", "chi_square")

# Panels that must show data for the seeded rows (dashboard uid, panel title).
KEY_PANELS = {
    ("mlmon-overview", "Model endpoints"),
    ("mlmon-overview", "Predictions/s (5-minute average)"),
    ("mlmon-overview", "Average latency (1-hour average)"),
    ("mlmon-details", "Endpoint summary"),
    ("mlmon-details", "Overall drift analysis"),
    ("mlmon-details", "Features analysis"),
    ("mlmon-details", "Incoming features"),
    ("mlmon-performance", "Drift measures"),
    ("mlmon-performance", "Average latency"),
    ("mlmon-performance", "Predictions count"),
    ("mlmon-performance", "Custom metrics"),
    ("mlmon-applications", "Application summary"),
    ("mlmon-applications", "Drift detection history"),
    ("mlmon-kpis", "Prediction average vs training average"),
    ("mlmon-kpis", "Business KPIs"),
    ("mlmon-kpis", "Model performance by bucket"),
    ("mlmon-kpis", "Anomaly bands: $feature"),
    ("mlmon-kpis", "Estimated vs realised performance"),
    ("mlmon-details", "Drift per segment"),
}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _dashboards() -> dict[str, dict[str, Any]]:
    return {d["uid"]: d for d in map(_load, DASHBOARD_FILES)}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "alerting" / "rules.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


# ----------------------------------------------------------------------------- expander


def test_expander_macros_match_grafana_postgres_output():
    start, end = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, 6, tzinfo=timezone.utc)
    query = "SELECT $__timeGroupAlias(t.ts, 5m), $__time(x) WHERE $__timeFilter(t.ts) AND y < $__timeTo()"
    assert expand_macros(query, time_from=start, time_to=end) == (
        'SELECT floor(extract(epoch from t.ts)/300)*300 AS "time", x AS "time" '
        "WHERE t.ts BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-02T06:00:00Z' AND y < '2026-01-02T06:00:00Z'"
    )
    assert expand_macros("$__timeGroup(ts, '1h', 0)", time_from=start, time_to=end) == (
        "floor(extract(epoch from ts)/3600)*3600"
    )
    assert expand_macros("$__unixEpochFilter(e)", time_from=start, time_to=end) == (
        "e >= 1767225600 AND e <= 1767333600"
    )
    assert parse_interval("'90s'") == timedelta(seconds=90)


def test_expander_variable_formats_follow_grafana_sql_datasources():
    start = end = T0
    values = {"p": "o'brien", "m": ["a", "b'c"], "one": ["x"]}

    def run(text: str) -> str:
        return expand_variables(text, values, time_from=start, time_to=end, interval=timedelta(minutes=5))

    assert run("WHERE p = '$p'") == "WHERE p = 'o''brien'"
    quoted = "'a','b''c'"
    assert run("IN ($m) OR IN (${m}) OR IN ([[m]])") == f"IN ({quoted}) OR IN ({quoted}) OR IN ({quoted})"
    assert run("${m:csv}|${m:sqlstring}|${one}") == "a,b'c|'a','b''c'|'x'"
    assert run("$__interval $__interval_ms") == "5m 300000"
    assert run("$__timeFilter(ts)") == "$__timeFilter(ts)"


def test_expander_rejects_unknown_names_instead_of_sending_them_to_the_database():
    for text in ("WHERE a = '$missing'", "SELECT $__timeFilterr(ts)", "SELECT ${m:json}"):
        with pytest.raises(ValueError):
            expand(text, {"m": ["a"]}, time_from=T0, time_to=T0)


# ----------------------------------------------------------------------------- structure


def test_five_dashboards_with_the_expected_uids():
    assert set(_dashboards()) == {
        "mlmon-overview", "mlmon-details", "mlmon-performance", "mlmon-applications", "mlmon-kpis",
    }


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path):
    dash = _load(path)
    assert 39 <= dash["schemaVersion"] < 42
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["rawSql"].strip() and target["rawQuery"] is True
            assert target["format"] in ("table", "time_series")
            assert "$__timeFilter(" in target["rawSql"] or "monitoring.model_endpoints" in target["rawSql"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24
    for a in panels:
        for b in panels:
            if a["id"] < b["id"]:
                ga, gb = a["gridPos"], b["gridPos"]
                overlap = (ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"]
                           and ga["y"] < gb["y"] + gb["h"] and gb["y"] < ga["y"] + ga["h"])
                assert not overlap, f"{a['title']} overlaps {b['title']}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_every_datasource_reference_is_the_provisioned_uid(path: Path):
    refs = [n["datasource"] for n in _walk(_load(path)) if isinstance(n.get("datasource"), dict)]
    assert refs
    for ref in refs:
        if ref.get("type") == "grafana":  # the built-in annotation source
            continue
        assert ref == {"type": "grafana-postgresql-datasource", "uid": DATASOURCE_UID}


def test_template_variables_are_query_variables_on_the_datasource():
    expected = {
        "mlmon-overview": {"project"},
        "mlmon-details": {"project", "endpoint", "feature", "segment"},
        "mlmon-performance": {"project", "endpoint"},
        "mlmon-applications": {"project", "endpoint"},
        "mlmon-kpis": {"project", "endpoint", "feature"},
    }
    for uid, dash in _dashboards().items():
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert expected[uid] <= set(variables), uid
        for name in expected[uid]:
            assert variables[name]["type"] == "query"
            assert variables[name]["datasource"]["uid"] == DATASOURCE_UID
        assert variables["project"]["multi"] is False  # panels compare with = '$project'
    details = {v["name"]: v for v in _dashboards()["mlmon-details"]["templating"]["list"]}
    assert details["endpoint"]["multi"] is False  # the Overview link selects exactly one endpoint


def test_overview_links_endpoint_to_details_and_colours_drift_status():
    overview = _dashboards()["mlmon-overview"]
    table = next(p for p in overview["panels"] if p["title"] == "Model endpoints")
    by_name = {o["matcher"]["options"]: o["properties"] for o in table["fieldConfig"]["overrides"]}
    link = next(p["value"][0]["url"] for p in by_name["Endpoint ID"] if p["id"] == "links")
    assert link.startswith("/d/mlmon-details/") and "var-endpoint=${__value.raw}" in link
    assert "var-project=${project}" in link
    mapping = next(p["value"][0]["options"] for p in by_name["Drift Status"] if p["id"] == "mappings")
    colours = {key: mapping[key]["color"] for key in ("no_drift", "possible_drift", "drift_detected")}
    assert colours == {"no_drift": "green", "possible_drift": "yellow", "drift_detected": "red"}
    columns = ["Endpoint ID", "Function", "Model", "Model Class", "First Request", "Last Request",
               "Error Count", "Drift Status"]
    query = table["targets"][0]["rawSql"]
    assert [query.index(f'"{c}"') for c in columns] == sorted(query.index(f'"{c}"') for c in columns)


def test_provisioning_uses_the_fixed_uid_and_secrets_from_the_environment():
    prov = GRAFANA / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "monitoring.yaml").read_text())["datasources"]
    assert len(ds) == 1 and ds[0]["uid"] == DATASOURCE_UID
    assert ds[0]["user"] == "${MLMON_GRAFANA_DB_USER}"
    assert ds[0]["secureJsonData"] == {"password": "${MLMON_GRAFANA_DB_PASSWORD}"}
    assert "password" not in ds[0] and "password" not in ds[0]["jsonData"]
    providers = yaml.safe_load((prov / "dashboards" / "monitoring.yaml").read_text())["providers"]
    assert [p["type"] for p in providers] == ["file"]
    doc = yaml.safe_load((prov / "alerting" / "rules.yaml").read_text())
    assert doc["apiVersion"] == 1
    rules = _alert_rules()
    assert {r["uid"] for r in rules} == {
        "mlmon-drift-detected", "mlmon-data-quality-failed", "mlmon-error-rate-high", "mlmon-no-data",
        "mlmon-estimated-performance-drop",
    }
    for rule in rules:
        refs = {d["refId"]: d for d in rule["data"]}
        assert rule["condition"] in refs
        assert refs["A"]["datasourceUid"] == DATASOURCE_UID and refs["A"]["model"]["format"] == "table"
        assert refs[rule["condition"]]["datasourceUid"] == "__expr__"
        assert refs[rule["condition"]]["model"]["expression"] == "A"


# ----------------------------------------------------------------------------- seeded database


def _windows(endpoint: str) -> list[int]:
    return list(range(6)) if endpoint == ENDPOINT_A else [0, 1, 2]


def _window(i: int) -> tuple[datetime, datetime]:
    return T0 + timedelta(hours=i), T0 + timedelta(hours=i + 1)


def _drift_status(endpoint: str, i: int) -> str:
    if endpoint == ENDPOINT_B:
        return "no_drift"
    return ("no_drift", "no_drift", "possible_drift", "possible_drift", "drift_detected", "drift_detected")[i]


def _rows(conn: psycopg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier("monitoring", table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    with conn.cursor() as cur:
        cur.executemany(statement, rows)


def seed(conn: psycopg.Connection) -> None:
    """Two endpoints of one project, six hourly windows for A and three (then no data) for B."""
    last = _window(5)
    _rows(conn, "model_endpoints", (
        "endpoint_id", "project", "model_name", "model_version", "model_class", "function_uri", "task",
        "first_request", "last_request", "prediction_count", "error_count", "drift_status", "dq_state",
        "last_window_start", "last_window_end",
    ), [
        (ENDPOINT_A, PROJECT, "claims-amount", "3", "sklearn.ensemble.GradientBoostingRegressor",
         "claims/serving:latest", "regression", T0, last[1] - timedelta(seconds=3), 7200, 110,
         "drift_detected", "failed", *last),
        (ENDPOINT_B, PROJECT, "fraud-score", "1", "sklearn.linear_model.LogisticRegression",
         "claims/fraud:latest", "classification", T0, T0 + timedelta(hours=3), 3600, 4, "skipped", "skipped",
         *last),
    ])
    _rows(conn, "reference_profiles",
          ("endpoint_id", "model_version", "version", "source", "row_count", "profile"),
          [(ENDPOINT_A, "3", 1, "table:claims.training", 50000, Jsonb({"features": list(NUMERIC)})),
           (ENDPOINT_B, "1", 1, "table:claims.training", 40000, Jsonb({"features": list(NUMERIC)}))])
    runs, drift, features, stats, dq, ops, perf, apps = [], [], [], [], [], [], [], []
    for endpoint in (ENDPOINT_A, ENDPOINT_B):
        for i in range(6):
            ws, we = _window(i)
            has_data = i in _windows(endpoint)
            status = _drift_status(endpoint, i) if has_data else "skipped"
            dq_state = "passed" if has_data else "skipped"
            if endpoint == ENDPOINT_A and i == 5:
                dq_state = "failed"
            runs.append((endpoint, ws, we, "ok" if has_data else "no_data", 1200 if has_data else 0, 0,
                         dq_state, status, "3", 1, "0.1.0", we, we + timedelta(seconds=20), 20.0))
            if not has_data:
                continue
            shift = 0.05 * i if endpoint == ENDPOINT_A else 0.01
            general = {"no_drift": 0.2, "possible_drift": 0.55, "drift_detected": 0.8}[status]
            summary = {
                "tvd_sum": 3 * shift, "tvd_mean": shift, "hellinger_sum": 3.3 * shift,
                "hellinger_mean": 1.1 * shift, "kld_sum": 6 * shift, "kld_mean": 2 * shift,
                "general_drift": general, "drifted_feature_count": float(i // 2),
                "prediction_mean": 2500 + 100 * i, "training_prediction_mean": 2500.0,
                "prediction_mean_shift": 0.04 * i, "prediction_hellinger": shift, "prediction_tvd": shift,
                "reconstruction_error": 0.1 + shift, "reconstruction_error_lower": 0.08,
                "reconstruction_error_upper": 0.12, "domain_classifier_auc": 0.5 + shift,
            }
            drift += [(endpoint, ws, we, m, v, status, dq_state, Jsonb({})) for m, v in summary.items()]
            for f_index, feature in enumerate(NUMERIC + CATEGORICAL):
                for m_index, metric in enumerate(DRIFT_METRICS):
                    value = shift * (1 + 0.1 * m_index) / (1 + f_index)
                    level = ("drift_detected" if value >= 0.2
                             else "possible_drift" if value >= 0.1 else "no_drift")
                    features.append((endpoint, ws, we, feature, metric, value,
                                     0.5 if metric in ("ks", "chi_square") else None, 0.1, 0.2, level))
            for feature, (ref_mean, ref_std) in zip(NUMERIC, ((2400.0, 600.0), (6.0, 2.5)), strict=True):
                mean = ref_mean + ref_std * 4 * shift
                values = {
                    "count": 1200, "null_count": 3, "invalid_count": 0, "mean": mean, "std": ref_std,
                    "min": mean - 3 * ref_std, "max": mean + 3 * ref_std, "p05": mean - 1.6 * ref_std,
                    "p25": mean - 0.7 * ref_std, "p50": mean, "p75": mean + 0.7 * ref_std,
                    "p95": mean + 1.6 * ref_std, "outside_band_share": shift / 4, "unseen_share": 0.0,
                    "ref_mean": ref_mean, "ref_std": ref_std, "ref_min": ref_mean - 3 * ref_std,
                    "ref_max": ref_mean + 3 * ref_std, "ref_band_low": ref_mean - 3 * ref_std,
                    "ref_band_high": ref_mean + 3 * ref_std,
                }
                stats += [(endpoint, ws, we, feature, m, float(v)) for m, v in values.items()]
            stats += [(endpoint, ws, we, "region", "count", 1200.0),
                      (endpoint, ws, we, "region", "unseen_share", 0.0)]
            failed = dq_state == "failed"
            dq += [
                (endpoint, ws, we, "row_count", "expect_table_row_count_to_be_between", None, True, 0, 0.0,
                 Jsonb(1200), "critical", Jsonb({})),
                (endpoint, ws, we, "claimed_amount_not_null", "expect_column_values_to_not_be_null",
                 "claimed_amount", not failed, 400 if failed else 0, 33.3 if failed else 0.0, None,
                 "critical", Jsonb({})),
            ]
            error_share = 0.08 if (endpoint == ENDPOINT_A and i == 5) else 0.01
            for b in range(12):
                bucket = ws + timedelta(minutes=5 * b)
                predictions = 100.0 + 10 * math.sin(b)
                latency = 40.0 + 5 * i + b
                ops += [(endpoint, ws, we, bucket, metric, value) for metric, value in (
                    ("predictions", predictions), ("errors", round(predictions * error_share)),
                    ("latency_avg", latency), ("latency_p50", latency - 5), ("latency_p95", latency * 2),
                    ("latency_p99", latency * 3))]
            if i <= 3:  # labels arrive late: the last windows have none yet
                for segment in ("all", "0-2000", "2000-5000", "10000-20000"):
                    for metric, value in (("mae", 310.0 + 20 * i), ("rmse", 450.0 + 25 * i),
                                          ("mape", 0.12 + 0.01 * i), ("r2", 0.81 - 0.02 * i)):
                        perf.append((endpoint, ws, we, segment, metric, value, 300, False, None, None))
            if endpoint == ENDPOINT_A:  # one region drifts in the last windows while the population does not
                for region, level in (("north", "drift_detected" if i >= 4 else "no_drift"), ("south", "no_drift"),
                                      ("other", "too_small")):
                    apps.append((endpoint, ws, we, "segment", f"region={region}", "segment_drift", level,
                                 0.3 if level == "drift_detected" else 0.05,
                                 Jsonb({"rows": 400 if region == "north" else 800 if region == "south" else 20,
                                        "reference_rows": 5000, "missing_values": 3, "errors": 1,
                                        "latency_avg": 41.5, "reasons": [],
                                        "drifted_features": ["claimed_amount"] if level == "drift_detected"
                                        else []}), we))
            if endpoint == ENDPOINT_A:  # estimated in every window, before and after its labels land
                for metric, value in (("mae", 300.0 + 30 * i), ("rmse", 440.0 + 30 * i)):
                    perf.append((endpoint, ws, we, "all", metric, value, 1200, True, value - 20, value + 20))
                apps.append((endpoint, ws, we, "performance", "estimated", "estimated_performance",
                             "drop_detected" if i == 5 else "no_drop", 300.0 + 30 * i,
                             Jsonb({"metric": "mae", "method": "dle", "reference": 300.0}), we))
            apps += [
                (endpoint, ws, we, "drift", "general_drift", "drift", status, general, Jsonb({}), we),
                (endpoint, ws, we, "latency_slo", "p95_over_budget_share", "metric", "ok", 0.02 * i,
                 Jsonb({}), we),
            ]
            if endpoint == ENDPOINT_A:
                kpis = {"total_claimed_amount": 3.0e6 + 1e5 * i, "total_savings": 2.1e5 + 5e3 * i,
                        "market_value": 1.8e7, "average_amount": 2500.0 + 100 * i}
                apps += [(endpoint, ws, we, "kpi", m, "kpi", "ok", v, Jsonb({}), we) for m, v in kpis.items()]
                z = 0.8 * i
                apps.append((endpoint, ws, we, "anomaly", "feature_mean:claimed_amount", "anomaly",
                             "anomaly" if z > 3 else "normal", z,
                             Jsonb({"mean": 2400.0, "std": 120.0, "band": [2040.0, 2760.0]}), we))
    _rows(conn, "interval_runs", (
        "endpoint_id", "window_start", "window_end", "status", "rows_seen", "bad_rows", "dq_state",
        "drift_status", "model_version", "reference_version", "library_version", "started_at", "finished_at",
        "duration_s"), runs)
    _rows(conn, "drift_summary", ("endpoint_id", "window_start", "window_end", "metric", "value",
                                  "drift_status", "dq_state", "details"), drift)
    _rows(conn, "feature_drift", ("endpoint_id", "window_start", "window_end", "feature", "metric", "value",
                                  "p_value", "threshold_possible", "threshold_detected", "status"), features)
    _rows(conn, "feature_stats", ("endpoint_id", "window_start", "window_end", "feature", "metric", "value"),
          stats)
    _rows(conn, "data_quality_results", (
        "endpoint_id", "window_start", "window_end", "expectation_id", "expectation_type", "column_name",
        "success", "unexpected_count", "unexpected_percent", "observed_value", "severity", "details"), dq)
    _rows(conn, "operational_metrics", ("endpoint_id", "window_start", "window_end", "bucket_start", "metric",
                                        "value"), ops)
    _rows(conn, "model_performance", ("endpoint_id", "window_start", "window_end", "segment", "metric",
                                      "value", "label_count", "estimated", "value_lower", "value_upper"), perf)
    _rows(conn, "app_results", ("endpoint_id", "window_start", "window_end", "application", "metric", "kind",
                                "status", "value", "extra", "schedule_time"), apps)
    _rows(conn, "retraining_events", ("endpoint_id", "window_start", "window_end", "event_type", "triggered",
                                      "outcome", "reasons", "evidence"),
          [(ENDPOINT_A, *last, "decision", True, "trigger", Jsonb(["drift_detected in 2 of 3 windows"]),
            Jsonb({"detected": 2}))])
    _rows(conn, "dynatrace_outbox", ("endpoint_id", "window_start", "window_end", "series_key", "line",
                                     "timestamp_ms"),
          [(ENDPOINT_A, *last, "mlmon.general_drift,endpoint_id=" + ENDPOINT_A,
            f"mlmon.general_drift,endpoint_id={ENDPOINT_A} 0.8", int(last[1].timestamp() * 1000))])
    conn.commit()


@pytest.fixture()
def readonly(conn: psycopg.Connection) -> psycopg.Connection:
    """The seeded database, seen through the role Grafana's login is a member of."""
    seed(conn)
    conn.execute("SET ROLE mlmon_readonly")
    conn.commit()
    assert conn.execute("SELECT current_user").fetchone()[0] == "mlmon_readonly"
    return conn


def _run(conn: psycopg.Connection, sql_text: str) -> tuple[list[str], list[tuple]]:
    with conn.cursor() as cur:
        cur.execute(sql_text)
        rows = cur.fetchall()
        return [c.name for c in cur.description], rows


def _resolve_variables(
    conn: psycopg.Connection, dash: dict[str, Any], *, time_from: datetime = RANGE_FROM,
    time_to: datetime = RANGE_TO, prefer: dict[str, str] | None = None,
) -> dict[str, str | list[str]]:
    """Run each variable query in order, as Grafana does; multi/All variables get every value.

    `prefer` puts a value first when present, so a single-value variable picks it.
    """
    values: dict[str, str | list[str]] = {}
    for var in dash["templating"]["list"]:
        if var["type"] == "custom":
            options = [o.strip() for o in var["query"].split(",")]
        else:
            _, rows = _run(conn, expand(var["query"], values, time_from=time_from, time_to=time_to))
            options = [str(r[0]) for r in rows]
        assert options, f"variable {var['name']} of {dash['uid']} has no values"
        wanted = (prefer or {}).get(var["name"])
        if wanted in options:
            options = [wanted, *(o for o in options if o != wanted)]
        values[var["name"]] = options if (var.get("multi") or var.get("includeAll")) else options[0]
    return values


def _check_time_series(title: str, columns: list[str], rows: list[tuple]) -> None:
    """What Grafana needs from a time-series SQL result: `time` first, sorted, numeric values."""
    assert columns[0] == "time", f"{title}: first column must be time, got {columns}"
    times = [r[0] for r in rows]
    assert times == sorted(times), f"{title}: rows not ordered by time"
    for row in rows:
        for name, value in zip(columns[1:], row[1:], strict=True):
            if name != "metric":
                assert value is None or isinstance(value, (int, float, Decimal)), f"{title}: {name}={value!r}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_every_panel_query_runs_as_the_readonly_role(readonly: psycopg.Connection, path: Path):
    dash = _load(path)
    variables = _resolve_variables(readonly, dash)
    assert variables["project"] == PROJECT
    failures, results = [], {}
    for panel in dash["panels"]:
        for target in panel["targets"]:
            sql_text = expand(target["rawSql"], variables, time_from=RANGE_FROM, time_to=RANGE_TO,
                              interval=timedelta(minutes=5))
            try:
                columns, rows = _run(readonly, sql_text)
            except psycopg.Error as exc:
                readonly.rollback()
                failures.append(f"{panel['title']}: {exc}".splitlines()[0])
                continue
            if target["format"] == "time_series":
                _check_time_series(panel["title"], columns, rows)
            results[panel["title"]] = (columns, rows)
    assert not failures, failures
    for uid, title in KEY_PANELS:
        if uid == dash["uid"]:
            assert results[title][1], f"{title} returned no rows"


def test_key_panels_show_the_seeded_values(readonly: psycopg.Connection):
    dashboards = _dashboards()

    def panel_result(uid: str, title: str, **overrides: Any) -> list[dict[str, Any]]:
        dash = dashboards[uid]
        variables = {**_resolve_variables(readonly, dash), **overrides}
        panel = next(p for p in dash["panels"] if p["title"] == title)
        columns, rows = _run(readonly, expand(panel["targets"][0]["rawSql"], variables, time_from=RANGE_FROM,
                                              time_to=RANGE_TO))
        return [dict(zip(columns, row, strict=True)) for row in rows]

    table = panel_result("mlmon-overview", "Model endpoints")
    assert [(r["Endpoint ID"], r["Drift Status"]) for r in table] == [
        (ENDPOINT_A, "drift_detected"), (ENDPOINT_B, "skipped")]
    assert panel_result("mlmon-overview", "Endpoints") == [{"Endpoints": 2}]

    drift = panel_result("mlmon-details", "Overall drift analysis", endpoint=ENDPOINT_A)
    assert drift[0]["TVD (mean)"] == pytest.approx(0.25) and drift[0]["KLD (sum)"] == pytest.approx(1.5)
    multivariate = panel_result("mlmon-details", "Multivariate drift", endpoint=ENDPOINT_A)
    assert len(multivariate) == 18 and {r["metric"] for r in multivariate} == {
        "reconstruction error", "upper band (drift_detected)", "lower band (drift_detected)"}
    last = [r["value"] for r in multivariate if r["metric"] == "reconstruction error"][-1]
    assert last == pytest.approx(0.1 + 0.05 * 5)
    segments = panel_result("mlmon-details", "Drift per segment", endpoint=ENDPOINT_A)
    assert [(r["Segment"], r["Drift Status"]) for r in segments] == [
        ("all", "drift_detected"), ("region=north", "drift_detected"), ("region=south", "no_drift"),
        ("region=other", "too_small")]
    assert segments[1]["Drifted features"] == "claimed_amount" and segments[1]["Rows"] == 400
    assert segments[0]["Rows"] == 1200 and segments[2]["Latency avg (ms)"] == pytest.approx(41.5)
    only = panel_result("mlmon-details", "Drift per segment", endpoint=ENDPOINT_A, segment=["region=south"])
    assert [r["Segment"] for r in only] == ["region=south"]
    auc = panel_result("mlmon-details", "Domain classifier AUC", endpoint=ENDPOINT_A)
    assert [r["value"] for r in auc] == pytest.approx([0.5 + 0.05 * i for i in range(6)])
    features = panel_result("mlmon-details", "Features analysis", endpoint=ENDPOINT_A)
    assert [r["Feature"] for r in features] == ["claimed_amount", "vehicle_age", "region"]
    top = features[0]
    assert top["Drift Status"] == "drift_detected" and top["Expected Mean"] == pytest.approx(2400.0)
    assert top["Actual Mean"] == pytest.approx(2400.0 + 600.0 * 4 * 0.25)
    assert top["TVD"] == pytest.approx(0.25)
    assert features[2]["Expected Mean"] is None  # categorical: no numeric statistics

    kpis = panel_result("mlmon-kpis", "Business KPIs")
    assert kpis[0]["Total claimed amount"] == pytest.approx(6 * 3.0e6 + 1e5 * 15)
    buckets = panel_result("mlmon-kpis", "Model performance by bucket", endpoint=[ENDPOINT_A])
    assert [r["Bucket"] for r in buckets] == ["all", "0-2000", "2000-5000", "10000-20000"]
    assert buckets[0]["MAE"] == pytest.approx(370.0) and buckets[0]["Accuracy"] is None
    assert buckets[0]["Labels"] == 300  # the realised rows alone: estimated ones rest on 1200 predictions
    versus = panel_result("mlmon-kpis", "Estimated vs realised performance", endpoint=[ENDPOINT_A])
    assert len(versus) == 6 and {r["metric"] for r in versus} == {f"{ENDPOINT_A} mae"}
    assert [r["estimated"] for r in versus] == pytest.approx([300.0 + 30 * i for i in range(6)])
    assert [r["realised"] for r in versus] == [310.0 + 20 * i for i in range(4)] + [None, None]
    assert versus[3]["realised minus estimated"] == pytest.approx(370.0 - 390.0)
    assert versus[0]["band lower"] == pytest.approx(280.0) and versus[0]["band upper"] == pytest.approx(320.0)

    latency = panel_result("mlmon-performance", "Average latency", endpoint=[ENDPOINT_A])
    assert len(latency) == 72
    assert latency[0]["5-minute average"] == pytest.approx(40.0)
    assert latency[11]["1-hour rolling average"] is not None
    applications = _resolve_variables(readonly, dashboards["mlmon-applications"])["application"]
    assert "segment" in applications  # segments are one more application to pick
    pie = panel_result("mlmon-applications", "Drift status by category",
                       application=[a for a in applications if a != "segment"])
    assert pie == [{"No drift": 5, "Possible drift": 2, "Drift detected": 2}]
    # north drifted in two windows, south never; too_small is no drift status
    assert panel_result("mlmon-applications", "Drift status by category") == [
        {"No drift": 5 + 10, "Possible drift": 2, "Drift detected": 2 + 2}]


def test_alert_rule_queries_fire_for_the_right_endpoints(readonly: psycopg.Connection):
    evaluated_at = T0 + timedelta(hours=6, minutes=10)
    firing: dict[str, set[str]] = {}
    for rule in _alert_rules():
        query = next(d for d in rule["data"] if d["refId"] == "A")
        start = evaluated_at - timedelta(seconds=query["relativeTimeRange"]["from"])
        sql_text = expand(query["model"]["rawSql"], {}, time_from=start, time_to=evaluated_at)
        columns, rows = _run(readonly, sql_text)
        assert columns[0] == "endpoint_id" and len(columns) == 2, rule["uid"]
        evaluator = next(d for d in rule["data"] if d["refId"] == rule["condition"])["model"]["conditions"][0]
        kind, limit = evaluator["evaluator"]["type"], evaluator["evaluator"]["params"][0]
        assert kind == "gt"
        firing[rule["uid"]] = {endpoint for endpoint, value in rows if value is not None and value > limit}
    assert firing == {
        "mlmon-drift-detected": {ENDPOINT_A},
        "mlmon-data-quality-failed": {ENDPOINT_A},
        "mlmon-error-rate-high": {ENDPOINT_A},
        "mlmon-no-data": {ENDPOINT_B},
        "mlmon-estimated-performance-drop": {ENDPOINT_A},
    }
