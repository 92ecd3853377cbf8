"""The reconstruction-error arithmetic: PCA fit, both per-row forms, the z-scores' edge cases, the band."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from monitoring_lib.drift.multivariate import (
    Z_CAP,
    WindowError,
    fit_multivariate,
    judge,
    row_errors,
    standardise,
    uses_residual,
    window_error,
)
from monitoring_lib.drift.profile import MultivariateProfile, ReferenceProfile


def sample(n: int, rho: float, seed: int, extra: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rho * a + np.sqrt(1 - rho * rho) * rng.normal(size=n)
    return np.column_stack([10 + 2 * a, -5 + 0.5 * b, *rng.normal(size=(extra, n))])


def test_both_forms_of_the_row_error_agree():
    x = sample(5000, 0.7, seed=0, extra=3)
    model = fit_multivariate(x, ("a", "b", "c", "d", "e"), 0.5, 10)
    z = standardise(x, np.asarray(model.centre), np.asarray(model.scale))
    assert uses_residual(model) == (len(model.residual) <= len(model.components) + 1)
    kept = replace(model, residual=((0.0,) * 5,) * 9)  # more left out than kept: the |z|^2 - |V^T z|^2 form
    assert not uses_residual(kept)
    direct = np.square(z - z @ np.asarray(model.components).T @ np.asarray(model.components)).sum(axis=1)
    assert row_errors(z, model) == pytest.approx(direct, rel=1e-9, abs=1e-12)
    assert row_errors(z, kept) == pytest.approx(direct, rel=1e-9, abs=1e-12)


def test_the_fit_keeps_the_fewest_components_reaching_the_share():
    x = sample(20_000, 0.9, seed=1)
    model = fit_multivariate(x, ("a", "b"), 0.9, 10)
    assert len(model.components) == 1 and len(model.residual) == 1
    assert model.explained_share == pytest.approx(0.95, abs=0.01)
    assert model.centre == pytest.approx((10, -5), abs=0.05) and model.scale == pytest.approx((2, 0.5), rel=0.03)
    assert model.error_mean == pytest.approx(0.1, abs=0.01) and model.chunk_rows == 2000
    # never every component: the error would be 0 whatever the window
    everything = fit_multivariate(x, ("a", "b"), 0.999999, 10)
    assert len(everything.components) == 1


def test_missing_and_non_finite_values_read_as_the_reference_mean_and_extremes_are_capped():
    z = standardise(np.array([[np.nan, np.inf, -np.inf, 1e300, -1e300, 3.0]]), np.zeros(6),
                    np.array([1.0, 1.0, 1.0, 1e-250, 1e-250, 2.0]))
    assert z.tolist() == [[0.0, 0.0, 0.0, Z_CAP, -Z_CAP, 1.5]]
    assert np.isfinite(np.square(z).sum())


def test_a_flipped_correlation_is_outside_the_band_and_a_like_window_inside():
    model = fit_multivariate(sample(20_000, 0.9, seed=2), ("a", "b"), 0.9, 10)

    def error_of(x: np.ndarray) -> WindowError:
        return window_error(standardise(x, np.asarray(model.centre), np.asarray(model.scale)), model)

    like = judge(model, error_of(sample(2000, 0.9, seed=3)), 3.0, 4.0)
    flipped = judge(model, error_of(sample(2000, -0.9, seed=4)), 3.0, 4.0)
    assert like.status == "no_drift" and like.reason() is None
    assert flipped.status == "drift_detected" and flipped.value == pytest.approx(1.9, abs=0.1)
    assert "outside the reference band" in (flipped.reason() or "")
    assert judge(model, WindowError(0, 0.0), 3.0, 4.0).status is None


def test_a_small_window_gets_a_wider_band():
    model = fit_multivariate(sample(20_000, 0.9, seed=5), ("a", "b"), 0.9, 10)
    at_chunk = judge(model, WindowError(2000, 200.0), 3.0, 4.0)
    small = judge(model, WindowError(20, 2.0), 3.0, 4.0)
    assert small.upper_detected - model.error_mean == pytest.approx(
        10 * (at_chunk.upper_detected - model.error_mean))


def test_the_model_survives_the_profile_round_trip():
    model = fit_multivariate(sample(1000, 0.5, seed=6), ("a", "b"), 0.9, 5)
    profile = ReferenceProfile("e", "1", {}, None, None, 1000, multivariate=model)
    again = ReferenceProfile.from_dict(profile.to_dict()).multivariate
    assert isinstance(again, MultivariateProfile) and again == model
