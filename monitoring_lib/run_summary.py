"""What one monitored window came to, in the forms operators read it: task log lines, a run note, an asset
event's extra, and the quality gate's verdict.

Built from the stored results (`interval_runs`, `data_quality_results`, `feature_drift`) and the interval's
report, so a window reused unchanged is summarised exactly like one computed now. Everything here is small
and JSON-safe: it goes to XCom and the Airflow metadata database, never a DataFrame.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.results.view import drifted_features, failed_checks, run_details

log = logging.getLogger(__name__)
MAX_CHECKS = 20  # failed checks carried by name; the count is always complete
MAX_FEATURES = 10
NOTE_LIMIT = 1000  # Airflow's dag_run_note.content is a varchar(1000)


@dataclass(frozen=True)
class WindowOutcome:
    endpoint_id: str
    window_start: str
    window_end: str
    status: str  # ok | no_data
    rows: int
    bad_rows: int
    bad_rows_by_reason: dict[str, int]
    dq_state: str | None
    checks_failed: int
    critical_failed: list[str]  # expectation ids, capped at MAX_CHECKS
    failed_checks: list[dict[str, Any]]  # {id, column, severity, unexpected}, critical first, capped
    drift_status: str | None
    drifted: list[dict[str, Any]]  # {feature, status, metric, value}, worst first, capped
    reasons: list[str]
    model_version: str | None
    reference_version: int | None
    compute_mode: str | None
    dynatrace_lines: int
    timings: dict[str, float] = field(default_factory=dict)
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _drift_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per drifted feature: its worst metric (detected before possible, then by value)."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["status"] not in ("possible_drift", "drift_detected"):
            continue
        key = (r["status"] == "drift_detected", r["value"] if r["value"] is not None else 0.0)
        kept = best.get(r["feature"])
        if kept is None or key > (kept["status"] == "drift_detected", kept["value"] or 0.0):
            best[r["feature"]] = {"feature": r["feature"], "status": r["status"], "metric": r["metric"],
                                  "value": None if r["value"] is None else round(float(r["value"]), 4)}
    return sorted(best.values(), key=lambda d: (d["status"] != "drift_detected", -(d["value"] or 0.0)))


def window_outcome(conn: psycopg.Connection, report: dict[str, Any]) -> WindowOutcome:
    """The outcome of the window an interval report describes, read back from what was stored."""
    e, start, end = report["endpoint_id"], datetime.fromisoformat(report["window_start"]), \
        datetime.fromisoformat(report["window_end"])
    run = run_details(conn, e, start, end) or {}
    by_reason = {str(k): int(v) for k, v in (run.get("bad_row_details") or {}).items() if isinstance(v, int | float)}
    checks = failed_checks(conn, e, start, end)
    drift = _drift_rows(drifted_features(conn, e, start, end))
    return WindowOutcome(
        endpoint_id=e, window_start=report["window_start"], window_end=report["window_end"],
        status=report["status"], rows=int(report["rows"]), bad_rows=int(report["bad_rows"]),
        bad_rows_by_reason=dict(sorted(by_reason.items(), key=lambda kv: -kv[1])),
        dq_state=report["dq_state"], checks_failed=len(checks),
        critical_failed=[c["expectation_id"] for c in checks if c["severity"] == "critical"][:MAX_CHECKS],
        failed_checks=[{"id": c["expectation_id"], "column": c["column_name"], "severity": c["severity"],
                        "unexpected": c["unexpected_count"]} for c in checks[:MAX_CHECKS]],
        drift_status=report["drift_status"], drifted=drift[:MAX_FEATURES], reasons=list(report.get("reasons") or []),
        model_version=report.get("model_version"), reference_version=report.get("reference_version"),
        compute_mode=run.get("compute_mode"), dynatrace_lines=int(report.get("dynatrace_lines") or 0),
        timings=dict(report.get("timings") or {}), reused=bool(report.get("reused")),
    )


def quality_verdict(cfg: EndpointConfig, outcome: WindowOutcome) -> str | None:
    """Why the quality gate is skipped, or None when it passes.

    Only a failed window (a critical check failed) closes the gate; warnings pass and are in the note. Under
    `fail_task` compute_interval itself fails, so the gate is upstream_failed and never gets here.
    """
    if outcome.dq_state != "failed":
        return None
    drift = {"skip_drift": "drift was skipped", "compute_drift": "drift was computed anyway"}.get(
        cfg.quality.on_failure, "")
    return (f"data quality failed for [{outcome.window_start}, {outcome.window_end}): {outcome.checks_failed} checks"
            f" failed, critical: {', '.join(outcome.critical_failed) or '-'}; {drift}"
            f" (quality.on_failure={cfg.quality.on_failure})")


def _features(outcome: WindowOutcome) -> str:
    return ", ".join(f"{d['feature']} ({d['metric']} {d['value']}, {d['status']})" for d in outcome.drifted) or "-"


def log_lines(outcome: WindowOutcome) -> list[str]:
    """A handful of lines a task log shows: what was read, what failed, what drifted, what was queued."""
    o = outcome
    head = f"window [{o.window_start}, {o.window_end}) of {o.endpoint_id}: {o.status}, {o.rows} rows"
    lines = [head + (", reused: unchanged since its last computation" if o.reused else "")]
    reasons = ", ".join(f"{k} {v}" for k, v in o.bad_rows_by_reason.items())
    lines.append(f"bad rows: {o.bad_rows}" + (f" ({reasons})" if reasons else ""))
    checks = ", ".join(f"{c['id']} [{c['severity']}]" for c in o.failed_checks)
    lines.append(f"data quality: {o.dq_state or '-'}, {o.checks_failed} checks failed"
                 + (f": {checks}" if checks else ""))
    lines.append(f"drift: {o.drift_status or '-'}; drifted features: {_features(o)}")
    if o.reasons:
        lines.append("drift reasons: " + "; ".join(o.reasons))
    timing = ", ".join(f"{k} {v:.2f}s" for k, v in o.timings.items())
    lines.append(f"model version {o.model_version}, reference {o.reference_version}, mode {o.compute_mode};"
                 f" Dynatrace lines queued: {o.dynatrace_lines}" + (f"; timings: {timing}" if timing else ""))
    return lines


def summarise(url: str, report: dict[str, Any]) -> WindowOutcome:
    """The window's outcome, logged at INFO in a few lines (the task log's summary of the interval)."""
    with connect(url) as conn:
        outcome = window_outcome(conn, report)
    for line in log_lines(outcome):
        log.info(line)
    return outcome


def note_markdown(outcome: WindowOutcome, failed_tasks: list[str] | None = None) -> str:
    """The run's note in the Airflow UI, within the note column's 1000 characters.

    The UI shows a note's first line until it is opened, so that line holds the verdict.
    """
    o = outcome
    checks = f" ({o.checks_failed} checks failed, {len(o.critical_failed)} critical)" if o.checks_failed else ""
    head = (f"Quality **{o.dq_state or '-'}**{checks} · drift **{o.drift_status or '-'}** · {o.rows} rows,"
            f" {o.bad_rows} bad" + (f" · **failed:** {', '.join(failed_tasks)}" if failed_tasks else ""))
    parts = [head, f"{o.endpoint_id}: `{o.window_start}` → `{o.window_end}`, model version {o.model_version}"]
    if o.bad_rows_by_reason:
        parts.append("Bad rows: " + ", ".join(f"{k} {v}" for k, v in o.bad_rows_by_reason.items()))
    if o.critical_failed:
        parts.append("Critical checks failed: " + ", ".join(f"`{c}`" for c in o.critical_failed))
    if o.drifted:
        parts.append("Drifted: " + _features(o))
    if o.reasons:
        parts.append("Reasons: " + "; ".join(o.reasons))
    text = "\n\n".join(parts)
    return text if len(text) <= NOTE_LIMIT else text[:NOTE_LIMIT - 1] + "…"


def asset_extra(outcome: WindowOutcome) -> dict[str, Any]:
    """The summary tables' asset event extra: what a downstream DAG needs to decide without a query."""
    o = outcome
    return {"endpoint_id": o.endpoint_id, "window_start": o.window_start, "window_end": o.window_end,
            "status": o.status, "rows": o.rows, "bad_rows": o.bad_rows, "dq_state": o.dq_state,
            "checks_failed": o.checks_failed, "critical_failed": o.critical_failed, "drift_status": o.drift_status,
            "drifted_features": [d["feature"] for d in o.drifted], "model_version": o.model_version,
            "reference_version": o.reference_version}
