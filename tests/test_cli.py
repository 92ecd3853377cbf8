import socket
import textwrap

import pytest

from monitoring_lib.cli import EXIT_CONFIG, EXIT_UNAVAILABLE, main
from tests.sources import WINDOW_END, WINDOW_START, seed_source

GOOD = """
endpoint_id: claims-test
project: insurance-claims
model: {name: claims_model, version: "1"}
source:
  table: public.inference
  timestamp_column: ts
  numeric_features: [claimed_amount, vehicle_age]
  categorical_features: [region]
quality: {enabled: false}
dynatrace: {enabled: false}
"""


@pytest.fixture()
def config_dir(tmp_path, monkeypatch):
    (tmp_path / "claims.yaml").write_text(GOOD)
    monkeypatch.setenv("MLMON_CONFIG_DIR", str(tmp_path))
    return tmp_path


def test_bad_config_prints_file_field_reason(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.yaml").write_text(textwrap.dedent("""
        endpoint_id: bad
        project: p
        model: {name: m}
        source: {table: t, numeric_features: [a]}
        schedule: {interval: often}
        drift: {metrics: [tvd, nonsense]}
    """))
    monkeypatch.setenv("MLMON_CONFIG_DIR", str(tmp_path))
    code = main(["validate-config", "--no-db"])
    out = capsys.readouterr().out
    assert code == EXIT_CONFIG
    assert f"{tmp_path / 'bad.yaml'}: schedule.interval: 'often' is not a duration" in out
    assert f"{tmp_path / 'bad.yaml'}: drift.metrics: unknown metric(s) ['nonsense']" in out


def test_secrets_in_config_are_rejected(tmp_path, monkeypatch, capsys):
    (tmp_path / "s.yaml").write_text(GOOD + "dynatrace: {api_token: abc}\n")
    monkeypatch.setenv("MLMON_CONFIG_DIR", str(tmp_path))
    assert main(["validate-config", "--no-db"]) == EXIT_CONFIG
    assert "dynatrace.api_token: secrets do not belong in config" in capsys.readouterr().out


def test_validate_config_checks_columns_against_the_live_database(config_dir, conn, db_url, monkeypatch, capsys):
    seed_source(conn)
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    assert main(["validate-config"]) == 0
    (config_dir / "claims.yaml").write_text(GOOD.replace("vehicle_age]", "vehicle_age, wheel_count]"))
    assert main(["validate-config"]) == EXIT_CONFIG
    out = capsys.readouterr().out
    assert "source.numeric_features: column 'wheel_count' not found in public.inference" in out


@pytest.mark.parametrize("form", ["postgresql://mlmon:secret-pw@127.0.0.1:{port}/mlmon",
                                  "host=127.0.0.1 port={port} user=mlmon password=secret-pw dbname=mlmon",
                                  "postgresql://127.0.0.1:{port}/mlmon?user=mlmon&password=secret-pw",
                                  "host=127.0.0.1 port={port} password='secret-pw"])
def test_down_database_gives_one_clear_line(config_dir, monkeypatch, capsys, form):
    """Whatever form the connection string has (a URL, key=value pairs, a password parameter, a broken
    quote), the error names where it tried to connect and never the password."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLMON_DATABASE_URL", form.format(port=port))
    code = main(["run-interval", "--endpoint", "claims-test", "--start", WINDOW_START.isoformat(),
                 "--end", WINDOW_END.isoformat()])
    err = capsys.readouterr().err
    assert code == EXIT_UNAVAILABLE
    assert err.startswith("mlmon: database unavailable: cannot connect to database")
    assert "secret-pw" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_run_interval_backfill_and_status(config_dir, conn, db_url, monkeypatch, capsys):
    seed_source(conn)
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    assert main(["run-interval", "--endpoint", "claims-test", "--start", "2026-03-01T10:00:00Z",
                 "--end", "2026-03-01T11:00:00Z"]) == 0
    assert "rows=600" in capsys.readouterr().out
    assert main(["backfill", "--endpoint", "claims-test", "--start", "2026-03-01T08:00:00Z",
                 "--end", "2026-03-01T12:00:00Z"]) == 0
    assert "backfilled 4 interval(s)" in capsys.readouterr().out
    runs = conn.execute("SELECT status, rows_seen FROM monitoring.interval_runs ORDER BY window_start").fetchall()
    # the boundary rows (one microsecond before the window, and exactly at its end) land next door
    assert runs == [("no_data", 0), ("ok", 1), ("ok", 600), ("ok", 1)]
    assert main(["status"]) == 0
    table = capsys.readouterr().out
    assert "claims-test" in table and "insurance-claims" in table
    assert main(["status", "--endpoint", "claims-test"]) == 0
    assert "2026-03-01 10:00" in capsys.readouterr().out


def test_unknown_endpoint_and_bad_window(config_dir, db_url, monkeypatch, capsys):
    monkeypatch.setenv("MLMON_DATABASE_URL", db_url)
    assert main(["run-interval", "--endpoint", "nope", "--start", "2026-03-01T10:00:00Z",
                 "--end", "2026-03-01T11:00:00Z"]) == EXIT_CONFIG
    assert "no valid config for 'nope' (valid: claims-test)" in capsys.readouterr().err
    assert main(["run-interval", "--endpoint", "claims-test", "--start", "2026-03-01T11:00:00Z",
                 "--end", "2026-03-01T10:00:00Z"]) == 1
    assert "must be after its start" in capsys.readouterr().err


def test_db_upgrade_is_idempotent_from_the_cli(empty_db_url, monkeypatch, capsys):
    monkeypatch.setenv("MLMON_DATABASE_URL", empty_db_url)
    assert main(["db", "upgrade"]) == 0
    assert "applied 2 migration(s): 0001_initial, 0002_operational_window_index" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "applied 0 migration(s)" in capsys.readouterr().out
