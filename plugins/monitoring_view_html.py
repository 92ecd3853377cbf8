"""Server-side HTML of the Model Monitoring view: every value from a database goes through `_t` (escaped)."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

DQ_CSS = {"passed": "ok", "warning": "warn", "failed": "bad", "skipped": "none"}
DRIFT_CSS = {"no_drift": "ok", "possible_drift": "warn", "drift_detected": "bad", "skipped": "none"}
STALE_CSS = {"fresh": "ok", "late": "warn", "stale": "bad"}
FILTERS = ["quality_failed", "drift_detected", "possible_drift", "failed_run", "stale", "late", "fresh"]

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2rem 1.6rem; color: #1f2328;
       background: #f6f8fa; font-size: 14px; }
h1 { font-size: 1.4rem; margin: 0 0 .6rem; } h2 { font-size: 1.1rem; margin: 1.4rem 0 .5rem; }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
.bar { margin: .4rem 0 .9rem; display: flex; gap: .4rem; flex-wrap: wrap; align-items: center; }
.bar a, .bar span.cur { padding: .15rem .55rem; border: 1px solid #d0d7de; border-radius: 1rem; background: #fff; }
.bar span.cur { background: #1f2328; color: #fff; border-color: #1f2328; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #d0d7de; }
th { background: #eaeef2; font-weight: 600; text-align: left; padding: .45rem .6rem; }
td { padding: .45rem .6rem; border-top: 1px solid #d8dee4; vertical-align: top; }
tr:hover td { background: #f6f8fa; }
td.fresh { min-width: 7rem; } td.drift { min-width: 14rem; max-width: 22rem; }
td.drift li { font-size: .8rem; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: .7rem; font-size: .8rem; font-weight: 600;
         color: #fff; white-space: nowrap; }
.ok { background: #1a7f37; } .warn { background: #d4a72c; color: #1f2328; } .bad { background: #cf222e; }
.none { background: #8c959f; } .dead { background: #3d0a0f; }
.strip { display: flex; gap: 2px; }
.cell { width: 11px; height: 30px; display: flex; flex-direction: column; border-radius: 2px; overflow: hidden; }
.cell span { flex: 1; }
.muted { color: #656d76; font-size: .85rem; } ul { margin: .2rem 0; padding-left: 1.1rem; }
.error { padding: 1rem; border: 1px solid #cf222e; background: #ffebe9; }
.legend span.badge { margin-right: .3rem; }
"""


def _t(value: object) -> str:
    return "-" if value is None else html.escape(str(value), quote=True)


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _badge(text: object, css: str) -> str:
    return f'<span class="badge {css}">{_t(text)}</span>'


def _link(href: str, text: object, external: bool = False) -> str:
    target = ' target="_blank" rel="noopener"' if external else ""
    return f'<a href="{_t(href)}"{target}>{_t(text)}</a>'


def page(title: str, body: str, links: str = "") -> str:
    return ("<!doctype html><html><head><meta charset=\"utf-8\">"
            f"<title>{_t(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{_t(title)}</h1>{links}{body}</body></html>")


def error_page(message: str) -> str:
    return page("Model Monitoring",
                f'<div class="error"><strong>Monitoring data unavailable.</strong> {_t(message)}</div>')


def window_title(w: dict[str, Any]) -> str:
    dq = w["dq_state"] or "unknown"
    if w["failed_checks"]:
        dq += f" ({w['failed_checks']} checks failed, {w['failed_critical']} critical)"
    parts = [f"{_time(w['window_start'])} -> {_time(w['window_end'])}", f"run {w['status']}",
             f"data quality {dq}", f"drift {w['drift_status'] or 'unknown'}",
             f"{w['rows_seen']} rows, {w['bad_rows']} bad"]
    if w["drifted_features"]:
        parts.append("drifted: " + ", ".join(w["drifted_features"]))
    if w["error"]:
        parts.append(f"error: {w['error'][:200]}")
    return " | ".join(parts)


