"""`mlmon`: the command line for everything the DAGs do, usable with no scheduler running.

The commands use the database the DAGs use: `MLMON_DATABASE_URL`, else the `monitoring_db` Connection
in `AIRFLOW_CONN_MONITORING_DB` (URI or JSON). Without either they use an embedded PostgreSQL kept under
`.mlmon/` (or `MLMON_HOME`), so a newcomer can try everything on a laptop, and say so. Errors print one
line per problem and exit non-zero; tracebacks are for bugs, not for bad input or a down database.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

# Each command imports what it runs when it runs: the computing modules take about 1.8 s to import, which
# `mlmon --help`, `mlmon status` or a config error should not pay.
from monitoring_lib import migrations  # psycopg only
from monitoring_lib.db import command_database, mlmon_home
from monitoring_lib.errors import ConfigError, DatabaseUnavailableError, MonitoringError

EXIT_PROBLEM = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an ISO time like 2026-11-23T10:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _require_schema(conn) -> None:  # noqa: ANN001
    if not migrations.installed(conn):
        raise MonitoringError("schema 'monitoring' is missing in this database: run `mlmon db upgrade` first")


def cmd_db(args: argparse.Namespace) -> int:
    from monitoring_lib.db import connect

    with command_database(upgrade_embedded=False) as url, connect(url) as conn:
        if args.action == "upgrade":
            done = migrations.upgrade(conn)
            conn.commit()
            print(f"applied {len(done)} migration(s): {', '.join(f'{m.version:04d}_{m.name}' for m in done) or '-'}")
        else:
            have = migrations.applied(conn)
            for m in migrations.available():
                print(f"{m.version:04d}_{m.name}: {'applied' if m.version in have else 'pending'}")
    return 0


def cmd_validate_config(args: argparse.Namespace) -> int:
    from monitoring_lib.config_check import validate_configs

    problems, checked = validate_configs(args.config_dir, check_database=not args.no_db, database=command_database)
    for problem in problems:
        print(problem)
    print(f"{checked} config file(s) checked, {len(problems)} problem(s)", file=sys.stderr)
    return EXIT_CONFIG if problems else 0


def cmd_fit_reference(args: argparse.Namespace) -> int:
    from monitoring_lib.config import get_endpoint
    from monitoring_lib.reference import fit_and_store

    cfg = get_endpoint(args.endpoint, args.config_dir)
    with command_database() as url:
        stored = fit_and_store(url, cfg, table=args.table, query=args.query, file=args.file,
                               model_version=args.model_version)
    print(f"stored reference profile v{stored.version} for {cfg.endpoint_id} model version "
          f"{stored.model_version} from {stored.source} ({stored.row_count} rows)")
    return 0


def _print_report(report) -> None:  # noqa: ANN001
    drift = report.drift_status or "-"
    general = "-" if report.general_drift is None else f"{report.general_drift:.3f}"
    print(f"{report.endpoint_id} [{report.window_start:%Y-%m-%d %H:%M}, {report.window_end:%H:%M}) "
          f"{report.status}: rows={report.rows} bad={report.bad_rows} dq={report.dq_state or '-'} "
          f"drift={drift} general={general}"
          + (f" drifted={','.join(report.drifted_features)}" if report.drifted_features else ""))


def cmd_run_interval(args: argparse.Namespace) -> int:
    from monitoring_lib.config import get_endpoint
    from monitoring_lib.runner import run_interval

    cfg = get_endpoint(args.endpoint, args.config_dir)
    with command_database() as url:
        report = run_interval(url, cfg, args.start, args.end)
    _print_report(report)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from monitoring_lib.config import format_duration, get_endpoint
    from monitoring_lib.runner import run_interval
    from monitoring_lib.schedule import windows

    cfg = get_endpoint(args.endpoint, args.config_dir)
    spans = windows(args.start, args.end, cfg.schedule.interval)
    if not spans:
        raise MonitoringError(f"no whole {format_duration(cfg.schedule.interval)} interval between {args.start}"
                              f" and {args.end}")
    with command_database() as url:
        for start, end in tqdm(spans, desc=f"backfill {cfg.endpoint_id}", unit="interval", file=sys.stderr):
            report = run_interval(url, cfg, start, end)
            if args.verbose:
                _print_report(report)
    print(f"backfilled {len(spans)} interval(s) of {cfg.endpoint_id}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from monitoring_lib.db import connect
    from monitoring_lib.status import render_status

    with command_database() as url, connect(url) as conn:
        _require_schema(conn)
        print(render_status(conn, windows=args.windows, endpoint_id=args.endpoint))
    return 0


def cmd_dynatrace(args: argparse.Namespace) -> int:
    from monitoring_lib.dynatrace.command import push_command

    with command_database() as url:
        return push_command(url, dry_run=args.dry_run, endpoint_id=args.endpoint, out=sys.stdout)


def cmd_demo(args: argparse.Namespace) -> int:
    from monitoring_lib.demo.orchestrate import run_demo

    return run_demo(hours=args.hours, rows_per_hour=args.rows_per_hour, traffic=args.traffic)


def cmd_init_demo(args: argparse.Namespace) -> int:
    from monitoring_lib.config import get_endpoint
    from monitoring_lib.demo.bootstrap import describe, init_demo
    from monitoring_lib.demo.orchestrate import ENDPOINT_ID

    cfg = get_endpoint(ENDPOINT_ID, args.config_dir)
    with command_database() as url:
        print(f"{ENDPOINT_ID}: {describe(init_demo(url, cfg))}")
    return 0


def cmd_airflow_local(args: argparse.Namespace) -> int:
    from monitoring_lib.demo.local_airflow import run_local_airflow

    with command_database(shared_with_dags=True) as url:
        return run_local_airflow(url, mlmon_home() / "airflow-local", port=args.port, traffic=not args.no_traffic)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlmon", description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", default=None, help="config directory (default: $MLMON_CONFIG_DIR or configs/)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="create or upgrade the monitoring schema")
    p.add_argument("action", choices=["upgrade", "status"])
    p.set_defaults(fn=cmd_db)

    p = sub.add_parser("validate-config", help="check every config file, and its columns against the database")
    p.add_argument("--no-db", action="store_true", help="skip the live database column checks")
    p.set_defaults(fn=cmd_validate_config)

    p = sub.add_parser("fit-reference", help="fit and store the reference profile from training data")
    p.add_argument("--endpoint", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--table", help="schema.table holding the training data")
    src.add_argument("--query", help="a SELECT returning the training data")
    src.add_argument("--file", type=Path, help="a Parquet or CSV file of training data")
    p.add_argument("--model-version", help="model version the profile belongs to (default: the one in service)")
    p.set_defaults(fn=cmd_fit_reference)

    for name, fn, help_text in (
        ("run-interval", cmd_run_interval, "monitor one window [start, end)"),
        ("backfill", cmd_backfill, "monitor every interval in [start, end)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--endpoint", required=True)
        p.add_argument("--start", required=True, type=parse_time)
        p.add_argument("--end", required=True, type=parse_time)
        if name == "backfill":
            p.add_argument("-v", "--verbose", action="store_true", help="print each interval's result")
        p.set_defaults(fn=fn)

    p = sub.add_parser("status", help="a table of endpoints and their latest windows")
    p.add_argument("--endpoint", help="show one endpoint's recent windows")
    p.add_argument("--windows", type=int, default=12, help="recent windows to list with --endpoint")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("dynatrace", help="push pending metric lines to Dynatrace")
    p.add_argument("action", choices=["push"])
    p.add_argument("--dry-run", action="store_true", help="print the lines that would be sent, send nothing")
    p.add_argument("--endpoint", help="only this endpoint's lines")
    p.set_defaults(fn=cmd_dynatrace)

    p = sub.add_parser("demo", help="seed the insurance-claims scenario and run it through the Airflow DAGs")
    p.add_argument("--hours", type=int, default=36)
    p.add_argument("--rows-per-hour", type=int, default=2000)
    p.add_argument("--traffic", action="store_true", help="keep writing live demo traffic (compose service)")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("init-demo", help="first start of the demo endpoint: training data, reference, history"
                       " (idempotent; the compose init runs it)")
    p.set_defaults(fn=cmd_init_demo)

    p = sub.add_parser("airflow-local", help="the real Airflow components (airflow standalone) on this project's"
                       " dags/ and plugins/, with the demo endpoint and live traffic")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--no-traffic", action="store_true", help="do not write live demo traffic")
    p.set_defaults(fn=cmd_airflow_local)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config_dir:
        os.environ["MLMON_CONFIG_DIR"] = str(args.config_dir)
    try:
        return int(args.fn(args) or 0)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"mlmon: config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except DatabaseUnavailableError as exc:
        print(f"mlmon: database unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except MonitoringError as exc:
        print(f"mlmon: error: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        print("mlmon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
