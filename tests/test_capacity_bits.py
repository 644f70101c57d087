"""Memorised bits on hand-made cases."""

import math

import numpy as np
import pytest

from rote.analysis.capacity import label_entropy_bits, memorised_bits


def test_certain_model_on_uniform_random_labels_stores_n_log2_k():
    rng = np.random.default_rng(0)
    n, k = 1000, 10
    given = rng.integers(0, k, n)
    m = memorised_bits("random", np.zeros(n), given, given != 3, k)  # p = 1 for every given label: loss 0
    assert m.bits == pytest.approx(n * math.log2(k)) and m.reference_bits == pytest.approx(n * math.log2(k))
    assert m.scored == n and m.scope == "all"


def test_uniform_predictor_stores_nothing_and_a_worse_one_is_negative():
    n, k = 500, 10
    given = np.arange(n) % k
    m = memorised_bits("random", np.full(n, math.log(k)), given, np.ones(n, bool), k)  # p = 1/K everywhere
    assert m.bits == pytest.approx(0.0, abs=1e-9)
    worse = memorised_bits("random", np.full(n, math.log(2 * k)), given, np.ones(n, bool), k)  # p = 1/(2K)
    assert worse.bits == pytest.approx(-n)


def test_permuted_labels_use_the_marginal():
    # labels 0 (half), 1 and 2 (a quarter each): H = 1.5 bits; the marginal predictor stores 0
    given = np.array([0, 0, 1, 2] * 50)
    marginal = np.array([0.5, 0.25, 0.25])
    assert label_entropy_bits(given, 3) == pytest.approx(1.5)
    loss = -np.log(marginal[given])
    assert memorised_bits("permute", loss, given, np.ones_like(given, bool), 3).bits == pytest.approx(0.0, abs=1e-9)
    certain = memorised_bits("permute", np.zeros(given.size), given, np.ones_like(given, bool), 3)
    assert certain.bits == pytest.approx(1.5 * given.size)


def test_partial_scores_only_the_changed_labels():
    n, k = 100, 10
    given = np.arange(n) % k
    changed = np.zeros(n, bool)
    changed[:30] = True
    loss = np.full(n, 5.0)  # the kept labels' losses do not count
    loss[:30] = 0.0
    m = memorised_bits("partial", loss, given, changed, k)
    assert m.scope == "changed" and m.scored == 30
    assert m.bits == pytest.approx(30 * math.log2(9))
    # uniform over the other nine classes stores nothing
    loss[:30] = math.log(9)
    assert memorised_bits("flip", loss, given, changed, k).bits == pytest.approx(0.0, abs=1e-9)


def test_undefined_cases():
    given = np.zeros(5, int)
    assert memorised_bits("true", np.zeros(5), given, np.zeros(5, bool), 10) is None
    assert memorised_bits("partial", np.zeros(5), given, np.zeros(5, bool), 10) is None
    with pytest.raises(ValueError):
        memorised_bits("random", np.zeros(4), given, np.zeros(5, bool), 10)