def strip(windows: list[dict[str, Any]]) -> str:
    """One cell per window, oldest left: top half data quality, bottom half drift; a failed run is dark red."""
    cells = []
    for w in windows:
        dq = "dead" if w["status"] == "failed" else DQ_CSS.get(w["dq_state"] or "", "none")
        drift = "dead" if w["status"] == "failed" else DRIFT_CSS.get(w["drift_status"] or "", "none")
        cells.append(f'<div class="cell" title="{_t(window_title(w))}" data-dq="{_t(w["dq_state"])}" '
                     f'data-drift="{_t(w["drift_status"])}">'
                     f'<span class="{dq}"></span><span class="{drift}"></span></div>')
    return f'<div class="strip">{"".join(cells)}</div>' if cells else '<span class="muted">no windows</span>'


def checks_list(checks: list[dict[str, Any]], with_values: bool = False) -> str:
    if not checks:
        return ""
    items = []
    for c in checks:
        text = f"{_badge(c['severity'], 'bad' if c['severity'] == 'critical' else 'warn')} {_t(c['expectation_id'])}"
        if with_values:
            observed = None if c["observed_value"] is None else json.dumps(c["observed_value"], default=str)[:200]
            text += (f' <span class="muted">{_t(c["expectation_type"])} on {_t(c["column_name"])}: '
                     f'{_t(c["unexpected_count"])} unexpected ({_t(c["unexpected_percent"])} %), '
                     f'observed {_t(observed)}</span>')
        items.append(f"<li>{text}</li>")
    return f"<ul>{''.join(items)}</ul>"


def _dq_cell(e: dict[str, Any]) -> str:
    last = e["windows"][-1] if e["windows"] else None
    if last is None:
        return "-"
    if last["status"] == "failed":
        return _badge("run failed", "dead") + f'<div class="muted">{_t((last["error"] or "")[:160])}</div>'
    badge = _badge(last["dq_state"] or "unknown", DQ_CSS.get(last["dq_state"] or "", "none"))
    return badge + checks_list(e["failed_checks"])


def _drift_cell(e: dict[str, Any]) -> str:
    last = e["windows"][-1] if e["windows"] else None
    if last is None:
        return "-"
    out = _badge(last["drift_status"] or "unknown", DRIFT_CSS.get(last["drift_status"] or "", "none"))
    if e["drifted_features"]:
        out += "<div>" + ", ".join(f"<strong>{_t(f)}</strong>" for f in e["drifted_features"]) + "</div>"
    if e["drift_reasons"] and last["drift_status"] in ("possible_drift", "drift_detected"):
        out += "<ul>" + "".join(f'<li class="muted">{_t(r)}</li>' for r in e["drift_reasons"][:3]) + "</ul>"
    return out


def _failed_run_cell(e: dict[str, Any]) -> str:
    failed = e["airflow"]["monitor"].get("last_failed_run")
    if not failed:
        return '<span class="muted">none</span>'
    links = e["links"]
    out = _link(links["run"], failed["run_id"]) + f'<div class="muted">{_t(_time(failed["at"]))}</div>'
    if "task_log" in links:
        out += f"<div>task {_link(links['task_log'], failed['task_id'])} (log)</div>"
    return out


def _retraining_cell(e: dict[str, Any]) -> str:
    parts = []
    d, t = e["last_decision"], e["last_training"]
    if d:
        parts.append(f"decision: {_t(d['outcome'])} <span class=\"muted\">{_t(_time(d['created_at']))}</span>")
    if t:
        parts.append(f"training: {_t(t['outcome'])} <span class=\"muted\">{_t(_time(t['created_at']))}</span>")
    target = e["airflow"]["retraining"]
    name = _link(e["links"]["retraining_dag"], e["retraining_dag"])
    if target.get("paused"):
        parts.append(f"{name} {_badge('paused', 'bad')}")
    elif not target.get("exists"):
        parts.append(f"{name} {_badge('not deployed', 'none')}")
    else:
        parts.append(f"{name} {_badge('active', 'ok')}")
    return "<br>".join(parts) if parts else "never"


def _links_cell(e: dict[str, Any]) -> str:
    out = [_link(e["links"]["dag"], "DAG")]
    if e.get("grafana"):
        out.append(_link(e["grafana"]["details"], "Grafana", external=True))
    return " &middot; ".join(out)


