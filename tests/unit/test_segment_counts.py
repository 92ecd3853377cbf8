"""The memory mode's per-segment counts (one placement of each value among the union of every segment's
edges) against the definition: each segment's own rows, binned over that segment's own edges.

The data puts many values exactly on edges (whole numbers), on the last edge, outside every edge, and has
nulls, infinities, unnamed segment values and unseen categories, with enough rows for the grid lookup."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring_lib.compute.memory.segments import frame_segment_counts
from monitoring_lib.drift.profile import CategoricalProfile
from monitoring_lib.drift.segments import category_codes, segment_columns, segment_keys
from monitoring_lib.drift.summaries import ColumnSummary, bin_counts
from monitoring_lib.reference import fit_profile
from tests.sources import make_config

CFG = make_config(source={"categorical_features": ["region", "channel"]},
                  segments={"columns": ["region", "channel"], "top_k": 3})


def _frame(n: int, seed: int, window: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east", "west"], n, p=[0.1, 0.3, 0.3, 0.3]).astype(object)
    amount = np.round(rng.lognormal(3, 0.4, n)) + np.where(region == "west", 10, 0)  # whole numbers: on edges
    age = rng.normal(8, 3, n)
    channel = rng.choice(["web", "app", "agent", "phone", "mail"], n).astype(object)
    if window:
        amount[: n // 50] = 1e9  # above every edge
        amount[n // 50: n // 25] = -1e9  # below every edge
        age[rng.random(n) < 0.03] = np.nan
        age[rng.random(n) < 0.01] = np.inf
        region[rng.random(n) < 0.02] = None
        region[rng.random(n) < 0.02] = "unnamed"
        channel[rng.random(n) < 0.02] = "fax"  # unseen by the reference
    return pd.DataFrame({"request_id": [f"r{i}" for i in range(n)], "ts": pd.Timestamp("2026-03-01", tz="UTC"),
                         "claimed_amount": amount, "vehicle_age": age, "region": region, "channel": channel,
                         "prediction": rng.normal(2000, 10, n), "latency_ms": rng.exponential(20, n),
                         "error": rng.random(n) < 0.05})


def _by_definition(df: pd.DataFrame, col, rows: np.ndarray) -> ColumnSummary:
    raw = df[col.name][rows]
    if isinstance(col, CategoricalProfile):
        codes = category_codes(raw, col.categories)
        counts = np.bincount(codes[codes >= 0], minlength=len(col.categories) + 1)
        return ColumnSummary(col.name, "categorical", tuple(int(c) for c in counts), int(counts.sum()),
                             int((codes < 0).sum()), unseen_count=int(counts[-1]))
    x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    nulls = raw.isna().to_numpy()
    finite = np.isfinite(x)
    values = x[finite]
    return ColumnSummary(col.name, "numeric", tuple(int(c) for c in bin_counts(values, col.edges)), int(values.size),
                         int(nulls.sum()), int((~finite & ~nulls).sum()))


@pytest.mark.parametrize("rows", [3_000, 120_000])
def test_each_segment_counts_its_own_rows_over_its_own_edges(rows: int) -> None:
    profile = fit_profile(_frame(40_000, 1, window=False), CFG, "frame", "1")
    df = _frame(rows, 2, window=True)
    got = {(c.column, c.value): c for c in frame_segment_counts(df, profile, CFG)}
    assert len(got) == sum(len(seg.values) for seg in profile.segments) == 4 + 4
    for seg in profile.segments:
        keys = segment_keys(df[seg.column], seg)
        for i, value in enumerate(seg.values):
            mine = keys == i
            counts = got[(seg.column, value)]
            assert counts.rows == int(mine.sum())
            assert counts.errors == int(df["error"][mine].sum())
            assert counts.latency_avg == pytest.approx(df["latency_ms"][mine].mean(), rel=1e-12)
            for name, col in segment_columns(profile, seg, i).items():
                assert counts.summaries[name] == _by_definition(df, col, mine), (seg.column, value, name)
    # the placement really did hit edges, the last edge and both ends
    north = segment_columns(profile, profile.segments[0], 0)["claimed_amount"]
    assert np.isin(df["claimed_amount"], north.edges).any() and (df["claimed_amount"] == north.edges[-1]).any()
