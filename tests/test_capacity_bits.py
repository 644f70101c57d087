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


def test_every_run_records_its_memorised_bits(tmp_path):
    """A real tiny run: result.json's bits agree with its mean loss, an older record's bits are derived the same
    way, and partial labels score only the changed ones."""
    import json

    from rote.api import run
    from rote.experiments.record import read_record

    r = run(n_train=200, epochs=2, model="mlp:16", labels="random", record_examples=False, out=tmp_path / "a")
    res = r.result
    n = res["n_fit"]
    assert res["memorized_bits_scope"] == "all" and res["memorized_bits_scored"] == n
    assert res["memorized_bits"] == pytest.approx(n * math.log2(10) - n * res["train_loss"] / math.log(2), rel=1e-4)
    assert res["bits_per_parameter"] == pytest.approx(res["memorized_bits"] / res["parameters"])
    # a record made before result.json kept bits reads with them, from the same numbers
    old = {k: v for k, v in res.items() if not k.startswith(("memorized_bits", "bits_per"))}
    (tmp_path / "a" / "result.json").write_text(json.dumps(old))
    derived = read_record(tmp_path / "a").result
    assert derived["memorized_bits"] == pytest.approx(res["memorized_bits"], rel=1e-4)

    p = run(n_train=200, epochs=1, model="mlp:16", labels="partial:0.5", record_examples=False, out=tmp_path / "b")
    labels = np.load(tmp_path / "b" / "labels.npy")
    fit = ~labels["validation"]
    assert p.result["memorized_bits_scope"] == "changed"
    assert p.result["memorized_bits_scored"] == int(labels["changed"][fit].sum())
    assert p.result["memorized_bits_of"] == pytest.approx(p.result["memorized_bits_scored"] * math.log2(9))
    t = run(n_train=200, epochs=1, model="mlp:16", labels="true", record_examples=False, out=tmp_path / "c")
    assert t.result["memorized_bits"] is None and t.result["bits_per_parameter"] is None


def test_bits_from_a_mean_loss_is_the_saving_over_the_label_entropy():
    import math

    from rote.analysis.capacity import bits_from_mean_loss

    # 100 labels of 1.5 bits each: a model at p = 1 holds all 150 bits, one at the entropy (in nats) none
    assert bits_from_mean_loss(100, 0.0, 1.5) == pytest.approx(150.0)
    assert bits_from_mean_loss(100, 1.5 * math.log(2), 1.5) == pytest.approx(0.0, abs=1e-9)
