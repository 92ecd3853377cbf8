"""Operational metrics in 5-minute buckets: what the Overview and Performance dashboards plot."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from monitoring_lib.config import EndpointConfig

BUCKET = timedelta(minutes=5)
LATENCY_QUANTILES = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}


def bucket_metrics(
    df: pd.DataFrame, cfg: EndpointConfig, start: datetime, end: datetime
) -> list[tuple[datetime, str, float]]:
    """(bucket_start, metric, value) for predictions, errors and latency avg/p50/p95/p99.

    Buckets are aligned to the window start so the same interval always yields the same rows.
    """
    src = cfg.source
    if df.empty:
        return []
    ts = df[src.timestamp_column]
    valid = ts.notna().to_numpy()
    offsets = (ts[valid] - pd.Timestamp(start)).to_numpy()
    idx = np.clip(offsets // np.timedelta64(BUCKET), 0, None).astype(np.int64)
    n_buckets = max(1, int(np.ceil((end - start) / BUCKET)))
    idx = np.minimum(idx, n_buckets - 1)
    counts = np.bincount(idx, minlength=n_buckets)
    rows: list[tuple[datetime, str, float]] = []
    errors = None
    if src.error_column and src.error_column in df:
        errors = np.bincount(idx, weights=df[src.error_column].to_numpy(dtype=bool)[valid].astype(float),
                             minlength=n_buckets)
    latency = df[src.latency_column].to_numpy(dtype=float)[valid] if src.latency_column in df else None
    frame = pd.DataFrame({"b": idx, "lat": latency}) if latency is not None else None
    grouped = frame.dropna().groupby("b")["lat"] if frame is not None else None
    stats = {}
    if grouped is not None:
        stats["latency_avg"] = grouped.mean()
        for name, q in LATENCY_QUANTILES.items():
            stats[name] = grouped.quantile(q)
    for b in np.flatnonzero(counts):
        bucket_start = start + b * BUCKET
        rows.append((bucket_start, "predictions", float(counts[b])))
        if errors is not None:
            rows.append((bucket_start, "errors", float(errors[b])))
        for name, series in stats.items():
            if b in series.index:
                rows.append((bucket_start, name, float(series.loc[b])))
    return rows

