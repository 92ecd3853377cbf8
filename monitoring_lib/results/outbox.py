"""The Dynatrace outbox table (`dynatrace_outbox`): lines queued with a window's results until they are pushed.

Staging runs in the caller's transaction, so the queued lines never disagree with the summary rows written
with them. A line is pending until a push settles it as sent or invalid, or it grows too old to send
(`MAX_AGE`: Dynatrace drops older points) and expires; settled lines stay `RETENTION` for inspection.
Nothing here commits: the push decides when each batch's outcome is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

import psycopg

from monitoring_lib.config import format_duration

MAX_AGE = timedelta(hours=1)
# how long lines that were sent, refused or expired stay for inspection before they are deleted
RETENTION = timedelta(days=7)


class OutboxLine(Protocol):
    """A formatted line and the identity of its series (`dynatrace.protocol.MetricLine`)."""

    @property
    def series_key(self) -> str: ...
    @property
    def line(self) -> str: ...
    @property
    def timestamp_ms(self) -> int: ...


class OutboxBatch(Protocol):
    """The lines of one window (`dynatrace.lines.LineBatch`)."""

    @property
    def lines(self) -> Sequence[OutboxLine]: ...


@dataclass(frozen=True)
class PendingLine:
    line_id: int
    endpoint_id: str
    line: str
    timestamp_ms: int


def _timestamp_ms(moment: datetime) -> int:
    """A moment in the unit of column `timestamp_ms`: milliseconds since the epoch, as the line carries it
    (`dynatrace.protocol.to_timestamp_ms`)."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return int(round(moment.timestamp() * 1000))


def oldest_sendable_ms(now: datetime, max_age: timedelta = MAX_AGE) -> int:
    """The oldest timestamp a line may carry and still be sent: Dynatrace drops older points."""
    return _timestamp_ms(now - max_age)


def stage_lines(
    conn: psycopg.Connection, endpoint_id: str, window_start: datetime, window_end: datetime, batch: OutboxBatch,
    *, family: tuple[str, bool] | None = None,
) -> int:
    """Queue the window's lines in the caller's transaction (no commit) and return how many were queued.

    A re-run replaces the window's unsent lines and never adds copies. A series already `sent` or
    `expired` for the window is left alone; an `invalid` one is re-queued only if its line changed.
    `family` = (series key prefix, True for only those series or False for all others) limits what a
    re-run replaces, for lines of one window staged by two tasks.
    """
    prefix, inside = family or ("", True)
    conn.execute(
        "DELETE FROM monitoring.dynatrace_outbox"
        " WHERE endpoint_id = %s AND window_start = %s AND window_end = %s AND status = 'pending'"
        " AND starts_with(series_key, %s) = %s",
        (endpoint_id, window_start, window_end, prefix, inside),
    )
    if not batch.lines:
        return 0
    cur = conn.execute(
        """
        INSERT INTO monitoring.dynatrace_outbox AS o
            (endpoint_id, window_start, window_end, series_key, line, timestamp_ms)
        SELECT %s, %s, %s, s.series_key, s.line, s.timestamp_ms
        FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS s(series_key, line, timestamp_ms)
        ON CONFLICT (endpoint_id, window_start, window_end, series_key) DO UPDATE
            SET line = EXCLUDED.line, timestamp_ms = EXCLUDED.timestamp_ms, status = 'pending',
                attempts = 0, last_error = NULL, created_at = now(), sent_at = NULL
            WHERE o.status = 'invalid' AND o.line IS DISTINCT FROM EXCLUDED.line
        """,
        (
            endpoint_id,
            window_start,
            window_end,
            [m.series_key for m in batch.lines],
            [m.line for m in batch.lines],
            [m.timestamp_ms for m in batch.lines],
        ),
    )
    return cur.rowcount


def pending_lines(
    conn: psycopg.Connection, *, endpoint_id: str | None = None, limit: int | None = None
) -> list[PendingLine]:
    """Pending lines oldest first, for `--dry-run` and inspection; reads only, locks nothing."""
    rows = conn.execute(
        "SELECT line_id, endpoint_id, line, timestamp_ms FROM monitoring.dynatrace_outbox"
        " WHERE status = 'pending' AND (%(endpoint)s::text IS NULL OR endpoint_id = %(endpoint)s)"
        " ORDER BY line_id LIMIT %(limit)s",
        {"endpoint": endpoint_id, "limit": limit},
    ).fetchall()
    return [PendingLine(*row) for row in rows]


