"""Dynatrace Metric Ingest: protocol lines, the interval's lines from the stored results, the outbox push and
the client; the outbox table itself is `results.outbox`."""

from monitoring_lib.dynatrace.client import IngestClient, IngestResult, client_from_env
from monitoring_lib.dynatrace.lines import METRIC_TABLE, LineBatch, build_interval_lines
from monitoring_lib.dynatrace.protocol import MetricLine
from monitoring_lib.dynatrace.push import PushReport, push_pending
from monitoring_lib.results.outbox import pending_lines, stage_lines

__all__ = [
    "METRIC_TABLE",
    "IngestClient",
    "IngestResult",
    "LineBatch",
    "MetricLine",
    "PushReport",
    "build_interval_lines",
    "client_from_env",
    "pending_lines",
    "push_pending",
    "stage_lines",
]
