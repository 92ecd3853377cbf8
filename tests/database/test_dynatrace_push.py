"""Push through a real local ingest server and a real PostgreSQL: nothing lost, nothing sent twice."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from ingest_server import IngestServer, parse_line

from monitoring_lib.config import EndpointConfig
from monitoring_lib.dynatrace import IngestClient, build_interval_lines, client_from_env, push_pending, stage_lines
from monitoring_lib.dynatrace.lines import LineBatch, build_performance_lines, performance_key_prefix
from monitoring_lib.dynatrace.protocol import format_gauge
from monitoring_lib.errors import DynatraceError, DynatraceUnavailableError
from monitoring_lib.results.outbox import pending_lines, tidy
from monitoring_lib.tasks import push_dynatrace

TOKEN = "dt0c01.TESTPUBLIC.very-secret-token-value"
W_START = datetime(2026, 3, 1, 11, 0, tzinfo=timezone.utc)
W_END = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
NOW = W_END + timedelta(minutes=5)
DIMS = {"endpoint_id": "ep-1", "project": "claims", "model": "gbm", "model_version": "3"}


def make_cfg(**dynatrace: object) -> EndpointConfig:
    return EndpointConfig.model_validate({
        "endpoint_id": "ep-1",
        "project": "claims",
        "model": {"name": "gbm", "version": "3"},
        "source": {"table": "public.inference", "numeric_features": ["age", "amount"],
                   "categorical_features": ["region"]},
        "dynatrace": {"features": ["age", "region"], **dynatrace},
    })


def gauge_batch(count: int, timestamp: datetime = W_END, value: float = 1.0) -> LineBatch:
    lines = [format_gauge("mlmon.test.metric", value, {**DIMS, "feature": f"f{i:04d}"}, timestamp)
             for i in range(count)]
    return LineBatch(tuple(line for line in lines if line is not None))


def no_sleep(_: float) -> None:
    return None


@pytest.fixture()
def server() -> Iterator[IngestServer]:
    with IngestServer(token=TOKEN) as srv:
        yield srv


@pytest.fixture()
def client(server: IngestServer) -> Iterator[IngestClient]:
    with IngestClient(server.url, TOKEN, sleep=no_sleep) as c:
        yield c


def outbox_status(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM monitoring.dynatrace_outbox GROUP BY status").fetchall()
    conn.commit()
    return dict(rows)


def stage(conn: psycopg.Connection, batch: LineBatch, start: datetime = W_START, end: datetime = W_END) -> int:
    queued = stage_lines(conn, "ep-1", start, end, batch)
    conn.commit()
    return queued


# --- client against the server ------------------------------------------------------------------

def test_client_delivers_through_429_and_503(server: IngestServer) -> None:
    slept: list[float] = []
    server.fail_next(2, 429, retry_after=7)
    server.fail_next(1, 503)
    lines = [m.line for m in gauge_batch(5).lines]
    with IngestClient(server.url, TOKEN, sleep=slept.append, backoff_base=0.5) as c:
        result = c.send(lines)
    assert result.lines_ok == 5 and result.invalid == {} and result.retries == 3
    assert server.statuses() == [429, 429, 503, 202]
    assert slept[:2] == [7.0, 7.0]  # Retry-After honoured
    assert 0 <= slept[2] <= 0.5 * 2**2  # full jitter within the third backoff step
    assert server.accepted == lines


def test_retries_exhausted_raise_unavailable(server: IngestServer) -> None:
    server.fail_next(10, 503)
    with IngestClient(server.url, TOKEN, sleep=no_sleep, max_retries=2) as c:
        with pytest.raises(DynatraceUnavailableError, match="after 3 attempts; last: HTTP 503") as err:
            c.send(["mlmon.a.b gauge,1"])
    assert TOKEN not in str(err.value)
    assert server.statuses() == [503, 503, 503]


def test_connection_errors_are_retried_then_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slept: list[float] = []
    with IngestClient(f"http://127.0.0.1:{port}", TOKEN, sleep=slept.append, max_retries=3, timeout=2) as c:
        with pytest.raises(DynatraceUnavailableError, match="ConnectionError"):
            c.send(["mlmon.a.b gauge,1"])
    assert len(slept) == 3


def test_413_splits_the_batch_until_it_fits() -> None:
    with IngestServer(token=TOKEN, max_bytes=600) as srv, IngestClient(srv.url, TOKEN, sleep=no_sleep) as c:
        lines = [m.line for m in gauge_batch(16).lines]
        result = c.send(lines)
        assert result.lines_ok == 16 and result.invalid == {}
        assert 413 in srv.statuses() and srv.statuses().count(202) >= 2
        assert sorted(srv.accepted) == sorted(lines)
        huge = format_gauge("mlmon.test.metric", 1, {"f": "x" * 240, **{f"d{i}": "y" * 240 for i in range(3)}}, W_END)
        assert huge is not None
        single = c.send([huge.line])
        assert single.lines_ok == 0 and "413" in single.invalid[0]


def test_an_outage_after_part_of_a_split_batch_went_through_resends_only_the_rest(conn: psycopg.Connection) -> None:
    """Dynatrace took the first half of a batch split on 413, then went down: those lines are marked sent,
    so the next push sends only the other half, and no count is ingested twice."""
    with IngestServer(token=TOKEN, max_bytes=600) as srv:
        lines = gauge_batch(8)
        stage(conn, lines)
        srv.fail_next(3, 503, after=2)  # the whole batch (413), its first half (accepted), then down
        with IngestClient(srv.url, TOKEN, sleep=no_sleep, max_retries=2) as c:
            first = push_pending(conn, c, now=NOW)
        assert first.errors and first.sent == 4 and srv.statuses()[:2] == [413, 202]
        assert outbox_status(conn) == {"sent": 4, "pending": 4}
        with IngestClient(srv.url, TOKEN, sleep=no_sleep) as c:
            second = push_pending(conn, c, now=NOW + timedelta(minutes=5))
        assert second.sent == 4 and not second.errors
        assert sorted(srv.accepted) == sorted(m.line for m in lines.lines)  # each line once


def test_400_partial_reports_invalid_lines_by_position(server: IngestServer, client: IngestClient) -> None:
    good = [m.line for m in gauge_batch(2).lines]
    result = client.send([good[0], "mlmon.bad key gauge,1", good[1], "mlmon.x.y gauge,abc"])
    assert result.lines_ok == 2
    assert set(result.invalid) == {1, 3}
    assert "payload" in result.invalid[3]
    assert server.accepted == good


def test_401_and_404_stop_clearly_without_leaking_the_token(
    server: IngestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "dt0c01.WRONG.another-secret-value"
    with IngestClient(server.url, wrong, sleep=no_sleep) as c:
        assert wrong not in repr(c) and "***" in repr(c)
        with pytest.raises(DynatraceError, match="401") as err:
            c.send(["mlmon.a.b gauge,1"])
    assert "token" in str(err.value) and not isinstance(err.value, DynatraceUnavailableError)
    assert wrong not in str(err.value)
    with IngestClient(server.url + "/e/unknown", TOKEN, sleep=no_sleep) as c:
        with pytest.raises(DynatraceError, match="404.*enabled"):
            c.send(["mlmon.a.b gauge,1"])
    server.fail_next(1, 429, retry_after=0)
    with IngestClient(server.url, TOKEN, sleep=no_sleep) as c:
        c.send(["mlmon.a.b gauge,1"])
        assert TOKEN not in repr(c) and TOKEN not in str(vars(c))
    assert caplog.records, "the retry and the result are logged"
    assert TOKEN not in caplog.text and wrong not in caplog.text


def test_local_oneagent_endpoint_takes_no_token() -> None:
    with IngestServer(token=None, path="/metrics/ingest") as srv:
        with IngestClient(srv.url + "/metrics/ingest", None, sleep=no_sleep) as c:
            assert c.endpoint == srv.url + "/metrics/ingest" and repr(c).endswith("token=None)")
            assert c.send(["mlmon.a.b gauge,1"]).lines_ok == 1
        assert srv.accepted == ["mlmon.a.b gauge,1"]


def test_api_endpoint_needs_a_token_and_env_builds_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DynatraceError, match=r"metrics\.ingest"):
        IngestClient("https://abc.live.dynatrace.com", None)
    monkeypatch.delenv("DYNATRACE_URL", raising=False)
    with pytest.raises(DynatraceError, match="DYNATRACE_URL"):
        client_from_env()
    monkeypatch.setenv("DYNATRACE_URL", "https://abc.live.dynatrace.com/")
    monkeypatch.setenv("DYNATRACE_API_TOKEN", TOKEN)
    c = client_from_env(sleep=no_sleep)
    assert c.endpoint == "https://abc.live.dynatrace.com/api/v2/metrics/ingest"
    assert TOKEN not in repr(c)


# --- outbox -----------------------------------------------------------------------------------

def test_push_sends_in_batches_and_marks_sent(conn: psycopg.Connection, server: IngestServer,
                                              client: IngestClient) -> None:
    batch = gauge_batch(1200)
    assert stage(conn, batch) == 1200
    report = push_pending(conn, client, now=NOW)
    assert (report.sent, report.invalid, report.expired, report.batches) == (1200, 0, 0, 2)
    assert [r["lines"] for r in server.requests] == [1000, 200]
    assert sorted(server.accepted) == sorted(m.line for m in batch.lines)
    assert outbox_status(conn) == {"sent": 1200}


def test_batches_respect_the_byte_limit(conn: psycopg.Connection, server: IngestServer,
                                        client: IngestClient) -> None:
    batch = gauge_batch(30)
    stage(conn, batch)
    report = push_pending(conn, client, now=NOW, max_bytes=1000)
    assert report.sent == 30 and report.batches > 1
    assert all(r["bytes"] <= 1000 for r in server.requests)
    assert len(server.accepted) == 30


def test_no_duplicates_on_repush_or_restaging(conn: psycopg.Connection, server: IngestServer,
                                              client: IngestClient) -> None:
    batch = gauge_batch(10)
    stage(conn, batch)
    assert push_pending(conn, client, now=NOW).sent == 10
    again = push_pending(conn, client, now=NOW)
    assert (again.sent, again.batches) == (0, 0)
    assert stage(conn, gauge_batch(10, value=2.0)) == 0  # sent series are not queued again
    assert push_pending(conn, client, now=NOW).sent == 0
    assert len(server.accepted) == 10 and len(set(server.accepted)) == 10
    assert outbox_status(conn) == {"sent": 10}


def test_restaging_replaces_unsent_lines(conn: psycopg.Connection, server: IngestServer,
                                         client: IngestClient) -> None:
    stage(conn, gauge_batch(5, value=1.0))
    stage(conn, gauge_batch(3, value=2.0))  # the re-run lost two series and changed the values
    lines = [p.line for p in pending_lines(conn)]
    conn.commit()
    assert len(lines) == 3 and all(" gauge,2 " in line for line in lines)
    assert push_pending(conn, client, now=NOW).sent == 3
    assert sorted(server.accepted) == sorted(lines)


def test_staging_is_part_of_the_callers_transaction(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO monitoring.drift_summary (endpoint_id, window_start, window_end, metric, value, drift_status)"
        " VALUES ('ep-1', %s, %s, 'general_drift', 0.3, 'no_drift')",
        (W_START, W_END),
    )
    stage_lines(conn, "ep-1", W_START, W_END, gauge_batch(4))
    conn.rollback()
    assert outbox_status(conn) == {}


def test_expired_lines_are_counted_and_not_sent(conn: psycopg.Connection, server: IngestServer,
                                                client: IngestClient) -> None:
    old_end = NOW - timedelta(hours=2)
    stage(conn, gauge_batch(4, timestamp=old_end), old_end - timedelta(hours=1), old_end)
    stage(conn, gauge_batch(2))
    report = push_pending(conn, client, now=NOW)
    assert (report.expired, report.sent) == (4, 2)
    assert len(server.accepted) == 2
    assert outbox_status(conn) == {"expired": 4, "sent": 2}
    reason = conn.execute("SELECT DISTINCT last_error FROM monitoring.dynatrace_outbox WHERE status = 'expired'")
    assert "older than 1 hour" in reason.fetchone()[0]


def test_settled_lines_are_deleted_after_the_retention_and_pending_ones_never(
        conn: psycopg.Connection, server: IngestServer, client: IngestClient) -> None:
    """The outbox stays bounded: a week after their time, sent, refused and expired lines go; a push
    without any Dynatrace configured still expires what can no longer be sent, and tidies the rest."""
    stage(conn, gauge_batch(3))
    push_pending(conn, client, now=NOW)
    stage(conn, gauge_batch(2, timestamp=W_END + timedelta(hours=1)), W_END, W_END + timedelta(hours=1))
    assert outbox_status(conn) == {"sent": 3, "pending": 2}
    later = W_END + timedelta(days=7, minutes=1)
    with conn.transaction():
        assert tidy(conn, now=later) == 2
    assert outbox_status(conn) == {"expired": 2}  # the sent lines are past the retention, the expired not yet
    push_pending(conn, client, now=later + timedelta(hours=1))
    assert outbox_status(conn) == {}
    assert len(server.accepted) == 3


def test_a_task_without_dynatrace_configured_expires_and_tidies(db_url: str, conn: psycopg.Connection) -> None:
    stale = datetime.now(timezone.utc) - timedelta(hours=3)
    stage(conn, gauge_batch(2, timestamp=stale), stale - timedelta(hours=1), stale)
    stage(conn, gauge_batch(1, timestamp=datetime.now(timezone.utc)))
    result = push_dynatrace(db_url, None, "ep-1")
    assert result["status"] == "not_configured" and result["expired"] == 2
    assert outbox_status(conn) == {"expired": 2, "pending": 1}


def test_future_lines_are_held_back(conn: psycopg.Connection, server: IngestServer,
                                    client: IngestClient) -> None:
    ahead = NOW + timedelta(minutes=20)
    stage(conn, gauge_batch(3, timestamp=ahead), W_END, ahead)
    report = push_pending(conn, client, now=NOW)
    assert (report.sent, report.skipped, report.batches) == (0, 3, 0)
    assert server.requests == []
    later = push_pending(conn, client, now=ahead)
    assert later.sent == 3


def test_400_partial_marks_invalid_and_never_resends(conn: psycopg.Connection, server: IngestServer,
                                                     client: IngestClient) -> None:
    stage(conn, gauge_batch(3))
    conn.execute(
        "INSERT INTO monitoring.dynatrace_outbox (endpoint_id, window_start, window_end, series_key, line,"
        " timestamp_ms) VALUES ('ep-1', %s, %s, 'broken', 'mlmon.broken key gauge,1', %s)",
        (W_START, W_END, int(W_END.timestamp() * 1000)),
    )
    conn.commit()
    report = push_pending(conn, client, now=NOW)
    assert (report.sent, report.invalid) == (3, 1)
    row = conn.execute("SELECT status, last_error FROM monitoring.dynatrace_outbox WHERE series_key = 'broken'")
    status, error = row.fetchone()
    conn.commit()
    assert status == "invalid" and "invalid" in error
    requests_before = len(server.requests)
    assert push_pending(conn, client, now=NOW).sent == 0
    assert len(server.requests) == requests_before and len(server.accepted) == 3


def test_push_delivers_through_429_and_503(conn: psycopg.Connection, server: IngestServer,
                                           client: IngestClient) -> None:
    stage(conn, gauge_batch(6))
    server.fail_next(1, 429, retry_after=1)
    server.fail_next(2, 503)
    report = push_pending(conn, client, now=NOW)
    assert (report.sent, report.retries, report.errors) == (6, 3, [])
    assert sorted(server.accepted) == sorted(m.line for m in gauge_batch(6).lines)


def test_outage_leaves_lines_pending_and_a_later_push_finishes(
    conn: psycopg.Connection, server: IngestServer
) -> None:
    stage(conn, gauge_batch(5))
    server.fail_next(3, 503)
    with IngestClient(server.url, TOKEN, sleep=no_sleep, max_retries=2) as flaky:
        report = push_pending(conn, flaky, now=NOW)
    assert report.sent == 0 and len(report.errors) == 1 and not report.ok
    row = conn.execute("SELECT min(attempts), min(last_error) FROM monitoring.dynatrace_outbox").fetchone()
    conn.commit()
    assert row[0] == 1 and "503" in row[1]
    assert outbox_status(conn) == {"pending": 5}
    with IngestClient(server.url, TOKEN, sleep=no_sleep) as healthy:
        assert push_pending(conn, healthy, now=NOW).sent == 5
    assert len(server.accepted) == 5


def test_401_during_push_raises_and_keeps_lines(conn: psycopg.Connection, server: IngestServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stage(conn, gauge_batch(2))
    bad_token = "dt0c01.BAD.leaky-secret"
    with IngestClient(server.url, bad_token, sleep=no_sleep) as c, pytest.raises(DynatraceError) as err:
        push_pending(conn, c, now=NOW)
    assert "401" in str(err.value) and bad_token not in str(err.value)
    assert outbox_status(conn) == {"pending": 2}
    errors = conn.execute("SELECT last_error FROM monitoring.dynatrace_outbox").fetchall()
    conn.commit()
    assert all("401" in e[0] and bad_token not in e[0] for e in errors)
    assert bad_token not in caplog.text


def test_push_with_a_connection_factory_and_endpoint_filter(db_url: str, server: IngestServer,
                                                            client: IngestClient) -> None:
    with psycopg.connect(db_url) as conn:
        stage(conn, gauge_batch(2))
        stage_lines(conn, "ep-2", W_START, W_END, gauge_batch(3))
        conn.commit()
        conn.execute("SELECT 1")
        with pytest.raises(ValueError, match="open transaction"):
            push_pending(conn, client, now=NOW)
    report = push_pending(lambda: psycopg.connect(db_url), client, now=NOW, endpoint_id="ep-2")
    assert report.sent == 3
    with psycopg.connect(db_url) as conn:
        assert [p.endpoint_id for p in pending_lines(conn)] == ["ep-1", "ep-1"]


# --- lines from summary rows -----------------------------------------------------------------

def _fill_summary(conn: psycopg.Connection) -> None:
    w = (W_START, W_END)
    for metric, value in [("general_drift", 0.42), ("tvd_mean", 0.1), ("hellinger_mean", 0.2),
                          ("kld_mean", float("nan")), ("prediction_mean", 1234.5), ("psi_mean", 0.3)]:
        conn.execute(
            "INSERT INTO monitoring.drift_summary (endpoint_id, window_start, window_end, metric, value,"
            " drift_status) VALUES ('ep-1', %s, %s, %s, %s, 'possible_drift')",
            (*w, metric, value),
        )
    for feature, metric, value in [("age", "hellinger", 0.3), ("amount", "hellinger", 0.5),
                                   ("region", "hellinger", 0.05), ("age", "tvd", 0.9)]:
        conn.execute(
            "INSERT INTO monitoring.feature_drift (endpoint_id, window_start, window_end, feature, metric, value)"
            " VALUES ('ep-1', %s, %s, %s, %s, %s)",
            (*w, feature, metric, value),
        )
    for i, success in enumerate([True, False, False, True]):
        conn.execute(
            "INSERT INTO monitoring.data_quality_results (endpoint_id, window_start, window_end, expectation_id,"
            " expectation_type, success, severity) VALUES ('ep-1', %s, %s, %s, 'x', %s, 'warning')",
            (*w, f"e{i}", success),
        )
    buckets = [(0, {"predictions": 100, "errors": 1, "latency_avg": 10.0, "latency_p95": 30.0}),
               (5, {"predictions": 300, "errors": 2, "latency_avg": 20.0, "latency_p95": 50.0})]
    for minute, metrics in buckets:
        for metric, value in metrics.items():
            conn.execute(
                "INSERT INTO monitoring.operational_metrics (endpoint_id, window_start, window_end, bucket_start,"
                " metric, value) VALUES ('ep-1', %s, %s, %s, %s, %s)",
                (*w, W_START + timedelta(minutes=minute), metric, value),
            )
    for segment, metric, value in [("all", "rmse", 3.5), ("all", "r2 score", 0.8), ("high", "rmse", 9.0)]:
        conn.execute(
            "INSERT INTO monitoring.model_performance (endpoint_id, window_start, window_end, segment, metric,"
            " value, label_count) VALUES ('ep-1', %s, %s, %s, %s, %s, 40)",
            (*w, segment, metric, value),
        )


def _values(batch: LineBatch) -> dict[tuple[str, str | None], tuple[str, float]]:
    parsed = [parse_line(m.line) for m in batch.lines]
    for p in parsed:
        assert {k: p.dimensions[k] for k in DIMS} == DIMS
        assert p.timestamp_ms == int(W_END.timestamp() * 1000)
    return {(p.key, p.dimensions.get("feature")): (p.payload.split(",")[0], p.value) for p in parsed}


def test_build_interval_lines_reads_every_summary_table(conn: psycopg.Connection) -> None:
    _fill_summary(conn)
    batch = build_interval_lines(conn, make_cfg(), W_START, W_END, "3")
    values = _values(batch)
    assert batch.skipped == 1  # kld_mean is NaN
    assert values == {
        ("mlmon.drift.general", None): ("gauge", 0.42),
        ("mlmon.drift.tvd_mean", None): ("gauge", 0.1),
        ("mlmon.drift.hellinger_mean", None): ("gauge", 0.2),
        ("mlmon.drift.status", None): ("gauge", 1.0),
        ("mlmon.prediction.mean", None): ("gauge", 1234.5),
        ("mlmon.feature.drift", "age"): ("gauge", 0.3),
        ("mlmon.feature.drift", "region"): ("gauge", 0.05),
        ("mlmon.quality.failed_expectations", None): ("gauge", 2.0),
        ("mlmon.predictions.count", None): ("count", 400.0),
        ("mlmon.errors.count", None): ("count", 3.0),
        ("mlmon.predictions.per_second", None): ("gauge", 400 / 3600),
        ("mlmon.latency.avg", None): ("gauge", 17.5),  # (10*100 + 20*300) / 400
        ("mlmon.latency.p95", None): ("gauge", 50.0),
    }  # the window's performance rows leave with the performance task's lines, not these
    assert len({m.series_key for m in batch.lines}) == len(batch.lines)


def test_performance_lines_carry_the_latest_labelled_window_stamped_now(conn: psycopg.Connection) -> None:
    _fill_summary(conn)  # performance of [11:00, 12:00): rmse 3.5, 'r2 score' 0.8, segment 'high' ignored
    older = (W_START - timedelta(hours=1), W_START)
    conn.execute("INSERT INTO monitoring.model_performance (endpoint_id, window_start, window_end, segment, metric,"
                 " value, label_count) VALUES ('ep-1', %s, %s, 'all', 'rmse', 9.9, 100)", older)
    conn.execute("INSERT INTO monitoring.interval_runs (endpoint_id, window_start, window_end, status, model_version,"
                 " library_version, started_at, finished_at, duration_s) VALUES ('ep-1', %s, %s, 'ok', '2', 'x',"
                 " now(), now(), 0)", (W_START, W_END))
    cfg = EndpointConfig.model_validate({**make_cfg().model_dump(by_alias=True), "labels": {"table": "public.l"}})
    run_end = W_END + timedelta(hours=5)  # labels land hours later: stamped with the run, not the window
    batch = build_performance_lines(conn, cfg, run_end, W_START - timedelta(days=1), "3")
    parsed = [parse_line(m.line) for m in batch.lines]
    assert {(p.key, p.value) for p in parsed} == {("mlmon.performance.rmse", 3.5),
                                                 ("mlmon.performance.r2_score", 0.8),
                                                 ("mlmon.performance.labels", 40)}
    assert {p.timestamp_ms for p in parsed} == {int(run_end.timestamp() * 1000)}
    assert {p.dimensions["model_version"] for p in parsed} == {"2"}  # the version that served the window
    # under labels.min_count (default 30) the window is not pushed: the older one with 100 labels is
    conn.execute("UPDATE monitoring.model_performance SET label_count = 29 WHERE window_start = %s", (W_START,))
    fewer = build_performance_lines(conn, cfg, run_end, W_START - timedelta(hours=2), "3").lines
    fewer = [parse_line(m.line) for m in fewer]
    assert {(p.key, p.value) for p in fewer} == {("mlmon.performance.rmse", 9.9), ("mlmon.performance.labels", 100)}
    conn.execute("UPDATE monitoring.model_performance SET label_count = 40 WHERE window_start = %s", (W_START,))
    # beyond the horizon, or a config without the metric: nothing
    assert build_performance_lines(conn, cfg, run_end, W_END, "3").lines == ()
    assert build_performance_lines(conn, make_cfg(metrics=["general_drift"]), run_end, W_START, "3").lines == ()

    # both families of one window are staged apart: re-staging either leaves the other's pending lines
    prefix = performance_key_prefix(cfg)
    interval = build_interval_lines(conn, cfg, W_START, W_END, "3")
    own = build_performance_lines(conn, cfg, W_END, W_START, "3")
    assert stage_lines(conn, "ep-1", W_START, W_END, own, family=(prefix, True)) == 3
    assert stage_lines(conn, "ep-1", W_START, W_END, interval, family=(prefix, False)) == len(interval)
    assert stage_lines(conn, "ep-1", W_START, W_END, interval, family=(prefix, False)) == len(interval)
    conn.commit()
    assert outbox_status(conn) == {"pending": len(interval) + 3}


def test_build_interval_lines_emits_only_configured_metrics(conn: psycopg.Connection) -> None:
    _fill_summary(conn)
    cfg = make_cfg(metrics=["general_drift", "errors"], prefix="acme.ml")
    batch = build_interval_lines(conn, cfg, W_START, W_END, "3")
    assert set(_values(batch)) == {("acme.ml.drift.general", None), ("acme.ml.errors.count", None)}
    assert batch.skipped == 0


def test_build_interval_lines_for_an_empty_window(conn: psycopg.Connection) -> None:
    batch = build_interval_lines(conn, make_cfg(), W_START, W_END, "3")
    assert batch.lines == () and batch.skipped == 0


def test_interval_lines_stage_and_push_end_to_end(conn: psycopg.Connection, server: IngestServer,
                                                  client: IngestClient) -> None:
    _fill_summary(conn)
    batch = build_interval_lines(conn, make_cfg(), W_START, W_END, "3")
    assert stage_lines(conn, "ep-1", W_START, W_END, batch) == len(batch)
    conn.commit()
    report = push_pending(conn, client, now=NOW)
    assert report.sent == len(batch) == len(server.accepted)
    keys = {parse_line(line).key for line in server.accepted}
    assert "mlmon.drift.general" in keys and not any(math.isnan(parse_line(x).value) for x in server.accepted)
    # the interval is re-run: same series, nothing re-queued, nothing resent
    rerun = build_interval_lines(conn, make_cfg(), W_START, W_END, "3")
    assert stage_lines(conn, "ep-1", W_START, W_END, rerun) == 0
    conn.commit()
    assert push_pending(conn, client, now=NOW).sent == 0


# --- Airflow hook ----------------------------------------------------------------------------

def _load_hook_module():
    path = Path(__file__).resolve().parents[2] / "plugins" / "dynatrace_hook.py"
    spec = importlib.util.spec_from_file_location("dynatrace_hook", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_builds_a_client_from_the_connection(monkeypatch: pytest.MonkeyPatch, server: IngestServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hook_module = _load_hook_module()
    host, port = server.url.removeprefix("http://").split(":")
    monkeypatch.setenv("AIRFLOW_CONN_DYNATRACE_DEFAULT", json.dumps({
        "conn_type": "dynatrace", "host": host, "port": int(port), "schema": "http", "password": TOKEN,
        "extra": {"max_retries": 1},
    }))
    hook = hook_module.DynatraceIngestHook()
    assert hook.get_url() == server.url
    with hook.get_client(sleep=no_sleep) as c:
        assert c.endpoint == server.url + "/api/v2/metrics/ingest" and c.max_retries == 1
        assert c.send(["mlmon.a.b gauge,1"]).lines_ok == 1
        assert TOKEN not in repr(c)
    assert server.accepted == ["mlmon.a.b gauge,1"]
    assert TOKEN not in caplog.text


def test_hook_connection_url_forms() -> None:
    url = _load_hook_module().connection_url
    assert url("abc.live.dynatrace.com", None, None) == "https://abc.live.dynatrace.com"
    assert url("https://dt.example.com/e/env1/", "http", None) == "https://dt.example.com/e/env1"
    assert url("localhost/metrics/ingest", "http", 14499) == "http://localhost:14499/metrics/ingest"
    with pytest.raises(ValueError, match="no host"):
        url("", None, None)


def test_unusable_rows_are_skipped_not_fatal_and_disabled_config_pushes_nothing(conn: psycopg.Connection) -> None:
    _fill_summary(conn)
    conn.execute(
        "INSERT INTO monitoring.model_performance (endpoint_id, window_start, window_end, segment, metric, value)"
        " VALUES ('ep-1', %s, %s, 'all', '***', 1.0), ('ep-1', %s, %s, 'all', 'mae', 'Infinity')",
        (W_START, W_END, W_START, W_END),
    )
    batch = build_performance_lines(conn, make_cfg(), W_END, W_START, "3")
    assert batch.skipped == 2  # mae infinite, '***' has no usable key
    assert ("mlmon.performance.rmse", None) in _values(batch)
    assert build_interval_lines(conn, make_cfg(enabled=False), W_START, W_END, "3").lines == ()
