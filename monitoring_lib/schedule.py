"""Which windows a run covers: Airflow's data interval, a manual override, the last whole interval, a backfill's range.

Windows lie on one grid, `schedule.start_date` + k·`interval`, whoever starts the run. Airflow 3 gives
manual runs a data interval ending at the moment of the trigger (or a zero-width one for cron-string
schedules), and without catchup aligns scheduled ones to the epoch: such an interval is replaced by
the last whole interval of the grid that ends at or before its end, so no two windows overlap and
none is zero-width (which would silently record `no_data`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from monitoring_lib.errors import MonitoringError, WindowParamError

if TYPE_CHECKING:
    pass


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
            raise WindowParamError("give both window_start and window_end to override the window")
        start, end = _parse("window_start", override_start), _parse("window_end", override_end)
    else:
        start, end = (None if d is None else standard(d) for d in (data_interval_start, data_interval_end))
        on_grid = (start is not None and end is not None and end - start == interval
                   and floor_to_interval(start, interval, anchor) == start)
        if not on_grid:
            end = floor_to_interval(end or start or datetime.now(timezone.utc), interval, anchor)
            start = end - interval
    if end <= start:
        raise WindowParamError(f"window end {end.isoformat()} must be after its start {start.isoformat()}")
    return standard(start), standard(end)


def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """A window given by a caller (CLI, test, backfill) as UTC bounds; naive or empty windows are refused."""
    if start.tzinfo is None or end.tzinfo is None:
        raise MonitoringError("window bounds must carry a time zone (e.g. 2026-11-23T10:00:00+00:00)")
    if end <= start:
        raise MonitoringError(f"window end {end.isoformat()} must be after its start {start.isoformat()}")
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def windows(start: datetime, end: datetime, interval: timedelta) -> list[tuple[datetime, datetime]]:
    """Consecutive [s, s+interval) windows covering [start, end); a partial last window is not run."""
    start, end = check_window(start, end)
    out = []
    cursor = start
    while cursor + interval <= end:
        out.append((cursor, cursor + interval))
        cursor += interval
    return out


def standard(moment: datetime) -> datetime:
    """The same instant as a standard-library datetime in UTC. Airflow passes pendulum datetimes, whose
    arithmetic with a timedelta after `astimezone(timezone.utc)` returns a naive datetime, which no
    aware one can be compared with."""
    utc = moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond,
                    tzinfo=timezone.utc)


def _parse(name: str, value: str | datetime) -> datetime:
    """A window param as a UTC datetime; a time without a zone is UTC, as the trigger form's picker sends it."""
    if isinstance(value, datetime):
        return standard(value)
    try:
        return standard(datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")))
    except ValueError:
        raise WindowParamError(f"{name} {str(value)!r} is not an ISO 8601 date-time such as 2026-11-23T10:00:00+00:00;"
                          " retrying cannot fix it: trigger the run again with a valid value") from None


def grace_passed(window_end: datetime, grace: timedelta, now: datetime | None = None) -> bool:
    """Late rows are expected up to `grace` after the window closes; only then is it computed."""
    return standard(now or datetime.now(timezone.utc)) >= standard(window_end) + grace
