"""Dynatrace Metric Ingest: protocol lines, the interval's lines from summary tables, outbox and client."""

from monitoring_lib.dynatrace.client import IngestClient, IngestResult, client_from_env
from monitoring_lib.dynatrace.lines import METRIC_TABLE, LineBatch, build_interval_lines
from monitoring_lib.dynatrace.outbox import PushReport, pending_lines, push_pending, stage_lines
from monitoring_lib.dynatrace.protocol import MetricLine

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
