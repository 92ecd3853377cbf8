"""Pushing the Dynatrace outbox (`results.outbox`): every pending line sent exactly once, in batches.

A batch is marked and committed only after Dynatrace answered for it, so a crash or an outage in the
middle never causes a line to be sent twice or lost. Line states: pending -> sent | invalid | expired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg

from monitoring_lib.dynatrace.client import IngestClient
from monitoring_lib.dynatrace.protocol import to_timestamp_ms
from monitoring_lib.errors import DynatraceUnavailableError
from monitoring_lib.results.outbox import (
    MAX_AGE,
    count_future,
    delete_settled,
    expire_old,
    lock_pending,
    oldest_sendable_ms,
    record_failure,
    record_result,
)

log = logging.getLogger(__name__)

MAX_BATCH_LINES = 1000
MAX_BATCH_BYTES = 1_000_000
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
        report.expired = expire_old(conn, endpoint_id, now, max_age)
        delete_settled(conn, now, endpoint_id)
        conn.commit()
        while True:
            batch = _within_bytes(lock_pending(conn, oldest_ms, newest_ms, endpoint_id, max_lines), max_bytes)
            if not batch:
                conn.commit()
                break
            try:
                result = client.send([line for _, line in batch])
            except DynatraceUnavailableError as exc:
                if exc.settled:  # the part of a split batch Dynatrace took before the outage is never resent
                    record_result(conn, batch[:exc.settled], exc.invalid)
                    report.sent += exc.settled - len(exc.invalid)
                    report.invalid += len(exc.invalid)
                record_failure(conn, [line_id for line_id, _ in batch[exc.settled:]], str(exc))
                conn.commit()
                report.errors.append(str(exc))
                log.warning("Dynatrace push stopped; %d lines stay pending: %s", len(batch), exc)
                break
            except Exception as exc:
                record_failure(conn, [line_id for line_id, _ in batch], str(exc))
                conn.commit()
                raise
            record_result(conn, batch, result.invalid)
            conn.commit()
            report.batches += 1
            report.retries += result.retries
            report.invalid += len(result.invalid)
            report.sent += len(batch) - len(result.invalid)
        report.skipped = count_future(conn, newest_ms, endpoint_id)
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


def _within_bytes(rows: list[tuple[int, str]], max_bytes: int) -> list[tuple[int, str]]:
    """The locked lines that fit one request of `max_bytes` (at least one); the rest wait for the next batch."""
    batch: list[tuple[int, str]] = []
    size = 0
    for line_id, line in rows:
        size += len(line.encode("utf-8")) + 1
        if batch and size > max_bytes:
            break
        batch.append((line_id, line))
    return batch
