"""What an operator's page needs: each endpoint's recent windows, staleness, states, drift reasons and failures.

The reads are `results.view`'s; this module composes them. No Airflow import (the Airflow metadata, such as
paused DAGs and failed runs, is read by the UI plugin). The endpoint's interval is the length of its last window, so
staleness needs no config file: a window is due one interval after the last one ended.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from monitoring_lib.results.endpoints import list_endpoints
from monitoring_lib.results.view import (
    app_findings,
    drifted_features,
    failed_checks,
    recent_windows,
    retraining_history,
    window_estimate,
    window_segments,
)

DEFAULT_WINDOWS = 24
STATES = ("quality_failed", "quality_warning", "drift_detected", "possible_drift", "stale", "late", "failed_run")
SORTS = ("endpoint", "staleness", "severity")


def human_age(delta: timedelta) -> str:
    """'3 days 4 hours', '2 hours 5 minutes', '40 seconds': two units at most, for people."""
    seconds = max(0, int(delta.total_seconds()))
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    if not parts:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return " ".join(parts[:2])


def staleness(last_end: datetime | None, interval: timedelta | None, now: datetime) -> dict[str, Any]:
    """fresh: the next window is not overdue; late: one or two windows overdue; stale: three or more (or none)."""
    if last_end is None or interval is None or interval <= timedelta(0):
        return {"state": "stale", "age_s": None, "age": "no window computed", "missed": None}
    age = now - last_end
    missed = max(0, int(age / interval) - 1)
    state = "fresh" if missed == 0 else "late" if missed < 3 else "stale"
    return {"state": state, "age_s": age.total_seconds(), "age": f"{human_age(age)} ago", "missed": missed}


def _states(e: dict[str, Any]) -> set[str]:
    last = e["windows"][-1] if e["windows"] else {}
    states = {e["staleness"]["state"]}
    if last.get("dq_state") == "failed":
        states.add("quality_failed")
    if last.get("dq_state") == "warning":
        states.add("quality_warning")
    if last.get("drift_status") in ("drift_detected", "possible_drift"):
        states.add(last["drift_status"])
    if last.get("status") == "failed":
        states.add("failed_run")
    return states


def _severity(e: dict[str, Any]) -> int:
    weights = {"failed_run": 10, "quality_failed": 8, "stale": 6, "drift_detected": 4, "late": 2,
               "quality_warning": 1, "possible_drift": 1}
    return sum(weights.get(s, 0) for s in e["states"])


def overviews(conn: psycopg.Connection, *, windows: int = DEFAULT_WINDOWS, now: datetime | None = None,
              endpoint_ids: set[str] | None = None) -> list[dict[str, Any]]:
    """Per endpoint: registry row, the last `windows` windows, staleness, states, latest failures and retraining.

    `endpoint_ids` limits the result (the endpoints a viewer may see); None means all.
    """
    now = now or datetime.now(UTC)
    rows = [r for r in list_endpoints(conn) if endpoint_ids is None or r["endpoint_id"] in endpoint_ids]
    ids = [r["endpoint_id"] for r in rows]
    strips = recent_windows(conn, ids, windows)
    history = retraining_history(conn, ids, 10)
    result = []
    for row in rows:
        strip = strips[row["endpoint_id"]]
        computed = [w for w in strip if w["status"] != "failed"]
        last = computed[-1] if computed else None
        interval = (strip[-1]["window_end"] - strip[-1]["window_start"]) if strip else None
        events = history[row["endpoint_id"]]
        item = {
            **row, "windows": strip, "interval_s": interval.total_seconds() if interval else None,
            "staleness": staleness(last["window_end"] if last else None, interval, now),
            "failed_checks": failed_checks(conn, row["endpoint_id"], last["window_start"], last["window_end"])
            if last else [],
            "drifted_features": list(last["drifted_features"]) if last else [],
            "drift_reasons": list(last["drift_reasons"]) if last else [],
            "last_decision": next((e for e in events if e["event_type"] == "decision"), None),
            "last_training": next((e for e in events if e["event_type"] == "training"), None),
        }
        item["states"] = sorted(_states(item))
        result.append(item)
    return result


def filter_and_sort(items: list[dict[str, Any]], state: str | None, sort: str | None) -> list[dict[str, Any]]:
    """Server-side filter by one state (see STATES, or fresh) and sort: endpoint, staleness (oldest first), severity."""
    if state:
        items = [e for e in items if state in e["states"]]
    if sort == "staleness":
        return sorted(items, key=lambda e: (-(e["staleness"]["age_s"] if e["staleness"]["age_s"] is not None
                                              else float("inf")), e["endpoint_id"]))
    if sort == "severity":
        return sorted(items, key=lambda e: (-_severity(e), e["endpoint_id"]))
    return items


def endpoint_detail(conn: psycopg.Connection, endpoint_id: str, *, windows: int = 96,
                    now: datetime | None = None) -> dict[str, Any] | None:
    """One endpoint's overview with a longer strip, drifted features with metric values, its segments and
    estimated performance, and retraining history."""
    found = overviews(conn, windows=windows, now=now, endpoint_ids={endpoint_id})
    if not found:
        return None
    item = found[0]
    computed = [w for w in item["windows"] if w["status"] != "failed"]
    last = computed[-1] if computed else None
    item["feature_drift"] = (drifted_features(conn, endpoint_id, last["window_start"], last["window_end"])
                             if last else [])
    item["app_findings"] = app_findings(conn, endpoint_id, last["window_start"], last["window_end"]) if last else []
    item["segments"] = window_segments(conn, endpoint_id, last["window_start"], last["window_end"]) if last else []
    item["estimate"] = window_estimate(conn, endpoint_id, last["window_start"], last["window_end"]) if last else None
    item["retraining_history"] = retraining_history(conn, [endpoint_id], 50)[endpoint_id]
    return item
