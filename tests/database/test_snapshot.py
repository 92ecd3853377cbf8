"""The snapshot twin: a second session that sees exactly the main transaction's state of the data."""

from __future__ import annotations

import threading

import psycopg

from monitoring_lib.compute.database.snapshot import beside


def _count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM public.log").fetchone()[0]


def test_the_twin_reads_the_main_snapshot_and_runs_beside_it(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE public.log (x int)")
        setup.execute("INSERT INTO public.log SELECT generate_series(1, 10)")
        with psycopg.connect(db_url) as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SELECT set_config('work_mem', '8MB', true)")
            assert _count(conn) == 10
            setup.execute("INSERT INTO public.log SELECT generate_series(1, 5)")  # lands after the snapshot
            with beside(conn, db_url) as side:
                assert side.parallel
                seen = side.submit(lambda twin: (_count(twin), threading.current_thread().name,
                                                 twin.execute("SHOW work_mem").fetchone()[0]))
                assert _count(conn) == 10  # the main session is free meanwhile
                count, thread, work_mem = seen.result()
            assert count == 10 and thread != threading.current_thread().name and work_mem == "8MB"
        assert _count(setup) == 15


def test_without_a_consistent_snapshot_jobs_run_in_order_on_the_main_connection(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE public.log (x int)")
    with psycopg.connect(db_url) as conn:
        with conn.transaction():  # READ COMMITTED: each statement sees new rows, so no twin could agree
            with beside(conn, db_url) as side:
                assert not side.parallel
                job = side.submit(lambda c: (c is conn, _count(c)))
                assert job.done() and job.result() == (True, 0)
        with conn.transaction(), beside(conn, None) as side:  # no address to open a second session with
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            assert not side.parallel