def _stale_cell(e: dict[str, Any]) -> str:
    s = e["staleness"]
    return _badge(s["state"], STALE_CSS[s["state"]]) + f'<div class="muted">last window ended {_t(s["age"])}</div>'


HEADERS = ["Endpoint", "Freshness", "Last windows (old &rarr; new)", "Data quality", "Drift", "Last failed run",
           "Retraining", "Links"]


def _row(e: dict[str, Any], base: str) -> str:
    eid = _link(f"{base}/endpoints/{_quote(e['endpoint_id'])}", e["endpoint_id"])
    who = f'<div class="muted">{_t(e["project"])} / {_t(e["model_name"])} {_t(e["model_version"])}</div>'
    cells = [f"<strong>{eid}</strong>{who}", _stale_cell(e), strip(e["windows"]), _dq_cell(e), _drift_cell(e),
             _failed_run_cell(e), _retraining_cell(e), _links_cell(e)]
    classes = ["who", "fresh", "", "", "drift", "", "", ""]
    tds = "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for c, v in zip(classes, cells, strict=True))
    return f'<tr data-endpoint="{_t(e["endpoint_id"])}">{tds}</tr>'



def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _filters(base: str, state: str | None, sort: str | None) -> str:
    def href(s: str | None, o: str | None) -> str:
        q = urlencode({k: v for k, v in (("state", s), ("sort", o)) if v})
        return f"{base}/" + (f"?{q}" if q else "")

    def chip(label: str, current: bool, target: str) -> str:
        return f'<span class="cur">{_t(label)}</span>' if current else _link(target, label)

    states = [chip("all", state is None, href(None, sort))] + [chip(s, state == s, href(s, sort)) for s in FILTERS]
    sorts = [chip(o, (sort or "endpoint") == o, href(state, o)) for o in ("endpoint", "severity", "staleness")]
    return (f'<div class="bar"><strong>State:</strong> {" ".join(states)}</div>'
            f'<div class="bar"><strong>Sort:</strong> {" ".join(sorts)}</div>')


def _legend() -> str:
    return ('<p class="legend muted">Strip: top half data quality, bottom half drift. '
            f'{_badge("passed / no drift", "ok")}{_badge("warning / possible", "warn")}'
            f'{_badge("failed / detected", "bad")}{_badge("skipped", "none")}{_badge("run failed", "dead")}'
            'Hover a cell for its window.</p>')


def _header_links(base: str, grafana: dict[str, str] | None) -> str:
    links = [_link(f"{base}/", "All endpoints"), _link(f"{base}/api/endpoints", "JSON")]
    if grafana:
        links.append(_link(grafana["overview"], "Grafana overview", external=True))
    return f'<p class="bar">{" &middot; ".join(links)}</p>'


def render_list(items: list[dict[str, Any]], base: str, state: str | None, sort: str | None,
                grafana: dict[str, str] | None) -> str:
    top = _header_links(base, grafana) + _filters(base, state, sort)
    if not items:
        text = ("No endpoint is in this state." if state
                else "No endpoints are monitored yet: the first monitoring run registers them.")
        return page("Model Monitoring", f"<p>{text}</p>", top)
    head = "".join(f"<th>{h}</th>" for h in HEADERS)
    rows = "".join(_row(e, base) for e in items)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return page("Model Monitoring", _legend() + table, top)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _estimate(est: dict[str, Any] | None) -> str:
    """The estimate of the judged metric before labels land, its band and the verdict, in one line."""
    if est is None:
        return '<p class="muted">performance.estimation is off</p>'
    x = est["extra"] or {}
    if est["value"] is None:
        return f"<p>{_badge(est['status'], 'none')} {_t(x.get('reason') or x.get('error') or '')}</p>"
    css = {"drop_detected": "bad", "possible_drop": "warn", "no_drop": "ok"}.get(est["status"], "none")
    return (f"<p>{_badge(est['status'], css)} estimated {_t(x.get('metric'))} {_num(est['value'])}"
            f" (realised expected in {_num(x.get('lower'))} to {_num(x.get('upper'))}) against"
            f" {_num(x.get('reference'))} on the reference, by {_t(x.get('method'))} on {_t(x.get('rows'))} rows</p>")