def expire_old(conn: psycopg.Connection, endpoint_id: str | None, now: datetime, max_age: timedelta = MAX_AGE) -> int:
    """Mark pending lines older than `max_age` at `now` expired, saying why; returns how many."""
    cur = conn.execute(
        "UPDATE monitoring.dynatrace_outbox SET status = 'expired', last_error = %(reason)s"
        " WHERE status = 'pending' AND timestamp_ms < %(oldest)s"
        " AND (%(endpoint)s::text IS NULL OR endpoint_id = %(endpoint)s)",
        {
            "reason": f"older than {format_duration(max_age)} at push time {now.isoformat()};"
                      " Dynatrace drops such points",
            "oldest": oldest_sendable_ms(now, max_age),
            "endpoint": endpoint_id,
        },
    )
    return cur.rowcount


def delete_settled(conn: psycopg.Connection, now: datetime, endpoint_id: str | None) -> int:
    """Sent, invalid and expired lines older than `RETENTION`: kept for inspection, not forever."""
    return conn.execute(
        "DELETE FROM monitoring.dynatrace_outbox WHERE status <> 'pending' AND timestamp_ms < %(before)s"
        " AND (%(endpoint)s::text IS NULL OR endpoint_id = %(endpoint)s)",
        {"before": _timestamp_ms(now - RETENTION), "endpoint": endpoint_id},
    ).rowcount


def tidy(conn: psycopg.Connection, *, now: datetime | None = None, endpoint_id: str | None = None,
         max_age: timedelta = MAX_AGE) -> int:
    """Without a push (Dynatrace not configured): expire the lines too old to send and delete settled ones,
    so the outbox stays bounded. Returns the lines expired; the caller commits."""
    now = now or datetime.now(timezone.utc)
    expired = expire_old(conn, endpoint_id, now, max_age)
    delete_settled(conn, now, endpoint_id)
    return expired


def lock_pending(
    conn: psycopg.Connection, oldest_ms: int, newest_ms: int, endpoint_id: str | None, limit: int
) -> list[tuple[int, str]]:
    """Lock up to `limit` pending lines oldest first, as (line_id, line), until the transaction ends;
    SKIP LOCKED keeps a concurrent push from sending the same lines."""
    rows = conn.execute(
        "SELECT line_id, line FROM monitoring.dynatrace_outbox"
        " WHERE status = 'pending' AND timestamp_ms BETWEEN %(oldest)s AND %(newest)s"
        " AND (%(endpoint)s::text IS NULL OR endpoint_id = %(endpoint)s)"
        " ORDER BY line_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
        {"oldest": oldest_ms, "newest": newest_ms, "endpoint": endpoint_id, "limit": limit},
    ).fetchall()
    return [(line_id, line) for line_id, line in rows]


def record_result(conn: psycopg.Connection, batch: list[tuple[int, str]], invalid: dict[int, str]) -> None:
    """Dynatrace's answer for a batch: lines refused (by position in `batch`, with the reason) are invalid,
    all others sent."""
    sent_ids = [line_id for i, (line_id, _) in enumerate(batch) if i not in invalid]
    if sent_ids:
        conn.execute(
            "UPDATE monitoring.dynatrace_outbox"
            " SET status = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL"
            " WHERE line_id = ANY(%s)",
            (sent_ids,),
        )
    if invalid:
        ids = [batch[i][0] for i in sorted(invalid)]
        reasons = [invalid[i] for i in sorted(invalid)]
        conn.execute(
            "UPDATE monitoring.dynatrace_outbox AS o"
            " SET status = 'invalid', attempts = o.attempts + 1, last_error = r.reason"
            " FROM unnest(%s::bigint[], %s::text[]) AS r(line_id, reason) WHERE o.line_id = r.line_id",
            (ids, reasons),
        )


def record_failure(conn: psycopg.Connection, line_ids: list[int], message: str) -> None:
    """A send that got no answer for these lines: they stay pending, the attempt and the error counted."""
    conn.execute(
        "UPDATE monitoring.dynatrace_outbox SET attempts = attempts + 1, last_error = %s WHERE line_id = ANY(%s)",
        (message, line_ids),
    )


def count_future(conn: psycopg.Connection, newest_ms: int, endpoint_id: str | None) -> int:
    """Pending lines stamped after `newest_ms`: held back from this push."""
    row = conn.execute(
        "SELECT count(*) FROM monitoring.dynatrace_outbox WHERE status = 'pending' AND timestamp_ms > %(newest)s"
        " AND (%(endpoint)s::text IS NULL OR endpoint_id = %(endpoint)s)",
        {"newest": newest_ms, "endpoint": endpoint_id},
    ).fetchone()
    return int(row[0])
