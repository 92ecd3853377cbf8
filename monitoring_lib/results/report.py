"""A window's outcome as callers see it (`IntervalReport`), computed now or read back while still current.

The report is small enough for XCom: counts, verdicts and names, never data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from monitoring_lib.config import EndpointConfig
from monitoring_lib.db import connect
from monitoring_lib.results.endpoints import window_version
from monitoring_lib.results.profiles import load_active_profile
from monitoring_lib.schedule import check_window
from monitoring_lib.source import count_window


@dataclass(frozen=True)
class IntervalReport:
    endpoint_id: str
    window_start: datetime
    window_end: datetime
    status: str  # ok | no_data
    rows: int
    bad_rows: int
    dq_state: str | None
    drift_status: str | None
    general_drift: float | None
    drifted_features: list[str]
    model_version: str
    reference_version: int | None
    dynatrace_lines: int
    timings: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["window_start"] = self.window_start.isoformat()
        data["window_end"] = self.window_end.isoformat()
        return data


def no_drift_reasons(drift_status: str | None, model_version: str) -> list[str]:
    """Why a window has no drift result when it is for want of a reference: names the version that served it."""
    if drift_status == "no_reference":
        return [f"no reference fitted for model version {model_version}, which served the window"]
    return []


def stored_report(url: str, cfg: EndpointConfig, start: datetime, end: datetime) -> IntervalReport | None:
    """The stored result of a window if it is still current: same model (the version that served the window, so a
    later promotion leaves it current), same reference, same row count.

    Rows that arrive late change the count, so a window is recomputed exactly when its inputs changed.
    """
    start, end = check_window(start, end)
    with connect(url) as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            run = cur.execute(
                """
                SELECT r.status, r.rows_seen, r.bad_rows, r.dq_state, r.drift_status, r.model_version,
                       r.reference_version, d.value AS general_drift, coalesce(d.details, '{}'::jsonb) AS details
                FROM monitoring.interval_runs r
                LEFT JOIN monitoring.drift_summary d ON d.endpoint_id = r.endpoint_id
                     AND d.window_start = r.window_start AND d.window_end = r.window_end AND d.metric = 'general_drift'
                WHERE r.endpoint_id = %s AND r.window_start = %s AND r.window_end = %s
                """,
                (cfg.endpoint_id, start, end),
            ).fetchone()
        if run is None or run["model_version"] != window_version(conn, cfg, start, end):
            return None
        profile = load_active_profile(conn, cfg.endpoint_id, run["model_version"])
        if ((profile.version if profile else None) != run["reference_version"]
                or count_window(conn, cfg, start, end) != run["rows_seen"]):
            return None
    details = run["details"]
    return IntervalReport(
        endpoint_id=cfg.endpoint_id, window_start=start, window_end=end, status=run["status"],
        rows=run["rows_seen"], bad_rows=run["bad_rows"], dq_state=run["dq_state"], drift_status=run["drift_status"],
        general_drift=run["general_drift"], drifted_features=list(details.get("drifted_features", [])),
        model_version=run["model_version"], reference_version=run["reference_version"], dynatrace_lines=0,
        reasons=list(details.get("reasons", [])) or no_drift_reasons(run["drift_status"], run["model_version"]),
    )


def stored_failed_critical(url: str, cfg: EndpointConfig, start: datetime, end: datetime) -> list[str]:
    """The critical checks a stored window failed, by id."""
    with connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT expectation_id FROM monitoring.data_quality_results WHERE endpoint_id = %s AND window_start = %s"
            " AND window_end = %s AND NOT success AND severity = 'critical' ORDER BY expectation_id",
            (cfg.endpoint_id, start, end),
        )]
