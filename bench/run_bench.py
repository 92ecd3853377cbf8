"""Benchmark one monitoring interval: read floor, the in-memory pipeline, the in-database pushdown, Dynatrace push.

Run with `make bench` (or `make bench BENCH_ARGS="--rows 100000 --pushdown-rows 1000000"`). Every figure
comes from one run on this machine; see bench/README.md for what each one means. The last line of
output is one JSON object for scripts to collect.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "mlmon_bench"
ENDPOINT = "bench-claims"
PUSH_ENDPOINT = "bench-push"
WINDOW_START = datetime(2026, 5, 4, 8, tzinfo=timezone.utc)
WINDOW_END = WINDOW_START + timedelta(hours=1)
N_NUMERIC = 20
REGIONS = ["north", "south", "east", "west"]
DYNATRACE_LINES = 10_000


# --- data -------------------------------------------------------------------------------------------

def numeric_names() -> list[str]:
    return [f"f{i:02d}" for i in range(1, N_NUMERIC + 1)]


def feature_expr(i: int, drift: bool, params: dict[str, Any]) -> sql.Composed:
    """Feature i: normal, log-normal or uniform by i mod 3; the first three move a little in the interval."""
    shift = 0.3 if drift and i <= 3 else 0.0
    normal = sql.SQL("(sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))")
    a, b = f"a{i}", f"b{i}"
    if i % 3 == 0:
        params.update({a: float(i) + shift * (1 + i / 10), b: 1 + i / 10})
        expr = sql.SQL("({a} + {b} * {z})")
    elif i % 3 == 1:
        params.update({a: 100.0 * i, b: shift})
        expr = sql.SQL("({a} * exp(0.5 * {z} + {b}))")
    else:
        params.update({a: shift * 30, b: 100.0})
        expr = sql.SQL("({a} + {b} * random())")
    composed = expr.format(a=sql.Placeholder(a), b=sql.Placeholder(b), z=normal)
    if i == 1:  # a few nulls, as real logs have
        composed = sql.SQL("CASE WHEN random() < 0.001 THEN NULL ELSE {} END").format(composed)
    return composed


def create_source(
    conn: psycopg.Connection, table: str, rows: int, start: datetime, *, drift: bool, key: bool = True
) -> float:
    """An inference log of `rows` rows spread over one hour, generated inside PostgreSQL; returns seconds.

    With `key`, the request id is the primary key, as in most inference logs (built after loading, which is
    faster than maintaining it row by row); without it the database mode groups the window's ids.
    """
    began = time.perf_counter()
    ident = sql.Identifier(SCHEMA, table)
    features = numeric_names()
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    conn.execute(sql.SQL(
        "CREATE UNLOGGED TABLE {t} (request_id text, ts timestamptz, {feats}, region text, channel text,"
        " prediction float8, latency_ms float8, error boolean)"
    ).format(t=ident, feats=sql.SQL(", ").join(sql.SQL("{} float8").format(sql.Identifier(f)) for f in features)))
    # 'c20' never occurs in the reference: the unseen bucket
    params: dict[str, Any] = {"start": start, "n": rows, "regions": REGIONS, "channels": 21 if drift else 20}
    feats = sql.SQL(", ").join(feature_expr(i, drift, params) for i in range(1, N_NUMERIC + 1))
    conn.execute(sql.SQL(
        "INSERT INTO {t} SELECT 'req-' || i, %(start)s::timestamptz + ((i - 1) * 3600.0 / %(n)s) * interval '1 second',"
        " {feats}, (%(regions)s::text[])[1 + floor(random() * 4)::int], 'c' || floor(random() * %(channels)s)::int,"
        " 0.5 + 0.1 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()), 5 + 25 * -ln(1 - random()),"
        " random() < 0.01"
        " FROM generate_series(1, %(n)s) AS i"
    ).format(t=ident, feats=feats), params)
    if key:
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (request_id)").format(ident))
    conn.commit()
    conn.autocommit = True
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(ident))  # hint bits set: reads measure steady state
    conn.autocommit = False
    return time.perf_counter() - began


def make_config(table: str, compute: str = "memory", group_size: int | None = None,
                multivariate: bool = False, domain: bool = False, estimation: bool = False,
                segments: bool = False) -> Any:
    from monitoring_lib.config import EndpointConfig

    return EndpointConfig.model_validate({
        "endpoint_id": ENDPOINT,
        "compute": compute,
        "scale_out": {"feature_group_size": group_size},
        "drift": {"multivariate": {"enabled": multivariate}, "domain_classifier": {"enabled": domain}},
        "labels": {"table": f"{SCHEMA}.labels"},
        "performance": {"estimation": {"enabled": estimation}},
        "segments": {"columns": ["region", "channel"] if segments else []},
        "project": "bench",
        "model": {"name": "claims_model", "version": "1", "class": "sklearn.ensemble.HistGradientBoostingRegressor"},
        "source": {"table": f"{SCHEMA}.{table}", "timestamp_column": "ts", "request_id_column": "request_id",
                   "numeric_features": numeric_names(), "categorical_features": ["region", "channel"],
                   "prediction_column": "prediction", "latency_column": "latency_ms", "error_column": "error"},
        "schedule": {"interval": "1h"},
    })


# --- measurements in child processes ----------------------------------------------------------------

def peak_rss_mb() -> float:
    """This process's peak RSS since it started its own program.

    `VmHWM` is per address space, so a spawned child does not inherit the parent's peak (getrusage's
    `ru_maxrss` survives exec and would); getrusage is the fallback where /proc is missing.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _in_child(target: Callable[..., dict], *args: Any) -> dict:
    """Run `target` in a fresh interpreter so its peak RSS is its own, not the parent's or another mode's."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(target, args)


def pipeline_child(url: str, cfg: Any, rounds: int = 3) -> dict:
    """The in-memory interval pipeline, imports (GX takes seconds) done before the clock starts.

    Each round reads the floor and then runs the pipeline, so both see the same load of a shared
    machine; each figure is the fastest of its `rounds` (re-running a window does the same work again).
    """
    began = time.perf_counter()
    import great_expectations  # noqa: F401

    import monitoring_lib.compute.memory.quality  # noqa: F401
    import monitoring_lib.drift.engine  # noqa: F401
    from monitoring_lib.runner import run_interval

    imported = time.perf_counter()
    base = peak_rss_mb()
    runs, floors = [], []
    for _ in range(rounds):
        floors.append(read_floor(url, cfg, repeats=1))
        began_run = time.perf_counter()
        report = run_interval(url, cfg, WINDOW_START, WINDOW_END)
        runs.append((time.perf_counter() - began_run, report))
    seconds, report = min(runs, key=lambda r: r[0])
    return {"seconds": seconds, "first_run_s": runs[0][0], "import_s": imported - began, "floor_s": min(floors),
            "all_floor_s": [round(f, 3) for f in floors], "all_pipeline_s": [round(r[0], 3) for r in runs],
            "timings": dict(report.timings), "rows": report.rows, "drift_status": report.drift_status,
            "dq_state": report.dq_state, "rss_after_imports_mb": base, "peak_rss_mb": peak_rss_mb()}


def pushdown_child(url: str, configs: list[Any]) -> dict:
    """`run_interval` with `compute: database` for each config's window: quality, drift, bad rows and
    operational metrics from aggregate queries, results written; nothing row-level reaches Python."""
    import great_expectations  # noqa: F401  (imported by the runner's quality module)

    from monitoring_lib.runner import run_interval

    base = peak_rss_mb()
    out: dict[str, Any] = {"runs": []}
    for cfg in configs:
        began = time.perf_counter()
        report = run_interval(url, cfg, WINDOW_START, WINDOW_END)
        out["runs"].append({"rows": report.rows, "seconds": time.perf_counter() - began,
                            "queries": dict(report.timings), "drift_status": report.drift_status,
                            "dq_state": report.dq_state})
    out["rss_after_imports_mb"] = base
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def fastest_pair(url: str, off: Any, on: Any, rounds: int) -> tuple[float, float, Any]:
    """Runs without and with a setting, alternating, so both see the same load; the fastest of each."""
    from monitoring_lib.runner import run_interval

    times: dict[bool, list[float]] = {False: [], True: []}
    report = None
    for _ in range(rounds):
        for enabled, cfg in ((False, off), (True, on)):
            began = time.perf_counter()
            result = run_interval(url, cfg, WINDOW_START, WINDOW_END)
            times[enabled].append(time.perf_counter() - began)
            report = result if enabled else report
    return min(times[False]), min(times[True]), report


def domain_child(url: str, memory_off: Any, memory_cfg: Any, database_off: Any, database_cfg: Any,
                 rounds: int = 3) -> dict:
    """The interval with `drift.domain_classifier` on and off in both modes, and its sample and fit alone."""
    import great_expectations  # noqa: F401

    from monitoring_lib.compute.domain import window_domain
    from monitoring_lib.results.profiles import load_active_profile

    memory_off_s, memory_s, report = fastest_pair(url, memory_off, memory_cfg, rounds)
    database_off_s, database_s, _ = fastest_pair(url, database_off, database_cfg, rounds)
    with psycopg.connect(url) as conn:
        profile = load_active_profile(conn, ENDPOINT, "1")
    began = time.perf_counter()
    verdict = window_domain(url, memory_cfg, profile, WINDOW_START, WINDOW_END)  # type: ignore[arg-type]
    return {"memory_s": memory_s, "memory_off_s": memory_off_s, "database_s": database_s,
            "database_off_s": database_off_s, "alone_s": time.perf_counter() - began, "auc": verdict.value,
            "sample_rows": verdict.window_rows, "drift_status": report.drift_status}


def multivariate_child(url: str, memory_off: Any, memory_cfg: Any, database_off: Any, database_cfg: Any,
                       rounds: int = 3) -> dict:
    """The interval with `drift.multivariate` on, in both modes, and the error it adds on its own.

    Fastest of `rounds` for each mode, with and without, in this one process; the error alone is the
    frame's z-scores and projections (memory) and the one aggregate scan (database), on the same window.
    """
    import great_expectations  # noqa: F401

    from monitoring_lib.compute.database.multivariate import error_in_database
    from monitoring_lib.compute.memory.multivariate import frame_error
    from monitoring_lib.results.profiles import load_active_profile
    from monitoring_lib.source import describe_source, read_window

    memory_off_s, memory_s, memory_report = fastest_pair(url, memory_off, memory_cfg, rounds)
    memory_rss = peak_rss_mb()
    database_off_s, database_s, _ = fastest_pair(url, database_off, database_cfg, rounds)
    with psycopg.connect(url) as conn:
        model = load_active_profile(conn, ENDPOINT, "1").multivariate  # type: ignore[union-attr]
        types = describe_source(conn, database_cfg.source)
    frame = read_window(url, memory_cfg, WINDOW_START, WINDOW_END, list(model.features))
    began = time.perf_counter()
    frame_error(frame, model)
    error_memory_s = time.perf_counter() - began
    del frame
    with psycopg.connect(url) as conn:
        began = time.perf_counter()
        error_in_database(conn, database_cfg, model, types, WINDOW_START, WINDOW_END)
        error_database_s = time.perf_counter() - began
    return {"memory_s": memory_s, "memory_off_s": memory_off_s, "database_s": database_s,
            "database_off_s": database_off_s, "error_memory_s": error_memory_s,
            "error_database_s": error_database_s, "features": len(model.features),
            "components": len(model.components), "drift_status": memory_report.drift_status,
            "memory_peak_rss_mb": memory_rss}


def estimation_child(url: str, memory_off: Any, memory_cfg: Any, database_off: Any, database_cfg: Any,
                     rounds: int = 3) -> dict:
    """The interval with `performance.estimation` on and off in both modes, and its sample and estimate alone."""
    import great_expectations  # noqa: F401

    from monitoring_lib.compute.estimation import window_estimate
    from monitoring_lib.results.profiles import load_active_profile

    memory_off_s, memory_s, _ = fastest_pair(url, memory_off, memory_cfg, rounds)
    memory_rss = peak_rss_mb()
    database_off_s, database_s, _ = fastest_pair(url, database_off, database_cfg, rounds)
    with psycopg.connect(url) as conn:
        profile = load_active_profile(conn, ENDPOINT, "1")
    began = time.perf_counter()
    estimate = window_estimate(url, memory_cfg, profile, WINDOW_START, WINDOW_END)  # type: ignore[arg-type]
    return {"memory_s": memory_s, "memory_off_s": memory_off_s, "database_s": database_s,
            "database_off_s": database_off_s, "alone_s": time.perf_counter() - began, "rows": estimate.rows,
            "status": estimate.status, "memory_peak_rss_mb": memory_rss}


def segments_child(url: str, memory_off: Any, memory_cfg: Any, database_off: Any, database_cfg: Any,
                   rounds: int = 3) -> dict:
    """The interval with `segments` on (region and the top 10 channels) and off, in both modes."""
    import great_expectations  # noqa: F401

    memory_off_s, memory_s, report = fastest_pair(url, memory_off, memory_cfg, rounds)
    database_off_s, database_s, _ = fastest_pair(url, database_off, database_cfg, rounds)
    return {"memory_s": memory_s, "memory_off_s": memory_off_s, "database_s": database_s,
            "database_off_s": database_off_s, "segments_s": report.timings.get("segments", 0.0)}


def together_child(url: str, memory_off: Any, memory_cfg: Any, database_off: Any, database_cfg: Any,
                   rounds: int = 3) -> dict:
    """The interval with multivariate drift, estimated performance and segments on against none of them, in
    both modes; client peak RSS of the database mode measured alone."""
    import great_expectations  # noqa: F401

    database_off_s, database_s, _ = fastest_pair(url, database_off, database_cfg, rounds)
    database_rss = peak_rss_mb()
    memory_off_s, memory_s, _ = fastest_pair(url, memory_off, memory_cfg, rounds)
    return {"memory_s": memory_s, "memory_off_s": memory_off_s, "database_s": database_s,
            "database_off_s": database_off_s, "database_peak_rss_mb": database_rss}


def group_child(url: str, cfg: Any, group: int) -> dict:
    """One mapped feature-group task, as a worker runs it: its columns only, result as JSON."""
    import great_expectations  # noqa: F401

    from monitoring_lib.compute.groups.partials import summarise_group

    began = time.perf_counter()
    partial = summarise_group(url, cfg, group, WINDOW_START, WINDOW_END, now=WINDOW_END).to_json()
    return {"seconds": time.perf_counter() - began, "peak_rss_mb": peak_rss_mb(), "partial": partial,
            "xcom_kb": round(len(json.dumps(partial)) / 1024, 1)}


def grouped_interval_child(url: str, cfg: Any, partials: list[dict]) -> dict:
    """The interval task of a split endpoint: core columns, merge, distinct counts, writes."""
    import great_expectations  # noqa: F401

    from monitoring_lib.compute.groups.partials import GroupPartial
    from monitoring_lib.runner import run_interval

    began = time.perf_counter()
    report = run_interval(url, cfg, WINDOW_START, WINDOW_END, groups=[GroupPartial.from_json(p) for p in partials])
    return {"seconds": time.perf_counter() - began, "peak_rss_mb": peak_rss_mb(), "timings": dict(report.timings)}


# --- measurements in this process -------------------------------------------------------------------

def read_floor(url: str, cfg: Any, repeats: int = 1) -> float:
    """Fastest of `repeats` raw transfers of exactly the monitored columns into Arrow, nothing else."""
    import adbc_driver_postgresql.dbapi as adbc

    from monitoring_lib.source import window_query

    text = window_query(cfg).as_string()
    best = float("inf")
    for _ in range(repeats):
        with adbc.connect(url) as aconn, aconn.cursor() as cur:
            began = time.perf_counter()
            cur.execute(text, (WINDOW_START, WINDOW_END))
            table = cur.fetch_arrow_table()
            best = min(best, time.perf_counter() - began)
        del table
    return best


def scan_floors(url: str, cfg: Any, repeats: int) -> dict[str, float]:
    """What one pass over the window costs inside PostgreSQL, the yardstick for `compute: database`.

    `scan_s`: one parallel scan with one plain aggregate per monitored column (a sum per numeric
    column, a count per categorical one), the cheapest query that reads every value. `keys_s`: the same
    scan computing each column's histogram key as the counts scan does (`width_bucket` over the fine
    edges, a category's position), summed instead of grouped: the per-row work of histogramming
    without its hashing. Fastest of `repeats` each.
    """
    from monitoring_lib.compute.database.histograms import bucket_key, fine_buckets
    from monitoring_lib.compute.database.scan import summary_columns
    from monitoring_lib.drift.profile import NumericProfile
    from monitoring_lib.results.profiles import load_active_profile
    from monitoring_lib.source import describe_source
    from monitoring_lib.sql_common import Params, window_rows

    with psycopg.connect(url) as conn:
        profile = load_active_profile(conn, cfg.endpoint_id, cfg.model.version)
        types = describe_source(conn, cfg.source)
        cols = summary_columns(cfg, profile)
        fine = {c.name: fine_buckets(c, cfg.drift.band_k) for c in cols if isinstance(c, NumericProfile)}
        p = Params()
        plain = [sql.SQL("sum({}::float8)" if isinstance(c, NumericProfile) else "count({})").format(
            sql.Identifier(c.name)) for c in cols]
        keys = [sql.SQL("sum({})").format(bucket_key(c, fine, types[c.name], p)) for c in cols]
        window = window_rows(cfg, p, WINDOW_START, WINDOW_END)
        out = {}
        for name, items in (("scan_s", plain), ("keys_s", keys)):
            query = sql.SQL("SELECT count(*), {} FROM {}").format(sql.SQL(", ").join(items), window)
            best = float("inf")
            for _ in range(repeats):
                began = time.perf_counter()
                conn.execute(query, p.values).fetchone()
                best = min(best, time.perf_counter() - began)
            out[name] = best
    return out


def dynatrace_push(url: str) -> dict:
    """10,000 lines through the outbox to a local ingest server, as `mlmon dynatrace push` sends them."""
    sys.path.insert(0, str(ROOT))
    from monitoring_lib.dynatrace.client import IngestClient
    from monitoring_lib.dynatrace.lines import LineBatch
    from monitoring_lib.dynatrace.protocol import format_gauge
    from monitoring_lib.dynatrace.push import push_pending
    from monitoring_lib.results.outbox import stage_lines
    from tests.ingest_server import IngestServer

    now = datetime.now(timezone.utc).replace(microsecond=0)
    lines = tuple(
        format_gauge(f"mlmon.bench.metric_{i % 50}", i * 0.5,
                     {"endpoint_id": PUSH_ENDPOINT, "feature": f"f{i // 50:03d}"}, now - timedelta(minutes=1))
        for i in range(DYNATRACE_LINES)
    )
    with psycopg.connect(url) as conn:
        stage_lines(conn, PUSH_ENDPOINT, now - timedelta(hours=1), now, LineBatch(lines))  # type: ignore[arg-type]
        conn.commit()
        with IngestServer() as server, IngestClient(server.url, server.token) as client:
            began = time.perf_counter()
            report = push_pending(conn, client, endpoint_id=PUSH_ENDPOINT)
            seconds = time.perf_counter() - began
            accepted = len(server.accepted)
    return {"seconds": seconds, "sent": report.sent, "batches": report.batches, "accepted": accepted}


# --- orchestration ----------------------------------------------------------------------------------

@contextmanager
def server_url(explicit: str | None) -> Iterator[str]:
    if explicit:
        yield explicit
        return
    from monitoring_lib.db import EmbeddedPostgres

    with EmbeddedPostgres() as url:
        yield url


def machine(url: str) -> dict:
    memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        work_mem = conn.execute("SHOW work_mem").fetchone()[0]
    return {"cores": os.cpu_count(), "memory_gb": memory_gb, "python": platform.python_version(),
            "postgres": version, "work_mem": work_mem}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the pipeline interval")
    parser.add_argument("--pushdown-rows", type=int, default=2_000_000,
                        help="rows in the pushdown interval (10,000,000 takes ~5 min on 2 cores)")
    parser.add_argument("--reference-rows", type=int, default=100_000, help="rows the reference profile is fitted on")
    parser.add_argument("--group-size", type=int, default=6,
                        help="features per mapped task for the feature-group measurement")
    parser.add_argument("--skip-pushdown", action="store_true", help="skip the large pushdown interval")
    parser.add_argument("--no-primary-key", dest="primary_key", action="store_false",
                        help="source tables without a primary key on request_id (the database mode groups the ids)")
    parser.add_argument("--database-url", help="an existing PostgreSQL (schema mlmon_bench and the monitoring "
                        "schema are written); default: a throwaway embedded server")
    args = parser.parse_args(argv)
    if min(args.rows, args.pushdown_rows, args.reference_rows) < 1:
        parser.error("row counts must be positive")
    return args


def prepare(url: str, args: argparse.Namespace) -> dict[str, float]:
    """Schema, source tables and the stored reference profile; returns how long each step took."""
    import pandas as pd

    from monitoring_lib import migrations
    from monitoring_lib.reference.fit import fit_reference
    from monitoring_lib.results.endpoints import ensure_endpoint
    from monitoring_lib.results.profiles import save_profile
    from monitoring_lib.source import read_window

    setup: dict[str, float] = {}
    with psycopg.connect(url) as conn:
        migrations.upgrade(conn)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.commit()
        setup["generate_reference_s"] = create_source(conn, "reference", args.reference_rows, WINDOW_START
                                                      - timedelta(days=7), drift=False, key=args.primary_key)
        setup["generate_interval_s"] = create_source(conn, "interval", args.rows, WINDOW_START, drift=True,
                                                     key=args.primary_key)
        # the profile holds the PCA, the sample and the estimator; each run's config chooses which it uses
        cfg = make_config("reference", multivariate=True, domain=True, estimation=True, segments=True)
        began = time.perf_counter()
        ref: pd.DataFrame = read_window(url, cfg, WINDOW_START - timedelta(days=7),
                                        WINDOW_START - timedelta(days=6))
        # labels for the estimator: the prediction's error grows with the first feature's distance from 0
        rng = np.random.default_rng(0)
        spread = 0.05 + 0.05 * np.abs(pd.to_numeric(ref[numeric_names()[0]]).fillna(0).to_numpy())
        label = pd.Series(ref["prediction"].to_numpy(float) + rng.normal(0, 1, len(ref)) * spread, name="label")
        profile = fit_reference(ref, cfg, source=f"table:{SCHEMA}.reference", label=label)
        ensure_endpoint(conn, cfg)
        save_profile(conn, profile)
        conn.commit()
        setup["fit_reference_s"] = time.perf_counter() - began
    return setup


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    total = time.perf_counter()
    with server_url(args.database_url) as url:
        print(f"preparing: {args.reference_rows:,} reference rows, {args.rows:,} interval rows ...", flush=True)
        setup = prepare(url, args)
        cfg = make_config("interval")

        print("measuring the read floor and the in-memory pipeline, three rounds (child process) ...", flush=True)
        pipe = _in_child(pipeline_child, url, cfg)
        floor = pipe["floor_s"]

        configs = [make_config("interval", compute="database")]
        if not args.skip_pushdown:
            print(f"generating the pushdown interval: {args.pushdown_rows:,} rows ...", flush=True)
            with psycopg.connect(url) as conn:
                setup["generate_pushdown_s"] = create_source(conn, "pushdown", args.pushdown_rows, WINDOW_START,
                                                             drift=True, key=args.primary_key)
            configs.append(make_config("pushdown", compute="database"))
        print("running the in-database pushdown (child process) ...", flush=True)
        push = _in_child(pushdown_child, url, configs)
        print("measuring one scan of each pushdown window in PostgreSQL ...", flush=True)
        scans = [scan_floors(url, c, repeats=3 if i == 0 else 2) for i, c in enumerate(configs)]
        print("running the interval with drift.multivariate on, in both modes (child process) ...", flush=True)
        mv = _in_child(multivariate_child, url, cfg, make_config("interval", multivariate=True),
                       configs[0], make_config("interval", compute="database", multivariate=True))
        print("running the interval with drift.domain_classifier on, in both modes (child process) ...", flush=True)
        dc = _in_child(domain_child, url, cfg, make_config("interval", domain=True),
                       configs[0], make_config("interval", compute="database", domain=True))
        print("running the interval with performance.estimation on, in both modes (child process) ...", flush=True)
        est = _in_child(estimation_child, url, cfg, make_config("interval", estimation=True),
                        configs[0], make_config("interval", compute="database", estimation=True))
        print("running the interval with segments on, in both modes (child process) ...", flush=True)
        seg = _in_child(segments_child, url, cfg, make_config("interval", segments=True),
                        configs[0], make_config("interval", compute="database", segments=True))
        print("running the interval with multivariate, estimation and segments on, in both modes (child process)"
              " ...", flush=True)
        every = {"multivariate": True, "estimation": True, "segments": True}
        together = _in_child(together_child, url, cfg, make_config("interval", **every),
                             configs[0], make_config("interval", compute="database", **every))
        print(f"running the interval split into feature groups of {args.group_size} (one child each) ...", flush=True)
        grouped_cfg = make_config("interval", group_size=args.group_size)
        groups = [_in_child(group_child, url, grouped_cfg, g) for g in range(len(grouped_cfg.feature_groups()))]
        merged = _in_child(grouped_interval_child, url, grouped_cfg, [g["partial"] for g in groups])
        print("pushing 10,000 Dynatrace lines to the local ingest server ...", flush=True)
        dyn = dynatrace_push(url)
        info = machine(url)

    same, big = push["runs"][0], push["runs"][-1]
    result = {
        "rows": pipe["rows"],
        "request_id_primary_key": args.primary_key,
        "read_floor_s": round(floor, 3),
        "pipeline_s": round(pipe["seconds"], 3),
        "pipeline_first_run_s": round(pipe["first_run_s"], 3),
        "read_floor_runs_s": pipe["all_floor_s"],
        "pipeline_runs_s": pipe["all_pipeline_s"],
        "pipeline_vs_floor": round(pipe["seconds"] / floor, 2),
        "stages": {k: round(v, 3) for k, v in pipe["timings"].items()},
        "peak_rss_mb": pipe["peak_rss_mb"],
        "pipeline_rss_after_imports_mb": pipe["rss_after_imports_mb"],
        "pipeline_import_s": round(pipe["import_s"], 2),
        "drift_status": pipe["drift_status"],
        "dq_state": pipe["dq_state"],
        "pushdown_same_rows_s": round(same["seconds"], 3),
        "pushdown_same_rows_queries": same["queries"],
        "scan_floor_s": round(scans[0]["scan_s"], 3),
        "keys_scan_s": round(scans[0]["keys_s"], 3),
        "pushdown_same_rows_vs_scan": round(same["seconds"] / scans[0]["scan_s"], 1),
        "pushdown_scan_floor_s": round(scans[-1]["scan_s"], 3) if not args.skip_pushdown else None,
        "pushdown_keys_scan_s": round(scans[-1]["keys_s"], 3) if not args.skip_pushdown else None,
        "pushdown_vs_scan": round(big["seconds"] / scans[-1]["scan_s"], 1) if not args.skip_pushdown else None,
        "pushdown_rows": big["rows"] if not args.skip_pushdown else None,
        "pushdown_s": round(big["seconds"], 3) if not args.skip_pushdown else None,
        "pushdown_queries": big["queries"] if not args.skip_pushdown else None,
        "pushdown_drift_status": big["drift_status"],
        "pushdown_peak_rss_mb": push["peak_rss_mb"],
        "pushdown_rss_after_imports_mb": push["rss_after_imports_mb"],
        **on_off("multivariate", mv),
        "multivariate_memory_peak_rss_mb": mv["memory_peak_rss_mb"],
        "multivariate_error_memory_s": round(mv["error_memory_s"], 3),
        "multivariate_error_database_s": round(mv["error_database_s"], 3),
        "multivariate_features": mv["features"],
        "multivariate_components": mv["components"],
        **on_off("domain", dc),
        "domain_alone_s": round(dc["alone_s"], 3),
        "domain_sample_rows": dc["sample_rows"],
        "domain_auc": round(dc["auc"], 4) if dc["auc"] is not None else None,
        **on_off("estimation", est),
        "estimation_alone_s": round(est["alone_s"], 3),
        "estimation_rows": est["rows"],
        **on_off("segments", seg),
        **on_off("together", together),
        "together_database_peak_rss_mb": together["database_peak_rss_mb"],
        "feature_groups": len(groups),
        "group_max_s": round(max(g["seconds"] for g in groups), 3),
        "group_max_peak_rss_mb": max(g["peak_rss_mb"] for g in groups),
        "group_max_xcom_kb": max(g["xcom_kb"] for g in groups),
        "grouped_interval_s": round(merged["seconds"], 3),
        "grouped_interval_peak_rss_mb": merged["peak_rss_mb"],
        "grouped_interval_stages": {k: round(v, 3) for k, v in merged["timings"].items()},
        "grouped_wall_s": round(max(g["seconds"] for g in groups) + merged["seconds"], 3),
        "dynatrace_push_10k_s": round(dyn["seconds"], 3),
        "dynatrace_batches": dyn["batches"],
        "setup_s": {k: round(v, 2) for k, v in setup.items()},
        "total_s": round(time.perf_counter() - total, 1),
        "machine": info,
    }
    if dyn["sent"] != DYNATRACE_LINES or dyn["accepted"] != DYNATRACE_LINES:
        raise SystemExit(f"Dynatrace push sent {dyn['sent']} and the server accepted {dyn['accepted']} of "
                         f"{DYNATRACE_LINES} lines")
    report(result)
    return 0


def on_off(name: str, run: dict) -> dict:
    """A setting's interval with it on and off, in both modes, and the extra time on (percent)."""
    out: dict[str, float] = {}
    for mode in ("memory", "database"):
        on, off = run[f"{mode}_s"], run[f"{mode}_off_s"]
        out |= {f"{name}_{mode}_s": round(on, 3), f"{name}_{mode}_off_s": round(off, 3),
                f"{name}_{mode}_extra_pct": round(100 * (on / off - 1), 1)}
    return out


