"""The DAG tasks' bodies: the one place that speaks Airflow's forms (XCom's ISO windows and JSON dicts, the
run's params) to the library, whose functions take datetimes and return values.

Each function is one task: what it reads from XCom comes in as a dict, what it returns goes to XCom and is
JSON-safe and small (no DataFrame). The Airflow glue in `plugins/` adds only what needs Airflow itself: the
Connection, task states, notes and callbacks.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from monitoring_lib.compute.groups.partials import GroupPartial, summarise_group
from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.dynatrace.client import URL_ENV, IngestClient
from monitoring_lib.dynatrace.push import push_pending
from monitoring_lib.errors import DynatraceUnavailableError
from monitoring_lib.performance import recompute_recent
from monitoring_lib.results.outbox import tidy
from monitoring_lib.results.report import stored_failed_critical, stored_report
from monitoring_lib.retraining import decisions, job
from monitoring_lib.runner import enforce_quality_gate, run_interval
from monitoring_lib.schedule import grace_passed, resolve_window


def window_of(data: dict[str, Any], start: str = "start", end: str = "end") -> tuple[datetime, datetime]:
    """A window from its XCom form (`{"start": iso, "end": iso}`, or a report's `window_start`/`window_end`)."""
    return datetime.fromisoformat(data[start]), datetime.fromisoformat(data[end])


def wait_for_window(cfg: EndpointConfig, data_interval_start: datetime | None, data_interval_end: datetime | None,
                    params: dict[str, Any]) -> tuple[bool, dict[str, str]]:
    """wait_for_data: whether the run's window is past its grace period, and the window as ISO text."""
    start, end = resolve_window(data_interval_start, data_interval_end, cfg.schedule.interval,
                                cfg.schedule.start_date, params.get("window_start"), params.get("window_end"))
    return grace_passed(end, cfg.schedule.grace_period), {"start": start.isoformat(), "end": end.isoformat()}


def summarise_feature_group(url: str, cfg: EndpointConfig, window: dict[str, str], group: int, *,
                            force: bool = False) -> dict[str, Any]:
    """summarise_group (mapped): one feature group's partial, or `reused` when the stored window is current
    (the interval task then reuses it too)."""
    start, end = window_of(window)
    if not force and stored_report(url, cfg, start, end) is not None:
        return {"group": group, "reused": True}
    return summarise_group(url, cfg, group, start, end, now=datetime.now(timezone.utc)).to_json()


def compute_window(url: str, cfg: EndpointConfig, window: dict[str, str], *, force: bool = False,
                   groups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """compute_interval: the window's report, computed, or the stored one while it is current.

    `groups` are the mapped feature-group tasks' results when the endpoint is split over workers.
    """
    start, end = window_of(window)
    if not force:
        current = stored_report(url, cfg, start, end)
        if current is not None:
            if current.dq_state == "failed":  # the stored verdict; `force_recompute` re-checks after a config fix
                enforce_quality_gate(cfg, current.window_start, current.window_end,
                                     stored_failed_critical(url, cfg, current.window_start, current.window_end),
                                     stored=True)
            return {**current.to_dict(), "reused": True}
    partials = None if groups is None else [GroupPartial.from_json(g) for g in groups if not g.get("reused")]
    return {**run_interval(url, cfg, start, end, groups=partials).to_dict(), "reused": False}


def model_performance(url: str, cfg: EndpointConfig, report: dict[str, Any]) -> dict[str, Any]:
    """model_performance: the realised metrics of the windows whose labels landed since, staged for Dynatrace
    under the report's window."""
    start, end = window_of(report, "window_start", "window_end")
    return recompute_recent(url, cfg, end, start)


def push_dynatrace(url: str, client: IngestClient | None, endpoint_id: str) -> dict[str, Any]:
    """push_dynatrace: send the endpoint's pending lines; an outage raises, so only this task retries."""
    if client is None:
        with connect(url) as conn:
            expired = tidy(conn, endpoint_id=endpoint_id)
            conn.commit()
        return {"status": "not_configured", "expired": expired,
                "detail": f"no dynatrace_default Connection and no {URL_ENV}: lines stay in "
                "monitoring.dynatrace_outbox while they are under an hour old (Dynatrace takes no older points)"}
    with client:
        report = push_pending(lambda: connect(url), client, endpoint_id=endpoint_id)
    if report.errors:
        raise DynatraceUnavailableError("; ".join(report.errors))
    return {"status": "ok", "sent": report.sent, "invalid": report.invalid, "expired": report.expired,
            "held_back": report.skipped, "batches": report.batches, "retries": report.retries}


def decide_retraining(url: str, cfg: EndpointConfig, report: dict[str, Any]) -> dict[str, Any] | bool:
    """decide_retraining: the trigger's conf when retraining is due, else False (which short-circuits)."""
    start, end = window_of(report, "window_start", "window_end")
    decision, run_id = decisions.decide_window(url, cfg, start, end)
    if not decision.trigger:
        return False
    return {"endpoint_id": cfg.endpoint_id, "window_start": report["window_start"], "window_end": report["window_end"],
            "run_id": run_id, "reasons": decision.reasons, "drifted_features": decision.drifted_features}


def record_trigger(url: str, conf: dict[str, Any], error: str | None = None) -> str:
    """trigger_retraining's callbacks: the trigger's real outcome for `conf` as decide_retraining returned it."""
    start, end = window_of(conf, "window_start", "window_end")
    return decisions.record_trigger(url, conf["endpoint_id"], start, end, conf["run_id"], error)


def retrain(url: str, cfg: EndpointConfig, conf: dict[str, Any]) -> dict[str, Any]:
    """The retraining DAG's task, with the conf the trigger passed."""
    start, end = window_of(conf, "window_start", "window_end")
    return job.retrain(url, cfg, start, end, reasons=list(conf.get("reasons") or []), run_id=conf.get("run_id"))
