"""Entry points for pushing the outbox: `mlmon dynatrace push`, the Airflow task, and the demo's file export."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from monitoring_lib.config import format_duration
from monitoring_lib.db import connect
from monitoring_lib.dynatrace.client import URL_ENV, client_from_env
from monitoring_lib.dynatrace.push import push_pending
from monitoring_lib.results.outbox import MAX_AGE, oldest_sendable_ms, pending_lines


def push_command(url: str, *, dry_run: bool, endpoint_id: str | None, out: TextIO) -> int:
    """CLI: print pending lines (dry run) or push them with the client from the environment."""
    if dry_run:
        with connect(url) as conn:
            lines = pending_lines(conn, endpoint_id=endpoint_id)
        oldest = oldest_sendable_ms(datetime.now(timezone.utc))
        fresh = [line for line in lines if line.timestamp_ms >= oldest]
        for line in fresh:
            out.write(line.line + "\n")
        out.write(f"# {len(fresh)} pending line(s) would be sent, {len(lines) - len(fresh)} would expire"
                  f" (older than {format_duration(MAX_AGE)}: Dynatrace takes no older points); nothing was sent\n")
        return 0
    with client_from_env() as client:
        report = push_pending(lambda: connect(url), client, endpoint_id=endpoint_id)
    out.write(f"sent {report.sent}, invalid {report.invalid}, expired {report.expired}, "
              f"held back {report.skipped}, batches {report.batches}, retries {report.retries}\n")
    for error in report.errors:
        out.write(f"error: {error}\n")
    return 0 if not report.errors else 3


def export_pending(url: str, path: Path, endpoint_id: str | None = None) -> int:
    """Write the lines that would be sent to a file (the demo without Dynatrace); returns the count."""
    with connect(url) as conn:
        lines = pending_lines(conn, endpoint_id=endpoint_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line.line + "\n" for line in lines))
    return len(lines)


def configured() -> bool:
    return bool(os.environ.get(URL_ENV))
