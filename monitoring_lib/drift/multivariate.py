"""Multivariate drift: how far a window's rows sit from the reference's principal subspace.

Each numeric feature is standardised with the reference's median and interquartile range (robust to
a sentinel such as 1e300 in the training data; a missing or non-finite value reads as z = 0), and |z|
is capped at `Z_CAP`, so one wild value moves a window's mean error by at most p * Z_CAP^2 / n: such
values are the quality checks' business, not evidence of a new correlation. PCA on the standardised
reference keeps the fewest components V that explain `variance_share` of its variance; W are the
components left out. A row's reconstruction error is its
squared distance from the kept subspace,

    |W^T z|^2  =  |z|^2 - |V^T z|^2,

taken in whichever form needs fewer dot products (`uses_residual`), and a window's value is the mean
over its rows. Both compute modes evaluate the same per-row formula (NumPy on the frame, one aggregate
in PostgreSQL) and keep only the count and the sum. A change in the correlation between features
moves the error while every marginal stays put. The band is the spread of the same mean over
contiguous chunks of the reference, widened by sqrt(chunk rows / window rows) for windows smaller
than a chunk (the error of a mean shrinks with n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from monitoring_lib.drift.profile import MultivariateProfile
from monitoring_lib.drift.tiers import DRIFT_DETECTED, NO_DRIFT, POSSIBLE_DRIFT

Z_CAP = 8.0
# a normal distribution's interquartile range in standard deviations
_IQR_PER_STD = 1.3489795003921634


@dataclass(frozen=True)
class WindowError:
    """What a window contributes: its row count and the sum of its rows' reconstruction errors."""

    rows: int
    error_sum: float

    @property
    def mean(self) -> float | None:
        return self.error_sum / self.rows if self.rows else None


@dataclass(frozen=True)
class MultivariateResult:
    value: float | None
    status: str | None  # None: no rows to judge
    lower_possible: float
    upper_possible: float
    lower_detected: float
    upper_detected: float
    components: int
    features: tuple[str, ...]

    def reason(self) -> str | None:
        if self.status in (None, NO_DRIFT) or self.value is None:
            return None
        low, high = ((self.lower_detected, self.upper_detected) if self.status == DRIFT_DETECTED
                     else (self.lower_possible, self.upper_possible))
        return (f"multivariate reconstruction error {self.value:.4g} outside the reference band "
                f"[{low:.4g}, {high:.4g}] over {len(self.features)} features ({self.status})")

    def details(self) -> dict[str, Any]:
        return {"lower_possible": self.lower_possible, "upper_possible": self.upper_possible,
                "lower_detected": self.lower_detected, "upper_detected": self.upper_detected,
                "components": self.components, "features": list(self.features)}


