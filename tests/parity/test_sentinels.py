"""Sentinel values near float max (1e300) in the data: fitted, summarised and stored like any other value.

JSON has no Infinity, so a statistic that overflowed on its way into a jsonb column used to fail the
reference fit, or the whole write of every window while the sentinel sat in the anomaly history.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pandas as pd

from monitoring_lib.reference import fit_and_store
from monitoring_lib.results.profiles import load_active_profile
from monitoring_lib.runner import run_interval
from tests.sources import WINDOW_START, clean_rows, create_inference_table, insert_rows, make_config

COLUMNS = ["request_id", "ts", "claimed_amount", "vehicle_age", "region", "prediction", "latency_ms", "error"]


def test_a_reference_with_a_sentinel_is_stored_with_finite_statistics(conn, db_url):
    cfg = make_config()
    ref = pd.DataFrame(clean_rows(500, seed=1), columns=COLUMNS)
    ref.loc[0, "claimed_amount"] = 1e300
    fit_and_store(db_url, cfg, frame=ref)
    col = load_active_profile(conn, cfg.endpoint_id, cfg.model.version).features["claimed_amount"]
    rest = ref["claimed_amount"].iloc[1:]
    assert col.max == 1e300 and col.edges[-1] <= rest.max()  # the bins span the data, not the sentinel
    assert col.counts[-1] == 1 + (rest > col.edges[-1]).sum() and sum(col.counts[1:-1]) > 490
    assert math.isfinite(col.std) and col.std > 1e298 and col.mean > 1e297


def test_a_sentinel_window_does_not_break_the_writes_of_the_windows_after_it(conn, db_url):
    """Its feature mean (about 5e297) enters the anomaly history; the history's std overflows float8 and the
    band limits in `app_results.extra` were ±Infinity, which PostgreSQL's jsonb refuses."""
    cfg = make_config()
    create_inference_table(conn)
    hour = timedelta(hours=1)
    for k in range(6):
        rows = clean_rows(200, start=WINDOW_START + k * hour, seed=10 + k, prefix=f"w{k}-")
        if k == 3:
            rows[0] = (rows[0][0], rows[0][1], 1e300, *rows[0][3:])
        insert_rows(conn, rows)
    conn.commit()
    fit_and_store(db_url, cfg, frame=pd.DataFrame(clean_rows(2000, seed=99), columns=COLUMNS))
    for k in range(6):
        run_interval(db_url, cfg, WINDOW_START + k * hour, WINDOW_START + (k + 1) * hour)
    means = conn.execute(
        "SELECT value FROM monitoring.feature_stats WHERE feature = 'claimed_amount' AND metric = 'mean'"
        " ORDER BY window_start").fetchall()
    assert len(means) == 6 and 1e297 < means[3][0] < 1e298
    windows = conn.execute("SELECT count(DISTINCT window_start) FROM monitoring.drift_summary"
                           " WHERE endpoint_id = %s", (cfg.endpoint_id,)).fetchone()[0]
    assert windows == 6
    after = conn.execute(
        "SELECT window_start, status, extra FROM monitoring.app_results"
        " WHERE application = 'anomaly' AND metric = 'feature_mean:claimed_amount' AND window_start > %s"
        " ORDER BY window_start", (WINDOW_START + 3 * hour,)).fetchall()
    assert [r[0] for r in after] == [WINDOW_START + 4 * hour, WINDOW_START + 5 * hour]
    for _, status, extra in after:
        assert status == "normal"  # the sentinel widened the band: an ordinary mean is inside it
        assert extra["std"] > 1e297 and extra["band_low"] < 0 < extra["band_high"] < 1e299  # no overflow


def test_values_that_overflow_in_a_json_column_are_stored_as_null(conn):
    """Any result's extra fields (a user application's too): NaN and ±Infinity become null, the rest stays."""
    from monitoring_lib.results.tables import replace_window

    replace_window(conn, "app_results", "e", WINDOW_START, WINDOW_START + timedelta(hours=1),
                   ["application", "metric", "kind", "status", "value", "extra", "schedule_time"],
                   ["application", "metric"],
                   [("user", "m", "metric", "ok", 1.0,
                     {"a": math.inf, "b": [1.5, -math.inf, math.nan], "c": {"d": 2}}, WINDOW_START)])
    extra = conn.execute("SELECT extra FROM monitoring.app_results").fetchone()[0]
    assert extra == {"a": None, "b": [1.5, None, None], "c": {"d": 2}}