def render_detail(e: dict[str, Any], base: str, grafana: dict[str, str] | None) -> str:
    summary = _table(HEADERS[1:], [[_stale_cell(e), strip(e["windows"]), _dq_cell(e), _drift_cell(e),
                                    _failed_run_cell(e), _retraining_cell(e), _links_cell(e)]])
    windows = _table(
        ["Window", "Run", "Rows", "Bad rows", "Data quality", "Failed checks", "Drift", "Drifted features"],
        [[_t(f"{_time(w['window_start'])} -> {_time(w['window_end'])}"), _t(w["status"]), _t(w["rows_seen"]),
          _t(w["bad_rows"]), _badge(w["dq_state"] or "unknown", DQ_CSS.get(w["dq_state"] or "", "none")),
          _t(f"{w['failed_checks']} ({w['failed_critical']} critical)") if w["failed_checks"] else "-",
          _badge(w["drift_status"] or "unknown", DRIFT_CSS.get(w["drift_status"] or "", "none")),
          _t(", ".join(w["drifted_features"])) if w["drifted_features"] else "-"] for w in reversed(e["windows"])])
    features = _table(
        ["Feature", "Metric", "Value", "p-value", "Possible at", "Detected at", "Tier"],
        [[f"<strong>{_t(f['feature'])}</strong>", _t(f["metric"]), _num(f["value"]), _num(f["p_value"]),
          _num(f["threshold_possible"]), _num(f["threshold_detected"]),
          _badge(f["status"] or "unknown", DRIFT_CSS.get(f["status"] or "", "none"))] for f in e["feature_drift"]])
    apps = _table(
        ["Application", "Result", "Kind", "Status", "Value", "Detail"],
        [[_t(a["application"]), _t(a["metric"]), _t(a["kind"]),
          _badge(a["status"], DRIFT_CSS.get(a["status"], "bad" if a["status"] == "error" else "warn")),
          _num(a["value"]), _t(json.dumps(a["extra"], default=str)[:200]) if a["extra"] else "-"]
         for a in e["app_findings"]])
    segments = _table(
        ["Segment", "Drift", "Rows", "Reference rows", "Drifted features", "Missing values", "Errors"],
        [[f"<strong>{_t(g['segment'])}</strong>",
          _badge(g["status"], DRIFT_CSS.get(g["status"], "none")), _t(g["extra"].get("rows")),
          _t(g["extra"].get("reference_rows")), _t(", ".join(g["extra"].get("drifted_features") or []) or "-"),
          _t(g["extra"].get("missing_values")), _t(g["extra"].get("errors"))] for g in e["segments"]])
    history = _table(
        ["At", "Event", "Window", "Outcome", "Versions", "Reasons"],
        [[_t(_time(r["created_at"])), _t(r["event_type"]), _t(_time(r["window_end"])), _t(r["outcome"]),
          _t(f"{r['model_version_before'] or '-'} -> {r['model_version_after'] or '-'}"),
          "<br>".join(_t(x) for x in (r["reasons"] or [])[:5]) or "-"] for r in e["retraining_history"]])
    who = (f'<p>{_t(e["project"])} / {_t(e["model_name"])} version {_t(e["model_version"])} &middot; '
           f'{_t(e["prediction_count"])} predictions, {_t(e["error_count"])} errors</p>')
    reasons = "".join(f"<li>{_t(r)}</li>" for r in e["drift_reasons"])
    body = (who + summary + "<h2>Drifted features in the last window</h2>" + features
            + (f"<ul>{reasons}</ul>" if reasons else "")
            + "<h2>Failed checks in the last window</h2>"
            + (checks_list(e["failed_checks"], True) or '<p class="muted">none</p>')
            + "<h2>Application findings in the last window</h2>" + apps
            + "<h2>Segments in the last window</h2>"
            + (segments if e["segments"] else '<p class="muted">no segments configured</p>')
            + "<h2>Estimated performance in the last window</h2>" + _estimate(e["estimate"])
            + f"<h2>Windows ({len(e['windows'])}, newest first)</h2>" + windows
            + "<h2>Retraining history</h2>" + history)
    return page(f"Model Monitoring: {e['endpoint_id']}", body, _header_links(base, grafana))
