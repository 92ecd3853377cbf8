"""Built-in drift metrics: pure functions over aligned histograms, registered by name.

Distribution metrics receive two probability vectors over the same slots (outer bins or the unseen
bucket included). Count metrics receive raw counts plus context from the reference profile
(`edges`, `ref_std`, `ref_min`, `ref_max`) because their value or p-value needs sample sizes or bin
positions. An empty side (no non-null values) yields NaN: there is nothing to compare.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import rel_entr

from monitoring_lib.drift.registration import MetricResult, register

KLD_EPSILON = 1e-6
# PSI is the same symmetric divergence as `kld`; the customary PSI floor for empty bins is larger.
PSI_EPSILON = 1e-4

_NAN = MetricResult(float("nan"))


def _empty(*arrays: np.ndarray) -> bool:
    return any(float(np.sum(a)) <= 0 for a in arrays)


def _floored(p: np.ndarray, epsilon: float) -> np.ndarray:
    """Replace empty bins by epsilon and renormalise, so log ratios stay finite."""
    out = np.where(p > 0, p, epsilon)
    return out / out.sum()


@register("tvd", possible=0.1, detected=0.2)
def tvd(p: np.ndarray, q: np.ndarray) -> MetricResult:
    """Total variation distance 0.5·Σ|p−q|, 0 (identical) .. 1 (disjoint)."""
    if _empty(p, q):
        return _NAN
    return MetricResult(float(0.5 * np.abs(p - q).sum()))


@register("hellinger", possible=0.1, detected=0.15)
def hellinger(p: np.ndarray, q: np.ndarray) -> MetricResult:
    """Hellinger distance sqrt(0.5·Σ(√p−√q)²), 0 .. 1."""
    if _empty(p, q):
        return _NAN
    h2 = 0.5 * float(np.square(np.sqrt(p) - np.sqrt(q)).sum())
    return MetricResult(float(np.sqrt(min(max(h2, 0.0), 1.0))))


def _symmetric_kl(p: np.ndarray, q: np.ndarray, epsilon: float) -> float:
    p, q = _floored(p, epsilon), _floored(q, epsilon)
    return float(rel_entr(p, q).sum() + rel_entr(q, p).sum())


@register("kld", possible=0.1, detected=0.3)
def kld(p: np.ndarray, q: np.ndarray) -> MetricResult:
    """Symmetric Kullback-Leibler divergence KL(p‖q)+KL(q‖p), empty bins floored at 1e-6."""
    if _empty(p, q):
        return _NAN
    return MetricResult(_symmetric_kl(p, q, KLD_EPSILON))


@register("psi", possible=0.1, detected=0.25)
def psi(p: np.ndarray, q: np.ndarray) -> MetricResult:
    """Population stability index Σ(q−p)·ln(q/p), empty bins floored at 1e-4."""
    if _empty(p, q):
        return _NAN
    return MetricResult(_symmetric_kl(p, q, PSI_EPSILON))


@register("jensen_shannon", possible=0.1, detected=0.2)
def jensen_shannon(p: np.ndarray, q: np.ndarray) -> MetricResult:
    """Jensen-Shannon distance in base 2 (scipy's `jensenshannon(p, q, base=2)`), 0 .. 1."""
    if _empty(p, q):
        return _NAN
    m = 0.5 * (p + q)
    js = 0.5 * float(rel_entr(p, m).sum() + rel_entr(q, m).sum()) / np.log(2.0)
    return MetricResult(float(np.sqrt(max(js, 0.0))))


def _positions(edges: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Where each slot's mass sits: the first edge, inner-bin midpoints, the last edge (ordered, so
    every distance between neighbours counts positively, even for a constant column's narrow band)."""
    e = np.asarray(edges, dtype=float)
    return np.concatenate(([e[0]], 0.5 * (e[:-1] + e[1:]), [e[-1]]))


@register("wasserstein", kinds=("numeric",), possible=0.1, detected=0.25, inputs="counts")
def wasserstein(
    ref: np.ndarray,
    cur: np.ndarray,
    *,
    edges: tuple[float, ...],
    ref_std: float,
    **_: object,
) -> MetricResult:
    """Earth mover's distance between the binned distributions, in reference standard deviations.

    Mass in the outer bins is placed at the outer edges, so the value is a lower bound for shifts
    beyond them (the outer-bin shares and `ks` still see them in full). A constant reference
    (std 0) is measured in the column's own units.
    """
    if _empty(ref, cur):
        return _NAN
    pos = _positions(edges)
    cdf_gap = np.abs(np.cumsum(ref / ref.sum()) - np.cumsum(cur / cur.sum()))[:-1]
    distance = float(np.sum(cdf_gap * np.diff(pos)))
    scale = ref_std if ref_std and np.isfinite(ref_std) and ref_std > 0 else 1.0
    return MetricResult(distance / scale)


@register("ks", kinds=("numeric",), possible=0.1, detected=0.2, inputs="counts")
def ks(ref: np.ndarray, cur: np.ndarray, **_: object) -> MetricResult:
    """Two-sample Kolmogorov-Smirnov statistic on the binned CDFs, with the asymptotic p-value.

    The statistic is exact when values sit on bin positions and a lower bound otherwise; the
    p-value (Kolmogorov distribution with n·m/(n+m)) is reported, never used for a tier.
    """
    n, m = float(ref.sum()), float(cur.sum())
    if n <= 0 or m <= 0:
        return _NAN
    d = float(np.max(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m)))
    p_value = float(stats.kstwobign.sf(np.sqrt(n * m / (n + m)) * d))
    return MetricResult(d, min(max(p_value, 0.0), 1.0))


@register("chi_square", kinds=("categorical",), possible=0.1, detected=0.2, inputs="counts")
def chi_square(ref: np.ndarray, cur: np.ndarray, **_: object) -> MetricResult:
    """Pearson chi-square test of reference vs interval counts.

    The value is Cramér's V of the 2×k table with both rows weighted equally,
    sqrt(0.5·Σ(p−q)²/(p+q)): 0 .. 1 and independent of how many rows each side has, so it can be
    tiered like the distances. The p-value comes from the real counts (scipy.stats.chi2).
    """
    n, m = float(ref.sum()), float(cur.sum())
    if n <= 0 or m <= 0:
        return _NAN
    keep = (ref + cur) > 0
    table = np.vstack((ref[keep], cur[keep]))
    if table.shape[1] < 2:
        return MetricResult(0.0, 1.0)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float((np.square(table - expected) / expected).sum())
    p_value = float(stats.chi2.sf(statistic, table.shape[1] - 1))
    p, q = ref[keep] / n, cur[keep] / m
    value = float(np.sqrt(0.5 * np.sum(np.square(p - q) / (p + q))))
    return MetricResult(min(value, 1.0), p_value)
