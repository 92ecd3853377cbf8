"""Expand Grafana PostgreSQL panel SQL into plain SQL, so dashboard queries can run in tests.

Grafana turns a panel query into SQL in two steps, and this module mirrors both:

1. Template variables (the browser): `$var`, `${var}`, `[[var]]` and `${var:format}` with the formats
   `csv`, `sqlstring`, `raw`, `pipe`, `singlequote` and `doublequote`; the built-ins `$__interval`,
   `$__interval_ms`, `$__from` and `$__to`. A value given as a `str` is a single-value variable and
   is inserted raw with `'` doubled (write `'$var'` in SQL); a `list` is a multi-value or "All"
   selection and becomes `'a','b'` (write `IN ($var)`), exactly as Grafana's SQL data sources do.
2. Macros (the server): `$__time(col)`, `$__timeEpoch(col)`, `$__timeFilter(col)`, `$__timeFrom()`,
   `$__timeTo()`, `$__timeGroup(col, interval[, fill])`, `$__timeGroupAlias(col, interval[, fill])`,
   `$__unixEpochFilter(col)`, `$__unixEpochFrom()`, `$__unixEpochTo()`,
   `$__unixEpochGroup(col, interval[, fill])` and `$__unixEpochGroupAlias(col, interval[, fill])`.
   Like Grafana, macro arguments cannot contain parentheses; the fill argument only affects
   Grafana's post-processing and is ignored here.

Anything else that looks like a variable or macro raises `ValueError`, so a typo in a dashboard
fails the test instead of reaching the database as literal text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

VarValue = str | Sequence[str]

_INTERVAL = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Grafana's own variable syntax: $name, [[name(:format)]], ${name(:format)}
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
# Grafana's macro syntax (sqleng): no nested parentheses inside the arguments.
_MACRO = re.compile(r"\$(__\w+)\(([^)]*)\)")
_LEFTOVER = re.compile(r"\$\{?\w+|\[\[\w+")


def parse_interval(text: str) -> timedelta:
    """'5m' -> 5 minutes, as Grafana's interval syntax; quotes around the value are allowed."""
    match = _INTERVAL.match(text.strip().strip("'\""))
    if not match:
        raise ValueError(f"'{text}' is not a Grafana interval like 30s, 5m or 1h")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format(value: VarValue, fmt: str | None) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if fmt is None:
        if isinstance(value, str):
            return value.replace("'", "''")
        return ",".join(_quote(v) for v in values)
    if fmt == "csv" or fmt == "raw":
        return ",".join(values)
    if fmt == "sqlstring":
        return ",".join(_quote(v) for v in values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    raise ValueError(f"unsupported variable format '{fmt}'")


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _interval_text(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def expand_variables(
    text: str,
    variables: Mapping[str, VarValue],
    *,
    time_from: datetime,
    time_to: datetime,
    interval: timedelta = timedelta(minutes=1),
) -> str:
    """Replace template variables and Grafana's built-in variables; macros are left for `expand_macros`."""
    builtins: dict[str, str] = {
        "__interval": _interval_text(interval),
        "__interval_ms": str(int(interval.total_seconds() * 1000)),
        "__from": str(int(time_from.timestamp() * 1000)),
        "__to": str(int(time_to.timestamp() * 1000)),
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(5)
        if match.group(1) and match.end() < len(text) and text[match.end()] == "(":
            return match.group(0)  # a macro call such as $__timeFilter(...)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return _format(variables[name], fmt)
        if name.startswith("__"):
            raise ValueError(f"unsupported built-in variable '${name}'")
        raise ValueError(f"variable '{name}' has no value")

    return _VARIABLE.sub(replace, text)


def expand_macros(text: str, *, time_from: datetime, time_to: datetime) -> str:
    """Replace Grafana's PostgreSQL macros the way its server-side SQL engine does."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [a.strip() for a in match.group(2).split(",")] if match.group(2).strip() else []
        start, end = _iso(time_from), _iso(time_to)

        def need(count: int) -> None:
            if len(args) < count:
                raise ValueError(f"macro {name} needs {count} argument(s), got {args}")

        if name == "__time":
            need(1)
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            need(1)
            return f'extract(epoch from {args[0]}) AS "time"'
        if name == "__timeFilter":
            need(1)
            return f"{args[0]} BETWEEN '{start}' AND '{end}'"
        if name == "__timeFrom":
            return f"'{start}'"
        if name == "__timeTo":
            return f"'{end}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            need(2)
            seconds = int(parse_interval(args[1]).total_seconds())
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            return group + (' AS "time"' if name.endswith("Alias") else "")
        if name == "__unixEpochFilter":
            need(1)
            return f"{args[0]} >= {int(time_from.timestamp())} AND {args[0]} <= {int(time_to.timestamp())}"
        if name == "__unixEpochFrom":
            return str(int(time_from.timestamp()))
        if name == "__unixEpochTo":
            return str(int(time_to.timestamp()))
        if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
            need(2)
            seconds = int(parse_interval(args[1]).total_seconds())
            group = f"floor({args[0]}/{seconds})*{seconds}"
            return group + (' AS "time"' if name.endswith("Alias") else "")
        raise ValueError(f"unsupported macro '${name}'")

    return _MACRO.sub(replace, text)


def expand(
    text: str,
    variables: Mapping[str, VarValue],
    *,
    time_from: datetime,
    time_to: datetime,
    interval: timedelta = timedelta(minutes=1),
) -> str:
    """Variables first, then macros (Grafana's order); fails if anything Grafana-specific is left."""
    with_vars = expand_variables(text, variables, time_from=time_from, time_to=time_to, interval=interval)
    result = expand_macros(with_vars, time_from=time_from, time_to=time_to)
    leftover = _LEFTOVER.search(_strip_literals(result))
    if leftover:
        raise ValueError(f"unexpanded Grafana syntax '{leftover.group(0)}' in: {result}")
    return result


def _strip_literals(sql_text: str) -> str:
    """SQL without its string literals and comments, so a '$' inside a value is not mistaken for syntax."""
    return re.sub(r"'(?:[^']|'')*'|--[^\n]*", "''", sql_text)
