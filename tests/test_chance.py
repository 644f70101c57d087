import itertools

import numpy as np

from rote.training.metrics import chance_analysis, chance_sentence, label_entropy


def test_band_matches_brute_force_relabelling():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 400)
    pred = rng.integers(0, 4, 400)
    out = chance_analysis(pred, truth, 4, permutations=2000, seed=1)
    # all 24 relabellings of 4 classes, computed directly on the predictions
    accs = [np.mean(np.array(p)[pred] == truth) for p in itertools.permutations(range(4))]
    assert min(accs) - 1e-12 <= out["band"][0] <= out["band"][1] <= max(accs) + 1e-12
    assert abs(np.mean(accs) - 0.25) < 1e-9  # averaged over every relabelling, any predictor scores 1/C


def test_constant_predictor_band_spans_class_shares():
    truth = np.repeat(np.arange(10), [1135 if c == 1 else 980 for c in range(10)])
    pred = np.ones_like(truth)  # a collapsed network: always '1'
    out = chance_analysis(pred, truth, 10, seed=0)
    shares = np.bincount(truth) / len(truth)
    assert abs(out["histogram"] - shares[1]) < 1e-12
    assert out["band"][0] >= shares.min() - 1e-12 and out["band"][1] <= shares.max() + 1e-12
    assert out["uniform"] == 0.1


def test_verdicts():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, 10000)
    assert chance_analysis(truth, truth, 10)["verdict"] == "above"  # a perfect model
    random_pred = rng.integers(0, 10, 10000)
    assert chance_analysis(random_pred, truth, 10)["verdict"] == "within"
    assert chance_analysis(random_pred, truth, 10, accuracy=0.0)["verdict"] == "below"


def test_band_is_wider_than_binomial_for_clumped_predictions():
    # a model that maps whole true classes to single labels is lucky in clumps
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, 10000)
    mapping = rng.permutation(10)
    pred = mapping[truth]
    low, high = chance_analysis(pred, truth, 10)["band"]
    binomial_halfwidth = 1.96 * np.sqrt(0.1 * 0.9 / 10000)
    assert (high - low) / 2 > 5 * binomial_halfwidth


def test_sentence_and_entropy():
    out = chance_analysis(np.zeros(100, int), np.arange(100) % 10, 10)
    assert "WITHIN" in chance_sentence(0.1, out) and "BELOW" in chance_sentence(0.0, out)
    assert abs(label_entropy(np.arange(1000) % 10, 10) - np.log(10)) < 1e-12
