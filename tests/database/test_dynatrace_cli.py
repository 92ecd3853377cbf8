"""`mlmon dynatrace push`: dry run prints the pending lines; a push delivers them to a real local receiver once."""

from datetime import datetime, timedelta, timezone

import pytest
from ingest_server import IngestServer

from monitoring_lib.cli import main
from monitoring_lib.dynatrace import stage_lines
from monitoring_lib.dynatrace.lines import LineBatch
from monitoring_lib.dynatrace.protocol import format_gauge

TOKEN = "dt0c01.CLITEST.secret-token-value"


def stage_fresh(conn, count: int) -> None:
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    lines = [format_gauge("mlmon.drift.general", 0.1 * i, {"endpoint_id": "ep", "feature": f"f{i}"}, end)
             for i in range(count)]
    stage_lines(conn, "ep", end - timedelta(hours=1), end, LineBatch(tuple(lines)))
    conn.commit()


def test_dry_run_then_push_then_nothing_left(conn, db_url, monkeypatch, capsys):
    stage_fresh(conn, 3)
    stale = datetime.now(timezone.utc) - timedelta(hours=2)
    stage_lines(conn, "ep", stale - timedelta(hours=1), stale,
                LineBatch((format_gauge("mlmon.drift.stale", 1.0, {"endpoint_id": "ep"}, stale),)))
    conn.commit()
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    assert main(["dynatrace", "push", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("mlmon.drift.general,") == 3 and "mlmon.drift.stale" not in out
    assert "3 pending line(s) would be sent, 1 would expire (older than 1 hour" in out
    with IngestServer(token=TOKEN) as server:
        monkeypatch.setenv("DYNATRACE_URL", server.url)
        monkeypatch.setenv("DYNATRACE_API_TOKEN", TOKEN)
        assert main(["dynatrace", "push"]) == 0
        assert "sent 3, invalid 0, expired 1" in capsys.readouterr().out
        assert main(["dynatrace", "push"]) == 0
        assert "sent 0," in capsys.readouterr().out
        assert len(server.accepted) == 3


def test_push_without_configuration_is_a_clear_error(db_url, monkeypatch, capsys):
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    monkeypatch.delenv("DYNATRACE_URL", raising=False)
    assert main(["dynatrace", "push"]) == 1
    err = capsys.readouterr().err
    assert "DYNATRACE_URL is not set" in err and "Traceback" not in err


@pytest.mark.parametrize("url", ["abc123.live.dynatrace.com", "ftp://abc123.live.dynatrace.com", "https://"])
def test_a_url_without_an_http_scheme_is_a_clear_error(db_url, monkeypatch, capsys, url):
    """Not a traceback from requests, and in Airflow not six retries of a mistake no retry fixes."""
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    monkeypatch.setenv("DYNATRACE_URL", url)
    monkeypatch.setenv("DYNATRACE_API_TOKEN", "dt0c01.token")
    assert main(["dynatrace", "push"]) == 1
    err = capsys.readouterr().err
    assert "is not an http(s) URL: use https://<env-id>.live.dynatrace.com" in err and "Traceback" not in err
    assert "dt0c01.token" not in err
