"""`source.sample_window` against the plain definition of the sample: the first `rows` of the window in
(hash of the request id, request id, timestamp) order. The server's cut on the hash must never change
which rows that is: not with repeated ids, NULL ids, a window shorter than the sample, or a `sql:` source."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from monitoring_lib.source import sample_window
from tests.sources import WINDOW_END, WINDOW_START, clean_rows, create_inference_table, insert_rows, make_config


def _expected(conn: psycopg.Connection, relation: sql.Composable, rows: int) -> list[tuple]:
    query = sql.SQL("SELECT request_id, ts, claimed_amount FROM {} WHERE ts >= %s AND ts < %s"
                    " ORDER BY hashtextextended(request_id::text, 0), request_id::text, ts LIMIT %s").format(relation)
    return [tuple(r) for r in conn.execute(query, (WINDOW_START, WINDOW_END, rows)).fetchall()]


def _sampled(url: str, cfg, rows: int) -> list[tuple]:
    frame = sample_window(url, cfg, WINDOW_START, WINDOW_END, ["request_id", "ts", "claimed_amount"], rows)
    return [(r.request_id if isinstance(r.request_id, str) else None, r.ts.to_pydatetime(), r.claimed_amount)
            for r in frame.itertuples()]


@pytest.fixture()
def source(db_url: str) -> str:
    """600 rows in the window, 40 of them repeating another row's id at a later time, 30 with NULL ids,
    and rows either side of the window that must never be sampled."""
    rows = clean_rows(600)
    repeated = [(rows[i][0], rows[i][1] + timedelta(seconds=1), *rows[i][2:]) for i in range(0, 400, 10)]
    nulls = [(None, *row[1:]) for row in clean_rows(30, seed=3, prefix="n")]
    outside = clean_rows(50, start=WINDOW_START - timedelta(hours=1), seed=4, prefix="o") + \
        clean_rows(50, start=WINDOW_END, seed=5, prefix="p")
    with psycopg.connect(db_url) as conn:
        create_inference_table(conn)
        insert_rows(conn, [r for r in rows + repeated + nulls + outside if r[1] < WINDOW_END + timedelta(hours=1)])
        conn.commit()
    return db_url


@pytest.mark.parametrize("rows", [100, 250, 640, 660, 700, 5000])
def test_the_sample_is_the_first_rows_in_hash_order(source: str, rows: int) -> None:
    # 640 in-window rows have ids: at 660 the cut falls among the NULL ids, past 670 the window is shorter
    with psycopg.connect(source) as conn:
        expected = _expected(conn, sql.SQL("public.inference"), rows)
    got = _sampled(source, make_config(), rows)
    assert len(got) == min(rows, 670)
    assert sorted(got, key=repr) == sorted(expected, key=repr)


def test_a_sql_source_samples_the_same_rows(source: str) -> None:
    body = "SELECT * FROM public.inference WHERE claimed_amount > 0"
    cfg = make_config(source={"table": None, "sql": body})
    with psycopg.connect(source) as conn:
        expected = _expected(conn, sql.SQL("({}) AS src").format(sql.SQL(body)), 300)
    got = _sampled(source, cfg, 300)
    assert len(got) == 300
    assert sorted(got, key=repr) == sorted(expected, key=repr)
