"""The window's database snapshot: one REPEATABLE READ, READ ONLY transaction, and a twin session on it.

Every in-database result of a window describes one state of it, so rows landing meanwhile cannot make
two counts disagree. `read_snapshot` opens that transaction (or joins the caller's), `window_snapshot`
adds what both database-reading modes check first (the source's column types).

A second database session on the same snapshot lets independent aggregate queries run side by side.
PostgreSQL runs some of the interval's queries on one core: hashed `GROUPING SETS`, ordered-set
aggregates such as `percentile_cont`, a grouping by request id. A query that does not need another's
result can run meanwhile on a second session that imported the first one's snapshot
(`pg_export_snapshot`), so every result still describes one state of the window.

Where that is not possible (a READ COMMITTED caller, a server or pooler that refuses the export or the
import), jobs run in order on the main connection: the same results, one after the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from monitoring_lib.compute.database.bad_rows import require_numeric_types
from monitoring_lib.config import EndpointConfig
from monitoring_lib.source import describe_source
from monitoring_lib.sql_common import raise_work_mem

T = TypeVar("T")
_CONSISTENT = {"repeatable read", "serializable"}
READ_ONLY_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


@contextmanager
def read_snapshot(conn: psycopg.Connection, *, work_mem: bool = True) -> Iterator[None]:
    """A REPEATABLE READ, READ ONLY transaction (with `work_mem` raised) when `conn` is idle; else a savepoint
    inside the caller's transaction, whose snapshot the caller chose."""
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    with conn.transaction():
        if idle:
            conn.execute(READ_ONLY_SNAPSHOT)
            if work_mem:
                raise_work_mem(conn)
        yield


@contextmanager
def window_snapshot(conn: psycopg.Connection, cfg: EndpointConfig) -> Iterator[dict[str, str]]:
    """`read_snapshot`, yielding the source's SQL types once its numeric columns are known to be numeric."""
    with read_snapshot(conn):
        types = describe_source(conn, cfg.source)
        require_numeric_types(cfg, types)
        yield types


class Beside:
    """Runs jobs (`job(connection)`) on the snapshot twin's thread, or at once on the main connection."""

    def __init__(self, conn: psycopg.Connection, twin: psycopg.Connection | None) -> None:
        self._conn, self._twin = conn, twin
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="snapshot-twin") if twin is not None else None

    @property
    def parallel(self) -> bool:
        return self._pool is not None

    def submit(self, job: Callable[[psycopg.Connection], T]) -> Future[T]:
        """Start `job` beside the caller; without a twin it runs now (its errors raise here, before the
        main transaction is used again)."""
        if self._pool is None:
            done: Future[T] = Future()
            done.set_result(job(self._conn))
            return done
        return self._pool.submit(job, self._twin)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._twin is not None:
            self._twin.close()


def _twin(conn: psycopg.Connection, url: str | None) -> psycopg.Connection | None:
    """A READ ONLY session on `conn`'s snapshot with its `work_mem`, or None when that is not possible.

    PostgreSQL exports snapshots from a top-level transaction only (not from a savepoint), which is
    therefore what `conn` must be in; a standby is left alone.
    """
    if url is None or conn.info.transaction_status != TransactionStatus.INTRANS:
        return None
    isolation, work_mem, standby = conn.execute(
        "SELECT current_setting('transaction_isolation'), current_setting('work_mem'), pg_is_in_recovery()"
    ).fetchone()
    if isolation not in _CONSISTENT or standby:
        return None
    snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
    twin = None
    try:
        twin = psycopg.connect(url, connect_timeout=10)
        twin.execute(READ_ONLY_SNAPSHOT)
        # a utility statement takes no bound parameters; the identifier comes from the server, quoted as a literal
        twin.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        twin.execute("SELECT set_config('work_mem', %s, true)", (work_mem,))
    except psycopg.Error:
        if twin is not None:
            twin.close()
        return None
    return twin


@contextmanager
def beside(conn: psycopg.Connection, url: str | None) -> Iterator[Beside]:
    """A `Beside` for the open top-level transaction of `conn`; waits for its jobs and closes the twin on exit."""
    runner = Beside(conn, _twin(conn, url))
    try:
        yield runner
    finally:
        runner.close()
