"""Fitting reference profiles and summarising intervals against them (no database needed)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitoring_lib.compute.memory.summaries import sorted_bin_counts, summarise_frame
from monitoring_lib.config import EndpointConfig
from monitoring_lib.drift.engine import column_metric
from monitoring_lib.drift.profile import QUANTILES, CategoricalProfile, NumericProfile, ReferenceProfile
from monitoring_lib.drift.summaries import QUANTILE_KEYS, bin_counts, histogram_quantiles, merge
from monitoring_lib.errors import ProfileNotFittedError, SourceError
from monitoring_lib.reference.fit import fit_numeric, fit_reference, numeric_edges


def make_cfg(numeric=("x", "k"), categorical=("c",), **drift) -> EndpointConfig:
    return EndpointConfig.model_validate({
        "endpoint_id": "fit-test", "project": "p", "model": {"name": "m", "version": 3},
        "source": {"table": "t", "numeric_features": list(numeric),
                   "categorical_features": list(categorical)},
        "drift": {"bins": 4, **drift},
    })


def small_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "x": pd.Series([0.0, 1.0, 2.0, 3.0, 4.0, 4.0, np.nan, np.inf, -np.inf, "abc"], dtype=object),
        "k": [7.5] * 10,
        "c": ["a", "b", "a", None, "a", "b", "c", "a", "b", "a"],
        "prediction": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    })


def test_bin_counts_left_closed_last_bin_closed_outer_bins_open():
    edges = (0.0, 1.0, 2.0)
    values = np.array([-5.0, 0.0, 0.5, 1.0, 2.0, 2.0000001, 99.0])
    assert bin_counts(values, edges).tolist() == [1, 2, 2, 2]


@pytest.mark.parametrize("seed", range(20))
def test_the_one_sort_gives_what_per_value_binning_and_selection_give(seed: int):
    """Histogram, quantiles, extremes and band counts from the sorted values equal the direct ones,
    with ties on every edge and on the band limits, and columns wholly inside or outside the edges."""
    rng = np.random.default_rng(seed)
    edges = tuple(float(e) for e in numeric_edges(-2.0, 2.0, int(rng.integers(1, 12))))
    spread = [0.1, 1.0, 10.0][seed % 3]
    v = np.concatenate([rng.normal(rng.normal(), spread, int(rng.integers(1, 3000))),
                        rng.choice(edges, int(rng.integers(0, 50)))])
    rng.shuffle(v)
    expected = bin_counts(v, edges)
    assert sorted_bin_counts(np.sort(v), edges).tolist() == expected.tolist()
    col = NumericProfile(name="x", edges=edges, counts=tuple([0] * (len(edges) + 1)), count=1, null_count=0,
                         mean=float(edges[0]), std=1.0, min=-2.0, max=2.0, quantiles={})
    s = summarise_frame(pd.DataFrame({"x": v}), ReferenceProfile("e", "1", {"x": col}, None, None, 1),
                        ["x"], band_k=float(seed % 4))["x"]
    assert list(s.counts) == expected.tolist()
    assert list(s.quantiles.values()) == [float(q) for q in np.quantile(v, QUANTILES)]
    assert (s.min, s.max) == (float(v.min()), float(v.max()))
    low, high = col.mean - (seed % 4) * col.std, col.mean + (seed % 4) * col.std
    assert s.outside_band == int(np.count_nonzero((v < low) | (v > high)))


def test_numeric_profile_treats_nan_inf_and_text_as_nulls():
    profile = fit_reference(small_frame(), make_cfg(), source="unit")
    x = profile.features["x"]
    assert isinstance(x, NumericProfile)
    assert x.edges == (0.0, 1.0, 2.0, 3.0, 4.0)
    assert x.counts == (0, 1, 1, 1, 3, 0)  # 4.0 twice + 3.0 share the last, closed bin
    assert (x.count, x.null_count, x.min, x.max) == (6, 4, 0.0, 4.0)
    assert x.mean == pytest.approx(14 / 6)
    assert x.std == pytest.approx(np.std([0, 1, 2, 3, 4, 4], ddof=1))
    assert tuple(x.quantiles) == QUANTILE_KEYS == ("p01", "p05", "p25", "p50", "p75", "p95", "p99")
    assert x.quantiles["p50"] == pytest.approx(2.5)
    assert profile.null_rates["x"] == pytest.approx(0.4)
    assert profile.null_rates["c"] == pytest.approx(0.1)
    assert (profile.endpoint_id, profile.model_version, profile.source, profile.row_count) == (
        "fit-test", "3", "unit", 10)


def test_constant_column_gets_valid_edges_and_no_drift_against_itself():
    profile = fit_reference(small_frame(), make_cfg(), source="unit")
    k = profile.features["k"]
    assert all(b > a for a, b in zip(k.edges, k.edges[1:], strict=False))
    assert k.edges[0] < 7.5 < k.edges[-1] and k.std == 0.0
    assert sum(k.counts[1:-1]) == 10
    s = summarise_frame(pd.DataFrame({"k": [7.5] * 3 + [8.0]}), profile, ["k"], band_k=3.0)["k"]
    assert s.counts[-1] == 1 and s.outside_band == 1  # any departure from a constant is visible
    assert numeric_edges(0.0, 0.0, 2).tolist() == pytest.approx([-1e-9, 0.0, 1e-9])


def test_one_training_outlier_does_not_hide_a_shift():
    """Bins over the raw [min, max] would put 10,000 values in one bin beside a single 1e6, and every
    metric would read no drift for a two-sigma shift."""
    rng = np.random.default_rng(7)
    cfg = make_cfg(numeric=("x",), categorical=(), bins=10)
    profile = fit_reference(pd.DataFrame({"x": np.append(rng.normal(100, 10, 10_000), 1e6)}), cfg, source="unit")
    x = profile.features["x"]
    assert x.max == 1e6 and 130 < x.edges[-1] < 200 and x.counts[-1] == 1  # the outlier sits in the outer bin
    assert max(x.counts[1:-1]) < 0.4 * x.count
    shifted = rng.normal(120, 10, 2_000)
    counts = summarise_frame(pd.DataFrame({"x": shifted}), profile, ["x"], band_k=3.0)["x"].counts
    assert column_metric("tvd", x, counts).value > 0.6
    assert column_metric("hellinger", x, counts).value > 0.5
    assert column_metric("ks", x, counts).value == pytest.approx(
        stats.ks_2samp(np.append(rng.normal(100, 10, 10_000), 1e6), shifted).statistic, abs=0.1)


def test_well_behaved_columns_keep_min_to_max_bins():
    rng = np.random.default_rng(8)
    v = rng.normal(0, 1, 5_000)
    x = fit_numeric("x", pd.Series(v), 10)
    assert (x.edges[0], x.edges[-1]) == (v.min(), v.max()) and x.counts[0] == x.counts[-1] == 0


def test_a_column_of_mostly_one_value_keeps_distinct_values_apart():
    """Quartiles that coincide give no fence: the percentiles do, or else [min, max]."""
    z = fit_numeric("z", pd.Series([0.0] * 995 + [1.0] * 5), 10)
    assert z.counts[1] == 995 and z.counts[-2] == 5
    spread = np.concatenate([np.zeros(900), np.linspace(1, 100, 99), [1e9]])
    s = fit_numeric("s", pd.Series(spread), 10)
    assert s.edges[-1] == pytest.approx(4 * np.quantile(spread, 0.99))
    assert s.counts[-1] == 1 and s.counts[1:4] == (936, 36, 27)  # not 999 values in one bin beside 1e9


@pytest.mark.parametrize("extreme", [[1e300], [-1.7e308, 1.7e308], [1.7e308] * 3])
def test_sentinel_values_fit_to_finite_statistics_that_store_as_json(extreme):
    rng = np.random.default_rng(9)
    v = np.append(rng.normal(5, 2, 1_000), extreme)
    x = fit_numeric("x", pd.Series(v), 10)
    assert np.isfinite([x.mean, x.std, *x.edges, *x.quantiles.values()]).all()
    assert x.mean == pytest.approx(float(np.mean(v / 2**1000)) * 2**1000)
    assert x.std == pytest.approx(float(np.std(v / 2**1000, ddof=1)) * 2**1000)
    json.dumps(x.__dict__, allow_nan=False)
    ordinary = rng.normal(5, 2, 1_000)
    y = fit_numeric("y", pd.Series(ordinary), 10)
    assert (y.mean, y.std) == (float(ordinary.mean()), float(ordinary.std(ddof=1)))  # bit for bit


def test_categorical_profile_frequencies_as_text_with_empty_unseen_bucket():
    df = small_frame().assign(c=[1, 2, 1, None, 1, 2, 3, 1, 2, 1])
    profile = fit_reference(df, make_cfg(), source="unit")
    c = profile.features["c"]
    assert isinstance(c, CategoricalProfile)
    assert c.categories == ("1", "2", "3")  # whole floats (ints that met a null) stored as integers
    assert c.counts == (5, 3, 1, 0)
    assert (c.count, c.null_count) == (9, 1)


def test_prediction_and_label_kinds_follow_their_dtype():
    df = small_frame().assign(prediction=["yes", "no", "yes", "yes", "no", "no", "yes", "yes", "no", "yes"])
    label = pd.Series([1.0, 0.0] * 5, name="label")
    profile = fit_reference(df, make_cfg(), source="unit", label=label)
    assert isinstance(profile.prediction, CategoricalProfile)
    assert profile.prediction.categories == ("yes", "no")
    assert isinstance(profile.label, NumericProfile) and profile.label.count == 10


def test_calibration_covers_each_feature_and_applicable_metric():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "x": rng.normal(size=2000), "k": rng.exponential(size=2000),
        "c": rng.choice(["a", "b", "c"], 2000), "prediction": rng.normal(size=2000),
    })
    cfg = make_cfg(metrics=["hellinger", "ks", "chi_square"],
                   feature={"mode": "calibrated", "calibration_chunks": 5})
    profile = fit_reference(df, cfg, source="unit")
    assert set(profile.calibration) == {"x", "k", "c"}
    assert set(profile.calibration["x"]) == {"hellinger", "ks"}
    assert set(profile.calibration["c"]) == {"hellinger", "chi_square"}
    stats = profile.calibration["x"]["hellinger"]
    assert stats["chunks"] == 5 and 0 < stats["mean"] < 0.2 and stats["std"] >= 0


def test_missing_columns_and_empty_columns_fail_clearly():
    with pytest.raises(SourceError, match="lacks configured columns"):
        fit_reference(small_frame().drop(columns=["c"]), make_cfg(), source="unit")
    with pytest.raises(SourceError, match="'x'.*no finite values"):
        fit_reference(small_frame().assign(x=np.nan), make_cfg(), source="unit")


@pytest.fixture()
def profile() -> ReferenceProfile:
    df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0] * 4, "k": [1.0] * 20, "c": list("aabbc") * 4,
                       "prediction": np.linspace(0, 1, 20)})
    return fit_reference(df, make_cfg(), source="unit")


def test_summary_counts_out_of_range_values_and_unseen_categories(profile):
    df = pd.DataFrame({
        "x": pd.Series([-10.0, 0.5, 2.0, 99.0, None, "oops", np.inf], dtype=object),
        "c": ["a", "zzz", "zzz", None, "b", "new", "c"],
    })
    out = summarise_frame(df, profile, ["x", "c"], band_k=1.0)
    x, c = out["x"], out["c"]
    assert x.counts == (1, 1, 0, 1, 0, 1)  # below, 4 inner bins, above
    assert (x.n, x.null_count, x.invalid_count, x.total) == (4, 1, 2, 7)
    assert (x.min, x.max) == (-10.0, 99.0)
    assert x.mean == pytest.approx(np.mean([-10, 0.5, 2, 99]))
    assert x.std == pytest.approx(np.std([-10, 0.5, 2, 99], ddof=1))
    ref = profile.features["x"]
    band = (ref.mean - ref.std, ref.mean + ref.std)
    assert x.outside_band == sum(not band[0] <= v <= band[1] for v in (-10, 0.5, 2, 99))
    assert c.counts[-1] == c.unseen_count == 3
    assert sum(c.counts) == c.n == 6 and c.null_count == 1


def test_summary_errors_name_the_problem(profile):
    with pytest.raises(ProfileNotFittedError, match="no column 'y'"):
        summarise_frame(pd.DataFrame({"y": [1.0]}), profile, ["y"], band_k=3.0)
    with pytest.raises(SourceError, match="'x' is missing"):
        summarise_frame(pd.DataFrame({"c": ["a"]}), profile, ["x"], band_k=3.0)


def test_merge_equals_summary_of_the_union(profile):
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"x": rng.normal(2, 1, 5000), "c": rng.choice(["a", "b", "q"], 5000)})
    whole = summarise_frame(df, profile, ["x", "c"], band_k=1.0)
    first = summarise_frame(df.iloc[:1200], profile, ["x", "c"], band_k=1.0)
    second = summarise_frame(df.iloc[1200:], profile, ["x", "c"], band_k=1.0)
    ref = profile.features["x"]
    merged = merge(first["x"], second["x"], edges=ref.edges)
    w = whole["x"]
    assert merged.counts == w.counts and merged.n == w.n and merged.outside_band == w.outside_band
    assert (merged.min, merged.max) == (w.min, w.max)
    assert merged.mean == pytest.approx(w.mean, rel=1e-12)
    assert merged.std == pytest.approx(w.std, rel=1e-9)
    # quantiles from the merged histogram: within one bin width of the exact ones
    width = ref.edges[1] - ref.edges[0]
    for key in ("p25", "p50", "p75"):
        assert merged.quantiles[key] == pytest.approx(w.quantiles[key], abs=width)
    mc = merge(first["c"], second["c"])
    assert mc.counts == whole["c"].counts and mc.unseen_count == whole["c"].unseen_count
    with pytest.raises(ValueError, match="different columns"):
        merge(first["x"], second["c"])


def test_merge_keeps_moments_exact_when_shifts_differ(profile):
    a = summarise_frame(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), profile, ["x"], band_k=3.0)["x"]
    b = summarise_frame(pd.DataFrame({"x": [10.0, 20.0]}), profile, ["x"], band_k=3.0)["x"]
    b_raw = replace(b, sum=b.sum + b.n * b.shift, sum_sq=100.0 + 400.0, shift=0.0)  # as SQL would give
    merged = merge(a, b_raw)
    assert merged.mean == pytest.approx(np.mean([1, 2, 3, 10, 20]))
    assert merged.std == pytest.approx(np.std([1, 2, 3, 10, 20], ddof=1))


def test_histogram_quantiles_interpolate_inside_bins():
    q = histogram_quantiles([0, 10, 10, 0], (0.0, 1.0, 2.0), lo=0.0, hi=2.0)
    assert q["p50"] == pytest.approx(1.0) and q["p25"] == pytest.approx(0.5)
    assert histogram_quantiles([0, 0, 0, 0], (0.0, 1.0, 2.0), 0.0, 2.0) == {}


def test_profile_survives_json_round_trip(profile):
    restored = ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert restored == profile
