"""Dashboards, alerts and the SQL extension in dashboards/dynatrace only use what the push really emits."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from monitoring_lib.config import EndpointConfig
from monitoring_lib.dynatrace.lines import METRIC_TABLE, build_interval_lines, build_performance_lines
from tests.database.test_dynatrace_push import make_cfg

DASH_DIR = Path(__file__).resolve().parents[2] / "dashboards" / "dynatrace"
PREFIX = "mlmon"
KEY_RE = re.compile(rf"(?<![\w.]){PREFIX}(?:\.[A-Za-z0-9_-]+)+")
SPLIT_RE = re.compile(r"splitBy\(([^)]*)\)")
FILTER_DIM_RE = re.compile(r"\b(?:eq|ne|in|prefix|suffix|contains|existsKey)\(\s*\"([^\"]+)\"")
PLACEHOLDER_RE = re.compile(r"\{dims:([^}]+)\}")
PERF_METRICS = ("rmse", "mae", "accuracy", "f1")


def _key_dims(key: str) -> set[str] | None:
    """Dimensions the push attaches to `key` according to METRIC_TABLE, or None if it is not pushed."""
    for spec in METRIC_TABLE:
        pattern = re.escape(f"{PREFIX}.{spec.key}").replace(re.escape("{metric}"), "[A-Za-z0-9_-]+")
        if re.fullmatch(pattern, key):
            return set(spec.dimensions)
    return None


def _dims_in(text: str) -> set[str]:
    dims = set(FILTER_DIM_RE.findall(text)) | set(PLACEHOLDER_RE.findall(text))
    for group in SPLIT_RE.findall(text):
        dims |= set(re.findall(r"\"([^\"]+)\"", group))
    return dims


def _text(obj: Any) -> str:
    """Every string inside a JSON value, one per line (selectors unescaped, unlike json.dumps)."""
    if isinstance(obj, dict):
        return "\n".join(_text(v) for v in obj.values())
    if isinstance(obj, list):
        return "\n".join(_text(v) for v in obj)
    return obj if isinstance(obj, str) else ""


def _units() -> list[tuple[str, set[str], set[str]]]:
    """(where, metric keys, dimensions) for every tile, metric event and SQL query group."""
    units: list[tuple[str, set[str], set[str]]] = []
    dashboard = json.loads((DASH_DIR / "model_monitoring_dashboard.json").read_text())
    for tile in dashboard["tiles"]:
        if tile["tileType"] != "DATA_EXPLORER":
            continue
        text = _text(tile)
        dims = _dims_in(text) | {d for q in tile["queries"] for d in q["splitBy"]}
        units.append((f"tile {tile['customName']}", set(KEY_RE.findall(text)), dims))
    for event in json.loads((DASH_DIR / "metric_events.json").read_text()):
        text = _text(event)
        units.append((f"event {event['value']['summary']}", set(KEY_RE.findall(text)), _dims_in(text)))
    for group in _extension()["sqlPostgres"]:
        keys = {m["key"] for m in group["metrics"]}
        units.append((f"sql group {group['group']}", keys, {d["key"] for d in group["dimensions"]}))
    return units


def _extension() -> dict[str, Any]:
    return yaml.safe_load((DASH_DIR / "sql_extension.yaml").read_text())


def test_every_file_in_the_folder_is_checked() -> None:
    names = sorted(p.name for p in DASH_DIR.iterdir())
    assert names == ["metric_events.json", "model_monitoring_dashboard.json", "sql_extension.yaml"]


def test_every_referenced_key_and_dimension_is_in_the_metric_table() -> None:
    units = _units()
    assert len(units) >= 15
    for where, keys, dims in units:
        assert keys, f"{where} references no metric"
        for key in keys:
            assert _key_dims(key) is not None, f"{where}: '{key}' is not pushed"
        allowed = set.intersection(*(_key_dims(k) or set() for k in keys))
        assert dims and dims <= allowed, f"{where}: dimensions {sorted(dims - allowed)} are not on {sorted(keys)}"
    for metric in _extension()["metrics"]:
        assert _key_dims(metric["key"]) is not None


def test_dashboard_shows_every_pushed_metric() -> None:
    text = (DASH_DIR / "model_monitoring_dashboard.json").read_text()
    shown = set(KEY_RE.findall(text))
    for spec in METRIC_TABLE:
        pattern = re.escape(f"{PREFIX}.{spec.key}").replace(re.escape("{metric}"), "[A-Za-z0-9_-]+")
        assert any(re.fullmatch(pattern, key) for key in shown), f"no tile shows {spec.name}"


def test_metric_events_have_the_settings_shape() -> None:
    events = json.loads((DASH_DIR / "metric_events.json").read_text())
    assert {e["value"]["summary"].split(": ")[1].split(" ")[0] for e in events} == {"drift", "data-quality", "error",
                                                                                         "performance"}
    for event in events:
        assert event["schemaId"] == "builtin:anomaly-detection.metric-events"
        assert event["scope"] == "environment"
        value = event["value"]
        assert value["queryDefinition"]["type"] == "METRIC_SELECTOR"
        assert value["queryDefinition"]["metricSelector"].count("(") == value["queryDefinition"][
            "metricSelector"].count(")")
        props = value["modelProperties"]
        assert props["type"] == "STATIC_THRESHOLD" and props["alertCondition"] in {"ABOVE", "BELOW"}
        assert props["violatingSamples"] <= props["samples"] and props["dealertingSamples"] <= props["samples"]
        assert value["eventTemplate"]["eventType"] == "CUSTOM_ALERT" and value["eventTemplate"]["title"]


# --- against real data: the push and the pull agree --------------------------------------------

def _cfg() -> EndpointConfig:
    return make_cfg(features=["age", "amount", "region"])


def _fill(conn: psycopg.Connection, start: datetime, end: datetime) -> None:
    conn.execute(
        "INSERT INTO monitoring.model_endpoints (endpoint_id, project, model_name, model_version)"
        " VALUES ('ep-1', 'claims', 'gbm', '3')"
    )
    w = ("ep-1", start, end)
    for metric, value in [("general_drift", 0.61), ("tvd_mean", 0.12), ("hellinger_mean", 0.22),
                          ("kld_mean", 0.05), ("prediction_mean", 812.5),
                          ("reconstruction_error", 1.9), ("domain_classifier_auc", 0.71)]:
        conn.execute(
            "INSERT INTO monitoring.drift_summary (endpoint_id, window_start, window_end, metric, value,"
            " drift_status) VALUES (%s, %s, %s, %s, %s, 'drift_detected')",
            (*w, metric, value),
        )
    for feature, value in [("age", 0.31), ("amount", 0.72), ("region", 0.02)]:
        conn.execute(
            "INSERT INTO monitoring.feature_drift (endpoint_id, window_start, window_end, feature, metric, value)"
            " VALUES (%s, %s, %s, %s, 'hellinger', %s)",
            (*w, feature, value),
        )
    for i, success in enumerate([False, True, False]):
        conn.execute(
            "INSERT INTO monitoring.data_quality_results (endpoint_id, window_start, window_end, expectation_id,"
            " expectation_type, success, severity) VALUES (%s, %s, %s, %s, 'x', %s, 'critical')",
            (*w, f"e{i}", success),
        )
    for minute, predictions, errors, avg, p95 in [(0, 120, 3, 12.0, 40.0), (5, 60, 0, 30.0, 90.0),
                                                  (10, 20, 1, 8.0, 20.0)]:
        for metric, value in [("predictions", predictions), ("errors", errors), ("latency_avg", avg),
                              ("latency_p95", p95)]:
            conn.execute(
                "INSERT INTO monitoring.operational_metrics (endpoint_id, window_start, window_end,"
                " bucket_start, metric, value) VALUES (%s, %s, %s, %s, %s, %s)",
                (*w, start + timedelta(minutes=minute), metric, value),
            )
    for metric, value in zip(PERF_METRICS, (4.2, 3.1, 0.91, 0.88), strict=True):
        conn.execute(
            "INSERT INTO monitoring.model_performance (endpoint_id, window_start, window_end, segment, metric,"
            " value, label_count) VALUES (%s, %s, %s, 'all', %s, %s, 120)",
            (*w, metric, value),
        )
    # estimated before the labels land: its own keys, never taken for the realised values
    for metric, value in (("mae", 5.5), ("rmse", 7.5), ("roc_auc", 0.81), ("accuracy", 0.77)):
        conn.execute(
            "INSERT INTO monitoring.model_performance (endpoint_id, window_start, window_end, segment, metric,"
            " value, label_count, estimated, value_lower, value_upper) VALUES (%s, %s, %s, 'all', %s, %s, 1200,"
            " true, %s, %s)", (*w, metric, value, value * 0.9, value * 1.1),
        )
    for segment, status in (("region=north", "drift_detected"), ("region=other", "too_small")):
        conn.execute("INSERT INTO monitoring.app_results (endpoint_id, window_start, window_end, application, metric,"
                     " kind, status, schedule_time) VALUES (%s, %s, %s, 'segment', %s, 'segment_drift', %s, %s)",
                     (*w, segment, status, end))
    conn.execute("INSERT INTO monitoring.app_results (endpoint_id, window_start, window_end, application, metric,"
                 " kind, status, value, schedule_time) VALUES (%s, %s, %s, 'performance', 'estimated',"
                 " 'estimated_performance', 'drop_detected', 5.5, %s)", (*w, end))


@pytest.fixture()
def pushed(conn: psycopg.Connection) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Key -> [(dimensions, value)] as the push emits them for a window that just ended."""
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=1)
    _fill(conn, start, end)
    conn.commit()
    lines = [*build_interval_lines(conn, _cfg(), start, end, "3").lines,
             *build_performance_lines(conn, _cfg(), end, start, "3").lines]
    emitted: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in lines:
        value = float(line.payload.split(",")[1].removeprefix("delta="))
        emitted.setdefault(line.key, []).append((dict(line.dimensions), value))
    return emitted