def report(r: dict) -> None:
    m = r["machine"]
    print(f"\nmachine: {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}, PostgreSQL {m['postgres']}"
          f" (work_mem {m['work_mem']}); request_id {'is' if r['request_id_primary_key'] else 'is not'} the"
          " source tables' primary key")
    rows = [
        ("interval rows", f"{r['rows']:,}"),
        ("read floor (ADBC -> Arrow)", f"{r['read_floor_s']:.2f} s  (fastest of {r['read_floor_runs_s']})"),
        ("in-memory pipeline", f"{r['pipeline_s']:.2f} s  ({r['pipeline_vs_floor']}x the read floor; "
                               f"fastest of {r['pipeline_runs_s']}, each after a floor read)"),
        *((f"  stage {k}", f"{v:.2f} s") for k, v in r["stages"].items()),
        ("  peak RSS", f"{r['peak_rss_mb']:.0f} MB  (after imports {r['pipeline_rss_after_imports_mb']:.0f} MB)"),
        ("pushdown, same rows", f"{r['pushdown_same_rows_s']:.2f} s  "
                                + ", ".join(f"{k} {v:.2f}" for k, v in r["pushdown_same_rows_queries"].items())),
        ("  one scan in PostgreSQL", f"{r['scan_floor_s']:.2f} s  (pushdown {r['pushdown_same_rows_vs_scan']}x);"
                                     f" with every histogram key {r['keys_scan_s']:.2f} s"),
    ]
    if r["pushdown_rows"] is not None:
        rows += [
            (f"pushdown, {r['pushdown_rows']:,} rows", f"{r['pushdown_s']:.2f} s  "
                                                        + ", ".join(f"{k} {v:.2f}"
                                                                    for k, v in r["pushdown_queries"].items())),
            ("  one scan in PostgreSQL", f"{r['pushdown_scan_floor_s']:.2f} s  (pushdown {r['pushdown_vs_scan']}x);"
                                         f" with every histogram key {r['pushdown_keys_scan_s']:.2f} s"),
        ]
    rows += [
        ("  pushdown peak RSS", f"{r['pushdown_peak_rss_mb']:.0f} MB  (client side)"),
        (f"multivariate drift ({r['multivariate_features']} features, {r['multivariate_components']} components)",
         f"in memory {r['multivariate_memory_s']:.2f} s against {r['multivariate_memory_off_s']:.2f} s without"
         f" ({r['multivariate_memory_extra_pct']:+.1f}%, error alone"
         f" {r['multivariate_error_memory_s']:.2f} s, peak RSS {r['multivariate_memory_peak_rss_mb']:.0f} MB);"
         f" database {r['multivariate_database_s']:.2f} s against {r['multivariate_database_off_s']:.2f} s"
         f" ({r['multivariate_database_extra_pct']:+.1f}%, its scan"
         f" {r['multivariate_error_database_s']:.2f} s)"),
        (f"domain classifier ({r['domain_sample_rows']:,} rows a side, AUC {r['domain_auc']})",
         f"in memory {r['domain_memory_s']:.2f} s against {r['domain_memory_off_s']:.2f} s"
         f" ({r['domain_memory_extra_pct']:+.1f}%); database {r['domain_database_s']:.2f} s against"
         f" {r['domain_database_off_s']:.2f} s ({r['domain_database_extra_pct']:+.1f}%); sample and fit alone"
         f" {r['domain_alone_s']:.2f} s"),
        (f"estimated performance (DLE on {r['estimation_rows']:,} sampled rows)",
         f"in memory {r['estimation_memory_s']:.2f} s against {r['estimation_memory_off_s']:.2f} s"
         f" ({r['estimation_memory_extra_pct']:+.1f}%); database {r['estimation_database_s']:.2f} s against"
         f" {r['estimation_database_off_s']:.2f} s ({r['estimation_database_extra_pct']:+.1f}%); sample and"
         f" estimate alone {r['estimation_alone_s']:.2f} s"),
        ("segments (region, top 10 channels: 16)",
         f"in memory {r['segments_memory_s']:.2f} s against {r['segments_memory_off_s']:.2f} s"
         f" ({r['segments_memory_extra_pct']:+.1f}%); database {r['segments_database_s']:.2f} s against"
         f" {r['segments_database_off_s']:.2f} s ({r['segments_database_extra_pct']:+.1f}%)"),
        ("multivariate, estimation and segments together",
         f"in memory {r['together_memory_s']:.2f} s against {r['together_memory_off_s']:.2f} s"
         f" ({r['together_memory_extra_pct']:+.1f}%); database {r['together_database_s']:.2f} s"
         f" against {r['together_database_off_s']:.2f} s ({r['together_database_extra_pct']:+.1f}%), client peak"
         f" RSS {r['together_database_peak_rss_mb']:.0f} MB"),
        (f"feature groups ({r['feature_groups']} mapped tasks)",
         f"slowest group {r['group_max_s']:.2f} s, peak RSS {r['group_max_peak_rss_mb']:.0f} MB, "
         f"XCom {r['group_max_xcom_kb']:.0f} KB"),
        ("  interval task (core columns, merge)", f"{r['grouped_interval_s']:.2f} s, peak RSS "
                                                  f"{r['grouped_interval_peak_rss_mb']:.0f} MB"),
        ("  wall time, one worker per group", f"{r['grouped_wall_s']:.2f} s"),
        ("Dynatrace push, 10,000 lines", f"{r['dynatrace_push_10k_s']:.2f} s  ({r['dynatrace_batches']} batches)"),
        ("whole benchmark", f"{r['total_s']:.0f} s"),
    ]
    print_table(rows)
    print(json.dumps(r, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
