"""The Dynatrace outbox: lines are staged with the interval's results and pushed later, exactly once.

Staging happens in the same transaction as the summary rows, so the outbox never disagrees with
them. Pushing commits after every batch Dynatrace answered, so a crash or an outage in the middle
never causes a line to be sent twice or lost. Line states: pending -> sent | invalid | expired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg

from monitoring_lib.config import format_duration
from monitoring_lib.dynatrace.client import IngestClient
from monitoring_lib.dynatrace.lines import LineBatch
from monitoring_lib.dynatrace.protocol import to_timestamp_ms
from monitoring_lib.errors import DynatraceUnavailableError

log = logging.getLogger(__name__)

MAX_BATCH_LINES = 1000
MAX_BATCH_BYTES = 1_000_000
MAX_AGE = timedelta(hours=1)
# how long lines that were sent, refused or expired stay for inspection before they are deleted
RETENTION = timedelta(days=7)
FUTURE_TOLERANCE = timedelta(minutes=10)

ConnSource = psycopg.Connection | Callable[[], psycopg.Connection]


@dataclass
class PushReport:
    """What one push did. `skipped` counts lines held back because they lie too far in the future."""

    sent: int = 0
    invalid: int = 0
    expired: int = 0
    skipped: int = 0
    batches: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class PendingLine:
    line_id: int
    endpoint_id: str
    line: str
    timestamp_ms: int


def stage_lines(
    conn: psycopg.Connection, endpoint_id: str, window_start: datetime, window_end: datetime, batch: LineBatch,
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


def push_pending(
    conn_source: ConnSource,
    client: IngestClient,
    *,
    now: datetime | None = None,
    max_age: timedelta = MAX_AGE,
    future_tolerance: timedelta = FUTURE_TOLERANCE,
    endpoint_id: str | None = None,
    max_lines: int = MAX_BATCH_LINES,
    max_bytes: int = MAX_BATCH_BYTES,
) -> PushReport:
    """Send pending lines oldest first; mark each batch only after Dynatrace answered for it.

    Commits its own transactions (on the given connection, or on one it opens from a factory).
    Dynatrace being unreachable after the client's retries ends the push with the message in
    `errors` and the lines still pending; a token or endpoint problem (`DynatraceError`) is raised.
    """
    now = now or datetime.now(timezone.utc)
    oldest_ms = oldest_sendable_ms(now, max_age)
    newest_ms = to_timestamp_ms(now + future_tolerance)
    report = PushReport()
    with _connection(conn_source) as conn:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise ValueError(
                "push_pending commits after every batch: commit or roll back the connection's open "
                "transaction first (or pass a connection factory)"
            )
        report.expired = _expire(conn, endpoint_id, now, max_age)
        _delete_settled(conn, now, endpoint_id)
        conn.commit()
        while True:
            batch = _lock_batch(conn, oldest_ms, newest_ms, endpoint_id, max_lines, max_bytes)
            if not batch:
                conn.commit()
                break
            try:
                result = client.send([line for _, line in batch])
            except DynatraceUnavailableError as exc:
                if exc.settled:  # the part of a split batch Dynatrace took before the outage is never resent
                    _record_result(conn, batch[:exc.settled], exc.invalid)
                    report.sent += exc.settled - len(exc.invalid)
                    report.invalid += len(exc.invalid)
                _record_failure(conn, [line_id for line_id, _ in batch[exc.settled:]], str(exc))
                conn.commit()
                report.errors.append(str(exc))
                log.warning("Dynatrace push stopped; %d lines stay pending: %s", len(batch), exc)
                break
            except Exception as exc:
                _record_failure(conn, [line_id for line_id, _ in batch], str(exc))
                conn.commit()
                raise
            _record_result(conn, batch, result.invalid)
            conn.commit()
            report.batches += 1
            report.retries += result.retries
            report.invalid += len(result.invalid)
            report.sent += len(batch) - len(result.invalid)
        report.skipped = _count_future(conn, newest_ms, endpoint_id)
        conn.commit()
    log.info(
        "Dynatrace push: %d sent, %d invalid, %d expired, %d held back, %d batches, %d retries",
        report.sent, report.invalid, report.expired, report.skipped, report.batches, report.retries,
    )
    return report


def _connection(source: ConnSource) -> AbstractContextManager[psycopg.Connection]:
    if isinstance(source, psycopg.Connection):
        return nullcontext(source)
    return source()


def _expire(
    conn: psycopg.Connection, endpoint_id: str | None, now: datetime, max_age: timedelta
) -> int:
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


def oldest_sendable_ms(now: datetime, max_age: timedelta = MAX_AGE) -> int:
    """The oldest timestamp a line may carry and still be sent: Dynatrace drops older points."""
    return to_timestamp_ms(now - max_age)


def tidy(conn: psycopg.Connection, *, now: datetime | None = None, endpoint_id: str | None = None,
         max_age: timedelta = MAX_AGE) -> int:
    """Without a push (Dynatrace not configured): expire the lines too old to send and delete settled ones,
    so the outbox stays bounded. Returns the lines expired; the caller commits."""
    now = now or datetime.now(timezone.utc)
    expired = _expire(conn, endpoint_id, now, max_age)
    _delete_settled(conn, now, endpoint_id)
    return expired


def _delete_settled(conn: psycopg.Connection, now: datetime, endpoint_id: str | None) -> int:
    """Sent, invalid and expired lines older than `RETENTION`: kept for inspection, not forever."""
    return conn.execute(
        "DELETE FROM monitoring.dynatrace_outbox WHERE status <> 'pending' AND timestamp_ms < %(before)s"
        " AND (%(endpoint)s::text IS NULL OR endpoint_id = %(endpoint)s)",
        {"before": to_timestamp_ms(now - RETENTION), "endpoint": endpoint_id},
    ).rowcount


def _lock_batch(
    conn: psycopg.Connection,
    oldest_ms: int,
    newest_ms: int,
    endpoint_id: str | None,
    max_lines: int,
    max_bytes: int,
) -> list[tuple[int, str]]:
    """Lock the next pending lines; SKIP LOCKED keeps a concurrent push from sending the same lines."""
    rows = conn.execute(
        "SELECT line_id, line FROM monitoring.dynatrace_outbox"
        " WHERE status = 'pending' AND timestamp_ms BETWEEN %(oldest)s AND %(newest)s"
        " AND (%(endpoint)s::text IS NULL OR endpoint_id = %(endpoint)s)"
        " ORDER BY line_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
        {"oldest": oldest_ms, "newest": newest_ms, "endpoint": endpoint_id, "limit": max_lines},
    ).fetchall()
    batch: list[tuple[int, str]] = []
    size = 0
    for line_id, line in rows:
        size += len(line.encode("utf-8")) + 1
        if batch and size > max_bytes:
            break
        batch.append((line_id, line))
    return batch


def _record_result(conn: psycopg.Connection, batch: list[tuple[int, str]], invalid: dict[int, str]) -> None:
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


def _record_failure(conn: psycopg.Connection, line_ids: list[int], message: str) -> None:
    conn.execute(
        "UPDATE monitoring.dynatrace_outbox SET attempts = attempts + 1, last_error = %s WHERE line_id = ANY(%s)",
        (message, line_ids),
    )


def _count_future(conn: psycopg.Connection, newest_ms: int, endpoint_id: str | None) -> int:
    row = conn.execute(
        "SELECT count(*) FROM monitoring.dynatrace_outbox WHERE status = 'pending' AND timestamp_ms > %(newest)s"
        " AND (%(endpoint)s::text IS NULL OR endpoint_id = %(endpoint)s)",
        {"newest": newest_ms, "endpoint": endpoint_id},
    ).fetchone()
    return int(row[0])
