"""Durations in config files ('30s', '15m', '1h', '1d') and in every message a user reads."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: Any) -> timedelta:
    """Accept '1h', '15m', '30s', '1d' or a timedelta/number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"'{value}' is not a duration like 30s, 15m, 1h or 1d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


_PARTS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def format_duration(value: timedelta) -> str:
    """A duration as a person writes it, largest units first: '1 day', '1 hour 30 minutes', '45 seconds'.

    For every message a user reads; `str(timedelta)` gives `1:00:00` or `1 day, 0:00:00`.
    """
    if value < timedelta(0):
        return f"minus {format_duration(-value)}"
    if value < timedelta(seconds=1):
        return f"{value.total_seconds():g} seconds"
    left, parts = int(value.total_seconds()), []
    for name, size in _PARTS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    return " ".join(parts)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
