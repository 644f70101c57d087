"""Comparing two outcome rates: Fisher's exact test and Newcombe's interval against worked values and scipy."""

import itertools

import pytest

from rote.reporting.compare import fisher_exact, rate_difference


def test_fisher_by_hand():
    # 3/3 against 0/3: the only tables as extreme are this one and its mirror, each 1/C(6,3) = 1/20
    assert fisher_exact(3, 3, 0, 3) == pytest.approx(2 / 20)
    assert fisher_exact(2, 4, 2, 4) == pytest.approx(1.0)


def test_fisher_against_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy comes with lifelines in the dev extra")
    for k1, k2 in itertools.product(range(0, 21, 3), range(0, 21, 4)):
        ref = stats.fisher_exact([[k1, 20 - k1], [k2, 20 - k2]]).pvalue
        assert fisher_exact(k1, 20, k2, 20) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_newcombe_hybrid_score_interval_worked_value():
    # Newcombe (1998), Table II example (a): 56/70 against 48/80, difference 0.2 with interval 0.0524 to 0.3339
    d = rate_difference(48, 80, 56, 70)
    assert d.difference == pytest.approx(0.2)
    assert (d.low, d.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert "56/70" in d.words("memorised")