def test_referenced_keys_and_dimensions_are_emitted_by_the_push(pushed: dict) -> None:
    for where, keys, dims in _units():
        for key in keys:
            assert key in pushed, f"{where}: the push emitted no '{key}'"
            emitted_dims = set.union(*(set(d) for d, _ in pushed[key]))
            assert dims <= emitted_dims, f"{where}: {sorted(dims - emitted_dims)} not on '{key}'"


def test_sql_extension_queries_run_and_agree_with_the_push(conn: psycopg.Connection, pushed: dict) -> None:
    compared = 0
    for group in _extension()["sqlPostgres"]:
        cur = conn.execute(group["query"])
        columns = [c.name for c in cur.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
        conn.commit()
        assert rows, f"sql group {group['group']} returned nothing"
        refs = [m["value"] for m in group["metrics"]] + [d["value"] for d in group["dimensions"]]
        assert all(r.startswith("col:") and r[4:] in columns for r in refs), group["group"]
        for row in rows:
            dims = {d["key"]: str(row[d["value"][4:]]) for d in group["dimensions"]}
            for metric in group["metrics"]:
                expected = [v for d, v in pushed[metric["key"]] if d == dims]
                assert len(expected) == 1, f"{metric['key']} {dims}"
                assert math.isclose(float(row[metric["value"][4:]]), expected[0], rel_tol=1e-9), metric["key"]
                compared += 1
    assert compared == 17  # 6 drift, 3 features, 1 quality, 3 operational, 4 performance


def test_segments_and_the_estimate_have_their_own_series(pushed: dict) -> None:
    [(dims, level)] = pushed["mlmon.segment.drift.status"]  # too_small is no level: not pushed
    assert dims["segment"] == "region=north" and level == 2.0
    assert [v for _, v in pushed["mlmon.estimated_performance.mae"]] == [5.5]
    assert [v for _, v in pushed["mlmon.estimated_performance.status"]] == [2.0]
    assert [v for _, v in pushed["mlmon.performance.mae"]] != [5.5]  # the realised series keeps its own values