def standardise(matrix: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(n, p) raw values as capped z-scores, non-finite and missing values as 0 (the reference's centre)."""
    present = np.isfinite(matrix)
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.clip((matrix - centre) / scale, -Z_CAP, Z_CAP)  # an overflow to +-inf is capped too
    z[~present] = 0.0
    return z


def uses_residual(model: MultivariateProfile) -> bool:
    """|W^T z|^2 takes p - k dot products, |z|^2 - |V^T z|^2 takes k and the squares: the cheaper form."""
    return len(model.residual) <= len(model.components) + 1


def row_errors(z: np.ndarray, model: MultivariateProfile) -> np.ndarray:
    """Each row's squared distance from the kept subspace (never below 0, as rounding could make it)."""
    if uses_residual(model):
        w = np.asarray(model.residual, dtype=float).reshape(len(model.residual), z.shape[1])
        return np.square(z @ w.T).sum(axis=1)
    v = np.asarray(model.components, dtype=float).reshape(len(model.components), z.shape[1])
    return np.maximum(np.square(z).sum(axis=1) - np.square(z @ v.T).sum(axis=1), 0.0)


def window_error(z: np.ndarray, model: MultivariateProfile) -> WindowError:
    return WindowError(rows=len(z), error_sum=float(row_errors(z, model).sum()) if len(z) else 0.0)


def robust_location_scale(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the median of the finite values, and their IQR in standard deviations of a normal
    (their standard deviation where the IQR is 0, as for a mostly constant column; else 1)."""
    finite = np.where(np.isfinite(matrix), matrix, np.nan)
    some = ~np.all(np.isnan(finite), axis=0) if len(finite) else np.zeros(matrix.shape[1], dtype=bool)
    safe = np.where(some, finite, 0.0) if len(finite) else np.zeros((1, matrix.shape[1]))
    with np.errstate(over="ignore", invalid="ignore"):
        median = np.nan_to_num(np.nanmedian(safe, axis=0))
        q1, q3 = np.nanpercentile(safe, [25, 75], axis=0)
        iqr_scale = (q3 - q1) / _IQR_PER_STD
        std = np.nanstd(safe, axis=0)
    scale = np.where(np.isfinite(iqr_scale) & (iqr_scale > 0), iqr_scale,
                     np.where(np.isfinite(std) & (std > 0), std, 1.0))
    return median, scale


def fit_multivariate(matrix: np.ndarray, features: tuple[str, ...], variance_share: float,
                     chunks: int) -> MultivariateProfile:
    """Standardisation and PCA of the reference (`matrix`: rows x features, NaN for missing)."""
    centre, scale = robust_location_scale(matrix)
    z = standardise(matrix.astype(float, copy=True), centre, scale)
    eigenvalues, vectors = np.linalg.eigh(z.T @ z / max(len(z), 1))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = np.clip(eigenvalues[order], 0.0, None), vectors[:, order]
    total = float(eigenvalues.sum())
    share = np.cumsum(eigenvalues) / total if total > 0 else np.ones(len(eigenvalues))
    # the fewest components reaching the share, and never all of them (the error would always be 0)
    k = min(int(np.searchsorted(share, variance_share - 1e-12) + 1), len(features) - 1)
    model = MultivariateProfile(
        features=features, centre=tuple(map(float, centre)), scale=tuple(map(float, scale)),
        components=tuple(tuple(map(float, c)) for c in vectors[:, :k].T),
        residual=tuple(tuple(map(float, c)) for c in vectors[:, k:].T),
        explained_share=float(share[k - 1]), chunk_errors=(), chunk_rows=0,
    )
    pieces = [idx for idx in np.array_split(np.arange(len(z)), max(min(chunks, len(z)), 1)) if len(idx)]
    errors = [window_error(z[idx], model).mean for idx in pieces]
    return replace(model, chunk_errors=tuple(float(e) for e in errors if e is not None),
                   chunk_rows=int(min(len(i) for i in pieces)) if pieces else 0)


def judge(model: MultivariateProfile, w: WindowError, possible_k: float, detected_k: float) -> MultivariateResult:
    """The window's mean error and its tier against the reference chunks' band (both sides)."""
    value = w.mean
    widen = math.sqrt(max(1.0, model.chunk_rows / w.rows)) if w.rows else 1.0
    centre = model.error_mean
    # a reference whose chunks agree exactly: only a real move, not the last digits of a sum, is drift
    spread = max(model.error_std * widen, 1e-9 * centre, 1e-300)
    status = None
    if value is not None:
        off = abs(value - centre)
        status = (DRIFT_DETECTED if off > detected_k * spread else
                  POSSIBLE_DRIFT if off > possible_k * spread else NO_DRIFT)
    return MultivariateResult(
        value=value, status=status,
        lower_possible=max(centre - possible_k * spread, 0.0), upper_possible=centre + possible_k * spread,
        lower_detected=max(centre - detected_k * spread, 0.0), upper_detected=centre + detected_k * spread,
        components=len(model.components), features=model.features,
    )
