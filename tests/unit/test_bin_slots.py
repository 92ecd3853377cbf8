"""The grid lookup that bins a segment's values is a binary search's exact equal, edges and their neighbours
included."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring_lib.drift.summaries import _GRID_FROM, bin_counts, edge_slots


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    n = _GRID_FROM + 5_000
    draws = {
        "normal": rng.normal(0, 1, n),
        "lognormal with a long tail": rng.lognormal(0, 2, n),
        "few distinct values": rng.integers(0, 10, n).astype(float),
        "huge outliers": np.concatenate([rng.normal(0, 1, n), [1e12, -1e12, 1e308, -1e308]]),
        "offset far from zero": 1e9 + rng.normal(0, 1e-3, n),
        "too fine for the grid": 1e15 + rng.integers(0, 3, n).astype(float),
    }
    out = []
    for name, x in draws.items():
        for bins in (2, 7, 30, 59):
            e = np.unique(np.quantile(rng.permutation(x)[:5000], np.linspace(0, 1, bins)))
            if e.size < 2:
                continue
            near = np.concatenate([e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf)])
            out.append((f"{name}, {bins} edges", np.concatenate([x, near, [np.inf, -np.inf]]), e))
    return out


@pytest.mark.parametrize(("values", "edges"), [c[1:] for c in _cases()], ids=[c[0] for c in _cases()])
def test_the_grid_gives_every_value_the_slot_a_binary_search_gives(values: np.ndarray, edges: np.ndarray) -> None:
    assert np.array_equal(edge_slots(values, edges), np.searchsorted(edges, values, side="right"))
    expected = np.bincount(np.where(values == edges[-1], len(edges) - 1, np.searchsorted(edges, values, "right")),
                           minlength=len(edges) + 1)
    assert np.array_equal(bin_counts(values, edges), expected)


def test_nan_values_take_the_slot_above_as_a_binary_search_puts_them() -> None:
    values = np.concatenate([np.linspace(0, 1, _GRID_FROM), [np.nan]])
    edges = np.array([0.0, 0.5, 1.0])
    assert np.array_equal(edge_slots(values, edges), np.searchsorted(edges, values, side="right"))
