"""Pure metric tests on tiny hand-made histograms with exact expected values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.stats.contingency import association

from monitoring_lib.drift import metrics
from monitoring_lib.drift.registry import METRICS, get_metric
from monitoring_lib.drift.summaries import bin_counts

EDGES = (0.0, 1.0, 2.0, 3.0, 4.0)  # 4 inner bins + 2 outer slots
CONTEXT = {"edges": EDGES, "ref_std": 1.0, "ref_min": 0.0, "ref_max": 4.0}


def run(name: str, ref: list[float], cur: list[float], **context: object):
    return get_metric(name).compute(np.array(ref, float), np.array(cur, float), **context)


def test_builtins_are_registered_with_their_default_bands():
    bands = {name: (spec.possible, spec.detected) for name, spec in METRICS.items()}
    assert bands == {
        "tvd": (0.1, 0.2), "hellinger": (0.1, 0.15), "kld": (0.1, 0.3), "psi": (0.1, 0.25),
        "jensen_shannon": (0.1, 0.2), "wasserstein": (0.1, 0.25), "ks": (0.1, 0.2), "chi_square": (0.1, 0.2),
    }
    assert METRICS["ks"].kinds == {"numeric"} and METRICS["wasserstein"].inputs == "counts"
    assert METRICS["chi_square"].kinds == {"categorical"}


@pytest.mark.parametrize("name", sorted(METRICS))
def test_identical_distributions_score_zero(name):
    counts = [0, 3, 5, 2, 7, 0] if "categorical" not in METRICS[name].kinds else [3, 5, 2, 7, 0]
    result = run(name, counts, [c * 10 for c in counts], **CONTEXT)
    assert result.value == pytest.approx(0.0, abs=1e-12)
    if result.p_value is not None:
        assert result.p_value == pytest.approx(1.0)


def test_disjoint_distributions_are_maximally_distant():
    ref, cur = [5, 5, 0, 0], [0, 0, 3, 1]
    assert run("tvd", ref, cur).value == pytest.approx(1.0)
    assert run("hellinger", ref, cur).value == pytest.approx(1.0)
    assert run("jensen_shannon", ref, cur).value == pytest.approx(1.0)
    assert run("chi_square", ref, cur).value == pytest.approx(1.0)


def test_hand_computed_values():
    # p = [.5, .5, 0], q = [.25, .25, .5]
    assert run("tvd", [2, 2, 0], [1, 1, 2]).value == pytest.approx(0.5)
    # Bhattacharyya coefficient 2·sqrt(.125) = 1/sqrt(2), so H = sqrt(1 - 1/sqrt(2))
    assert run("hellinger", [2, 2, 0], [1, 1, 2]).value == pytest.approx(math.sqrt(1 - 1 / math.sqrt(2)))
    # p = [.2, .3, .5], q = [.5, .3, .2]: no empty bin, PSI = .3·ln 2.5 − .3·ln .4 = .3·ln 6.25
    assert run("tvd", [2, 3, 5], [5, 3, 2]).value == pytest.approx(0.3)
    assert run("psi", [2, 3, 5], [5, 3, 2]).value == pytest.approx(0.3 * math.log(6.25), rel=1e-4)
    assert run("kld", [2, 3, 5], [5, 3, 2]).value == pytest.approx(0.3 * math.log(6.25), rel=1e-5)


def test_kld_matches_scipy_entropy_both_ways_with_epsilon():
    p, q = np.array([0.5, 0.5, 0.0, 0.0]), np.array([0.1, 0.2, 0.7, 0.0])
    fp = np.where(p > 0, p, metrics.KLD_EPSILON)
    fq = np.where(q > 0, q, metrics.KLD_EPSILON)
    fp, fq = fp / fp.sum(), fq / fq.sum()
    expected = stats.entropy(fp, fq) + stats.entropy(fq, fp)
    assert run("kld", list(p), list(q)).value == pytest.approx(expected, rel=1e-12)


def test_jensen_shannon_matches_scipy_base_2():
    p, q = [1, 4, 0, 5], [3, 1, 2, 4]
    expected = jensenshannon(np.array(p, float), np.array(q, float), base=2)
    assert run("jensen_shannon", p, q).value == pytest.approx(expected, rel=1e-12)


def test_ks_statistic_equals_scipy_on_values_at_bin_midpoints():
    rng = np.random.default_rng(7)
    mids = np.array([0.5, 1.5, 2.5, 3.5])
    a = rng.choice(mids, 400, p=[0.1, 0.4, 0.4, 0.1])
    b = rng.choice(mids, 300, p=[0.25, 0.25, 0.25, 0.25])
    result = run("ks", list(bin_counts(a, EDGES)), list(bin_counts(b, EDGES)))
    assert result.value == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    en = math.sqrt(400 * 300 / 700)
    assert result.p_value == pytest.approx(stats.kstwobign.sf(en * result.value))
    # scipy's asymptotic two-sample p-value uses a finite-n correction; same order of magnitude
    assert result.p_value == pytest.approx(stats.ks_2samp(a, b, method="asymp").pvalue, rel=0.15)


def test_chi_square_matches_scipy_contingency():
    ref, cur = [30, 50, 20, 0], [20, 40, 25, 15]
    expected = stats.chi2_contingency(np.array([ref, cur]), correction=False)
    result = run("chi_square", ref, cur)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    # with equal row totals the value is exactly Cramér's V of the table
    assert result.value == pytest.approx(association(np.array([ref, cur]), method="cramer"), rel=1e-12)


def test_chi_square_value_does_not_depend_on_sample_sizes():
    small = run("chi_square", [30, 50, 20], [20, 40, 40]).value
    large = run("chi_square", [3000, 5000, 2000], [20, 40, 40]).value
    assert small == pytest.approx(large)


def test_wasserstein_hand_computed_and_normalised_by_reference_std():
    # reference mass at midpoints 0.5 and 2.5, interval mass at 1.5 and 2.5: W1 = 0.5·1
    ref, cur = [0, 2, 0, 2, 0, 0], [0, 0, 2, 2, 0, 0]
    assert run("wasserstein", ref, cur, **CONTEXT).value == pytest.approx(0.5)
    assert run("wasserstein", ref, cur, **{**CONTEXT, "ref_std": 2.0}).value == pytest.approx(0.25)
    # mass beyond the edges sits at the last edge (4.0): moving 0.5 of the mass 3.5 → 4.0
    pos = [0.0, 0.5, 1.5, 2.5, 3.5, 4.0]
    ref, cur = [0, 0, 0, 0, 4, 0], [0, 0, 0, 0, 2, 2]
    expected = stats.wasserstein_distance(pos, pos, ref, cur)
    assert run("wasserstein", ref, cur, **CONTEXT).value == pytest.approx(expected) == pytest.approx(0.25)


def test_wasserstein_of_a_constant_reference_grows_with_the_shift():
    """A constant column's narrow band [c - pad, c + pad] lies around its min and max: the outer slots sit
    at the edges, so no neighbouring distance is negative and a larger move never reads smaller."""
    edges = tuple(float(e) for e in np.linspace(1e6 - 1, 1e6 + 1, 11))
    context = {"edges": edges, "ref_std": 0.0, "ref_min": 1e6, "ref_max": 1e6}
    ref = [0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0]
    near = [0, 0, 0, 0, 0, 50, 50, 0, 0, 0, 0, 0]
    beyond = [0] * 11 + [100]
    values = [run("wasserstein", ref, cur, **context).value for cur in (ref, near, beyond)]
    assert values[0] == 0 and 0 < values[1] < values[2] == pytest.approx(1.1)


def test_empty_interval_yields_nan_not_a_number_that_could_be_tiered():
    for name in METRICS:
        assert math.isnan(run(name, [1, 2, 3, 4, 5, 6], [0] * 6, **CONTEXT).value)


def test_unseen_bucket_counts_towards_distance():
    # categorical: the last slot is the unseen bucket, empty in the reference
    assert run("tvd", [5, 5, 0], [4, 4, 2]).value == pytest.approx(0.2)
    assert run("chi_square", [5, 5, 0], [4, 4, 2]).p_value < 1.0
