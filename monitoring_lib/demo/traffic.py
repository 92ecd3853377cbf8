"""`mlmon demo --traffic`: keep writing live inference rows, as a model service would (the compose service).

Each tick appends the last minute's predictions from the training population; labels follow by
the scenario's delay, so the dashboards and the monitoring DAG always have fresh data.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from monitoring_lib.db import connect
from monitoring_lib.demo.bootstrap import demo_model, live_scenario
from monitoring_lib.demo.seed import INFERENCE_TABLE, LABELS_TABLE, create_source_tables, load_frame
from monitoring_lib.demo.simulator import generate_inference, generate_labels


def traffic_tick(conn, model, *, now: datetime, rows_per_hour: int, seed: int) -> int:  # noqa: ANN001
    """Append one minute of traffic ending at `now`, and the labels that have landed for it; returns rows."""
    scenario = live_scenario()
    hour_end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    df = generate_inference(scenario, model, end=hour_end, hours=1, rows_per_hour=max(60, rows_per_hour), seed=seed)
    rng = np.random.default_rng(seed)
    df = df.sample(n=max(1, rows_per_hour // 60), random_state=seed).copy()
    df["ts"] = [now - timedelta(seconds=float(s)) for s in rng.uniform(0, 60, len(df))]
    df["request_id"] = [f"live-{uuid.uuid4().hex[:16]}" for _ in range(len(df))]
    df = df.sort_values("ts")
    load_frame(conn, f"public.{INFERENCE_TABLE}", df)
    _label_landed(conn, now=now, seed=seed)
    conn.commit()
    return len(df)


def _label_landed(conn, *, now: datetime, seed: int) -> None:  # noqa: ANN001
    """Settle the unlabelled live requests of the last hours whose label delay has passed by `now`."""
    cur = conn.execute(
        "SELECT i.* FROM public.claims_inference i LEFT JOIN public.claims_labels l USING (request_id)"
        " WHERE l.request_id IS NULL AND i.request_id LIKE 'live-%%' AND i.ts > %s AND NOT i.error",
        (now - timedelta(hours=8),))
    pending = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    if pending.empty:
        return
    labels = generate_labels(pending, seed=seed, landed_by=now)
    if not labels.empty:
        load_frame(conn, f"public.{LABELS_TABLE}", labels)


def run_traffic(url: str, *, rows_per_hour: int = 2000, tick_seconds: float = 60.0, ticks: int | None = None) -> int:
    """Run until interrupted (or for `ticks` ticks); the service is stopped by its container."""
    model = demo_model()  # the model whose reference `mlmon init-demo` fitted
    with connect(url) as conn:
        create_source_tables(conn)
        conn.commit()
        done = 0
        while ticks is None or done < ticks:
            now = datetime.now(timezone.utc)
            rows = traffic_tick(conn, model, now=now, rows_per_hour=rows_per_hour, seed=int(now.timestamp()))
            print(f"{now:%Y-%m-%d %H:%M:%S} wrote {rows} predictions", flush=True)
            done += 1
            if ticks is None or done < ticks:
                time.sleep(tick_seconds)
    return 0
