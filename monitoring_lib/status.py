"""`mlmon status`: what the dashboards show, as a terminal table, for people without Grafana."""

from __future__ import annotations

import psycopg

from monitoring_lib.results.endpoints import list_endpoints
from monitoring_lib.results.view import window_summaries


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_status(conn: psycopg.Connection, *, windows: int = 12, endpoint_id: str | None = None) -> str:
    if endpoint_id:
        return _endpoint_windows(conn, endpoint_id, windows)
    rows = list_endpoints(conn)
    if not rows:
        return "no endpoints monitored yet: run `mlmon run-interval` or `make demo`"
    return _table(
        ["endpoint", "project", "model", "version", "last window end", "rows", "errors", "data quality", "drift"],
        [[_fmt(r["endpoint_id"]), _fmt(r["project"]), _fmt(r["model_name"]), _fmt(r["model_version"]),
          _fmt(r["last_window_end"]), _fmt(r["last_rows"]), _fmt(r["error_count"]), _fmt(r["dq_state"]),
          _fmt(r["drift_status"])] for r in rows],
    )


def _endpoint_windows(conn: psycopg.Connection, endpoint_id: str, limit: int) -> str:
    rows = window_summaries(conn, endpoint_id, limit)
    if not rows:
        return f"no windows recorded for endpoint '{endpoint_id}'"
    return _table(
        ["window start", "rows", "bad", "data quality", "drift", "general", "drifted features"],
        [[_fmt(r["window_start"]), _fmt(r["rows_seen"]), _fmt(r["bad_rows"]), _fmt(r["dq_state"]),
          _fmt(r["drift_status"]), _fmt(r["general_drift"]), ", ".join(r["drifted_features"]) or "-"] for r in rows],
    )
