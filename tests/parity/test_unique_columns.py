"""Duplicates ruled out by a unique index: found in the catalog, and then the window is not grouped at all.

An inference log usually has its request id as primary key. `compute: database` then counts duplicated ids
(bad rows and the uniqueness check alike) without a `GROUP BY` of every id of the window. The proof that no
row is read: the same calls succeed under a role that may not read the table, and fail once the index is gone.
"""

from __future__ import annotations

import psycopg
import pytest

from monitoring_lib.config import SourceConfig
from monitoring_lib.source import unique_columns
from tests.database.test_quality import make_cfg
from tests.parity.test_quality_in_database import assert_same, both, clean_rows, create_source, shared_scan

# a role every test database has (the migrations create it) and that may not read the source table
NO_SELECT = "mlmon_readonly"


def columns_of(conn: psycopg.Connection, table: str) -> frozenset[str]:
    return unique_columns(conn, SourceConfig(table=table, numeric_features=("x",)))


def test_only_single_column_unique_indexes_without_predicate_or_expression_count(conn) -> None:
    conn.execute("""
        CREATE TABLE public.log (request_id text PRIMARY KEY, code text UNIQUE, a int, b int, c text, d text,
                                 e text, f text, g text, UNIQUE (a, b));
        CREATE UNIQUE INDEX ON public.log (lower(c));
        CREATE UNIQUE INDEX ON public.log (d) WHERE d <> '';
        CREATE UNIQUE INDEX ON public.log (e) INCLUDE (f);
        CREATE INDEX ON public.log (g);
        CREATE SCHEMA "Odd Schema";
        CREATE TABLE "Odd Schema"."Odd.Name" ("Id" bigint UNIQUE);
    """)
    assert columns_of(conn, "public.log") == {"request_id", "code", "e"}
    assert columns_of(conn, "log") == {"request_id", "code", "e"}  # the search path finds it
    assert columns_of(conn, "Odd Schema.Odd.Name") == {"Id"}  # quoted, not parsed as SQL
    assert columns_of(conn, "public.no_such_table") == frozenset()
    assert unique_columns(conn, SourceConfig(sql="SELECT * FROM public.log", numeric_features=("a",))) == frozenset()


def test_inheritance_children_void_the_parent_index_but_partitions_do_not(conn) -> None:
    conn.execute("""
        CREATE TABLE public.parent (request_id text PRIMARY KEY);
        CREATE TABLE public.child () INHERITS (public.parent);
        CREATE TABLE public.parted (request_id text PRIMARY KEY, ts timestamptz) PARTITION BY HASH (request_id);
        CREATE TABLE public.parted_0 PARTITION OF public.parted FOR VALUES WITH (MODULUS 2, REMAINDER 0);
        CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES WITH (MODULUS 2, REMAINDER 1);
    """)
    # the parent's key does not cover rows stored in the child, which a query of the parent also reads
    conn.execute("INSERT INTO public.parent VALUES ('a'); INSERT INTO public.child VALUES ('a')")
    assert conn.execute("SELECT count(*) FROM public.parent").fetchone()[0] == 2
    assert columns_of(conn, "public.parent") == frozenset()
    assert columns_of(conn, "public.parted") == {"request_id"}


def test_with_a_unique_request_id_the_window_is_not_grouped_and_results_match_memory(conn, db_url) -> None:
    extras = [{"type": "expect_column_values_to_be_unique",
               "kwargs": {"column": "request_id", "row_condition": "`error` != True", "condition_parser": "pandas"}}]
    cfg = make_cfg(extra_expectations=extras)
    rows = clean_rows()
    rows[7]["request_id"] = None  # NULL ids are a defect of their own, and a unique index allows several
    rows[8]["request_id"] = None
    create_source(conn, rows)
    conn.execute("ALTER TABLE public.inference_log ADD UNIQUE (request_id)")
    conn.commit()
    memory, database = both(conn, db_url, cfg)
    assert_same(memory, database)
    assert memory.result("unique:request_id").unexpected_count == 0
    assert shared_scan(conn, cfg)[0].report(conn)[0].by_reason == {"null_request_id": 2}
    conn.rollback()

    # without the NULL ids no check fails, so no query samples the failed checks' rows
    conn.execute("UPDATE public.inference_log SET request_id = 'filled-' || latency_ms WHERE request_id IS NULL")
    conn.commit()
    memory, _ = both(conn, db_url, cfg)

    def as_reader_without_select() -> tuple[tuple[int, int], object]:
        bad_rows, quality = shared_scan(conn, cfg)  # the one scan of the window, as the table's owner
        conn.execute(f"SET LOCAL ROLE {NO_SELECT}")
        return bad_rows.repeated_ids(conn), quality.outcome(conn, None)

    repeated, outcome = as_reader_without_select()
    assert repeated == (0, 0)
    assert_same(memory, outcome)  # both uniqueness checks answered from the catalog
    conn.rollback()

    conn.execute("ALTER TABLE public.inference_log DROP CONSTRAINT inference_log_request_id_key")
    conn.commit()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_reader_without_select()
    conn.rollback()
