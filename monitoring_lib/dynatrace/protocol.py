"""Dynatrace metric ingestion protocol lines, formatted exactly and validated before they leave the library.

A line is `<metric.key>,<dim>="<value>",... <payload> <timestamp_ms>`. Bad keys are programming or
config errors and raise `ValueError`; non-finite values are data and are never formatted (the
formatters return None so the caller can count them as skipped).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

MAX_METRIC_KEY_LENGTH = 255
MIN_METRIC_KEY_LENGTH = 3
MAX_DIMENSIONS = 50
MAX_DIMENSION_KEY_LENGTH = 100
MAX_DIMENSION_VALUE_LENGTH = 250
MAX_LINE_LENGTH = 50_000

_KEY_SECTION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_DIM_KEY_INVALID = re.compile(r"[^a-z0-9._:-]+")
_DIM_KEY_SECTION = re.compile(r"^[a-z_][a-z0-9_:-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

Dimensions = Mapping[str, object] | Iterable[tuple[str, object]]


@dataclass(frozen=True)
class MetricLine:
    """One formatted line plus the identity of its series (key and dimensions, no value or time)."""

    key: str
    dimensions: tuple[tuple[str, str], ...]
    payload: str
    timestamp_ms: int
    line: str
    series_key: str


def validate_metric_key(key: str) -> str:
    """Return `key` if Dynatrace accepts it as a metric key, else raise ValueError saying why."""
    if not MIN_METRIC_KEY_LENGTH <= len(key) <= MAX_METRIC_KEY_LENGTH:
        raise ValueError(f"metric key '{key}' must be {MIN_METRIC_KEY_LENGTH}..{MAX_METRIC_KEY_LENGTH} characters")
    if key.lower().startswith("dt."):
        raise ValueError(f"metric key '{key}': the 'dt.' prefix is reserved by Dynatrace")
    sections = key.split(".")
    if not sections[0][:1].isalpha() and not sections[0].startswith("_"):
        raise ValueError(f"metric key '{key}' must start with a letter or '_'")
    for section in sections:
        if not _KEY_SECTION.match(section):
            raise ValueError(
                f"metric key '{key}': section '{section}' must be non-empty letters, digits, '_' or '-', "
                "not starting with '-'"
            )
    return key


def metric_key(prefix: str, *parts: str) -> str:
    """Join a prefix and key sections with dots and validate the result."""
    return validate_metric_key(".".join(p.strip(".") for p in (prefix, *parts) if p))


def key_section(name: str) -> str:
    """Turn a free-form name (e.g. a performance metric 'r2 score') into one valid key section."""
    section = re.sub(r"[^A-Za-z0-9_-]+", "_", name.strip()).strip("_")
    section = section.lstrip("-")
    if not section:
        raise ValueError(f"'{name}' has no characters usable in a metric key section")
    return section


def normalize_dimension_key(key: str) -> str:
    """Lowercase and replace disallowed characters; raise ValueError if nothing usable remains."""
    text = _DIM_KEY_INVALID.sub("_", str(key).strip().lower())
    sections = [s.lstrip("0123456789-:") for s in text.split(".")]
    sections = [s for s in sections if s]
    normalized = ".".join(sections)[:MAX_DIMENSION_KEY_LENGTH].rstrip(".")
    if not normalized or not all(_DIM_KEY_SECTION.match(s) for s in normalized.split(".")):
        raise ValueError(f"dimension key '{key}' has no valid characters (allowed: a-z 0-9 . _ : -)")
    if normalized.startswith("dt."):
        raise ValueError(f"dimension key '{key}': the 'dt.' prefix is reserved by Dynatrace")
    return normalized


def normalize_dimension_value(value: object) -> str:
    """Text without control characters (no newline can split a line), capped at Dynatrace's length."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text[:MAX_DIMENSION_VALUE_LENGTH]


def quote_dimension_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def normalize_dimensions(dimensions: Dimensions | None) -> tuple[tuple[str, str], ...]:
    """Sorted, normalised (key, value) pairs; empty values are dropped as Dynatrace would ignore them."""
    items = dimensions.items() if isinstance(dimensions, Mapping) else (dimensions or ())
    result: dict[str, str] = {}
    for raw_key, raw_value in items:
        if raw_value is None:
            continue
        value = normalize_dimension_value(raw_value)
        if not value:
            continue
        key = normalize_dimension_key(raw_key)
        if key in result and result[key] != value:
            raise ValueError(f"dimension key '{raw_key}' collides with another key after normalisation")
        result[key] = value
    if len(result) > MAX_DIMENSIONS:
        raise ValueError(f"{len(result)} dimensions given; Dynatrace accepts at most {MAX_DIMENSIONS}")
    return tuple(sorted(result.items()))


def series_key(key: str, dimensions: Dimensions | None = None) -> str:
    """Metric key plus sorted dimensions: the identity of a series within one window."""
    return _head(validate_metric_key(key), normalize_dimensions(dimensions))


def format_number(value: float | int) -> str | None:
    """Plain decimal text for a finite number (no exponent), or None for NaN/inf."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    number = float(value)
    if not math.isfinite(number):
        return None
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    text = repr(number)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def to_timestamp_ms(moment: datetime | int) -> int:
    """Milliseconds since the epoch; naive datetimes are rejected to avoid a silent local-time shift."""
    if isinstance(moment, int):
        return moment
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return int(round(moment.timestamp() * 1000))


def format_gauge(
    key: str, value: float, dimensions: Dimensions | None, timestamp: datetime | int
) -> MetricLine | None:
    """`gauge,<value>`; None if the value is NaN or infinite."""
    number = format_number(value)
    return None if number is None else _line(key, dimensions, f"gauge,{number}", timestamp)


def format_summary(
    key: str,
    *,
    min: float,
    max: float,
    sum: float,
    count: int,
    dimensions: Dimensions | None,
    timestamp: datetime | int,
) -> MetricLine | None:
    """`gauge,min=,max=,sum=,count=`; None if any part is non-finite. Inconsistent parts raise."""
    parts = [format_number(v) for v in (min, max, sum)]
    if any(p is None for p in parts) or not math.isfinite(count):
        return None
    if int(count) != count or count < 0:
        raise ValueError(f"summary count must be a non-negative integer, got {count}")
    if min > max:
        raise ValueError(f"summary min {min} is greater than max {max}")
    payload = f"gauge,min={parts[0]},max={parts[1]},sum={parts[2]},count={int(count)}"
    return _line(key, dimensions, payload, timestamp)


def format_count_delta(
    key: str, delta: float, dimensions: Dimensions | None, timestamp: datetime | int
) -> MetricLine | None:
    """`count,delta=<value>`; None if the delta is NaN or infinite."""
    number = format_number(delta)
    return None if number is None else _line(key, dimensions, f"count,delta={number}", timestamp)


def _head(key: str, dims: tuple[tuple[str, str], ...]) -> str:
    return ",".join([key, *(f"{k}={quote_dimension_value(v)}" for k, v in dims)])


def _line(key: str, dimensions: Dimensions | None, payload: str, timestamp: datetime | int) -> MetricLine:
    validate_metric_key(key)
    dims = normalize_dimensions(dimensions)
    ts = to_timestamp_ms(timestamp)
    head = _head(key, dims)
    text = f"{head} {payload} {ts}"
    if len(text) > MAX_LINE_LENGTH:
        raise ValueError(f"line for '{key}' is {len(text)} characters; Dynatrace accepts {MAX_LINE_LENGTH}")
    return MetricLine(key=key, dimensions=dims, payload=payload, timestamp_ms=ts, line=text, series_key=head)
