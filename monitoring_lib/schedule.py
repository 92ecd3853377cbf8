"""Which window a run covers: Airflow's data interval, a manual override, or the last whole interval.

Airflow 3 gives manual runs (and cron-string schedules) zero-width data intervals; monitoring a
zero-width window would silently record `no_data`, so such runs cover the last whole interval that
ends at or before their logical time instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitoring_lib.config import EndpointConfig


def floor_to_interval(moment: datetime, interval: timedelta, anchor: datetime) -> datetime:
    """The latest interval boundary (anchor + k·interval) at or before `moment`."""
    steps = (moment - anchor) // interval
    return anchor + steps * interval


def resolve_window(
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    interval: timedelta,
    anchor: datetime,
    override_start: str | datetime | None = None,
    override_end: str | datetime | None = None,
) -> tuple[datetime, datetime]:
    if override_start or override_end:
        if not (override_start and override_end):
            raise ValueError("give both window_start and window_end to override the window")
        start, end = _parse(override_start), _parse(override_end)
    elif data_interval_start is not None and data_interval_end is not None and data_interval_end > data_interval_start:
        start, end = data_interval_start, data_interval_end
    else:
        moment = data_interval_end or data_interval_start or datetime.now(timezone.utc)
        end = floor_to_interval(moment, interval, anchor)
        start = end - interval
    if end <= start:
        raise ValueError(f"window end {end.isoformat()} must be after its start {start.isoformat()}")
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def _parse(value: str | datetime) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def grace_passed(window_end: datetime, grace: timedelta, now: datetime | None = None) -> bool:
    """Late rows are expected up to `grace` after the window closes; only then is it computed."""
    return (now or datetime.now(timezone.utc)) >= window_end + grace


def window_ready(
    cfg: EndpointConfig, data_interval_start: datetime | None, data_interval_end: datetime | None,
    params: dict[str, Any],
) -> tuple[bool, dict[str, str]]:
    """The sensor's answer for a run: whether its window's grace period is over, and the window as ISO text."""
    start, end = resolve_window(data_interval_start, data_interval_end, cfg.schedule.interval,
                                cfg.schedule.start_date, params.get("window_start"), params.get("window_end"))
    return grace_passed(end, cfg.schedule.grace_period), {"start": start.isoformat(), "end": end.isoformat()}
