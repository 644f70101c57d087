"""rote.analysis on small hand-made records whose answers are worked out in the comments."""

import itertools
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from rote.analysis.detection import DIRECTIONS, auroc, detection_table, precision_at_k, write_detection_csv
from rote.analysis.examples import ExampleRecord, load_examples, save_examples
from rote.analysis.memorization import influence, memorization, subset_masks
from rote.analysis.scores import SCORES, example_scores, write_scores_csv
from rote.errors import ConfigError, DataError

nan = float("nan")

# 5 epochs (rows) x 5 examples (columns)
CORRECT = np.array([
    # ex0 ex1 ex2 ex3 ex4
    [1, 0, 0, 0, 1],  # epoch 1
    [1, 1, 0, 1, 1],  # epoch 2
    [1, 0, 0, 1, 0],  # epoch 3
    [1, 1, 0, 0, 1],  # epoch 4
    [1, 1, 0, 1, 0],  # epoch 5
], dtype=bool)
# ex0: right from epoch 1 on: first 1, for good from 1, no forgetting.
# ex1: first right at 2, wrong at 3, right at 4 and 5: first 2, for good from 4, one event (2 -> 3).
# ex2: never right: first and for good NaN, E = 5 forgetting events by convention.
# ex3: right at 2, 3, wrong at 4, right at 5: first 2, for good from 5, one event (3 -> 4).
# ex4: right 1, 2, wrong 3, right 4, wrong 5: first 1, never for good (last is wrong), two events.

# Values chosen to be exact in float16.
PROB = np.array([
    # ex0   ex1   ex2  ex3  ex4
    [0.25, 0.5, 0.0, 0.5, 0.5],
    [0.75, 0.5, 0.0, 0.5, 0.5],
    [0.25, 0.5, 0.0, 0.5, 0.5],
    [0.75, 0.5, 0.0, 0.5, 0.5],
    [0.5, 0.5, 1.0, 0.5, 0.5],
])
# ex0: mean 0.5; deviations .25, .25, .25, .25, 0 -> variance 4 * .0625 / 5 = .05, std sqrt(.05)
#      (the sample std, dividing by 4, would be .25)
# ex1: mean .5, std 0.  ex2: mean .2, deviations .2 (x4) and .8 -> variance (4 * .04 + .64) / 5 = .16, std .4
MARGIN = np.array([
    [-2.0, 1.0, -4.0, 0.0, 0.0],
    [-1.0, 1.0, -4.0, 0.0, 0.0],
    [0.0, 1.0, -4.0, 0.0, 0.0],
    [1.0, 1.0, -4.0, 0.0, 0.0],
    [2.0, 6.0, -3.0, 0.0, 0.0],
])
# aum: ex0 (−2−1+0+1+2)/5 = 0, ex1 (4 + 6)/5 = 2, ex2 (−16 − 3)/5 = −3.8
EPOCH_ROW = np.arange(1, 6, dtype=float)[:, None]  # (5, 1): 1..5
EL2N = EPOCH_ROW * 0.125 + np.array([0, 0.5, 1.0, 0, 0])  # el2n[e, i] = e / 8 + offset_i
LOSS = EPOCH_ROW + np.array([0.0, 0.25, 0.5, 0.75, 0.0])  # loss[e, i] = e + offset_i

LABEL = np.array([3, 1, 4, 1, 5])
TRUE_LABEL = np.array([3, 2, 4, 7, 5])  # ex1 and ex3 changed
CHANGED = LABEL != TRUE_LABEL


def arrays(**over):
    a = {"correct": CORRECT, "prob": PROB, "margin": MARGIN, "loss": LOSS, "el2n": EL2N,
         "index": np.array([10, 11, 12, 13, 14]), "label": LABEL, "true_label": TRUE_LABEL, "changed": CHANGED}
    return {**a, **over}


REC = ExampleRecord(**arrays())


def same(a, b):
    """Exact equality, NaN equal to NaN."""
    return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)


# --- scores ---------------------------------------------------------------------------------------------------

def test_learning_times_and_forgetting_events_by_hand():
    s = example_scores(REC)
    assert same(s["first_learned"], [1, 2, nan, 2, 1])
    assert same(s["learned_forever"], [1, 4, nan, 5, nan])
    assert s["forgetting_events"].tolist() == [0, 1, 5, 1, 2]
    assert same(s["correctness"], [1.0, 0.6, 0.0, 0.6, 0.6])


def test_confidence_and_population_variability_by_hand():
    s = example_scores(REC)
    assert s["confidence"][:3] == pytest.approx([0.5, 0.5, 0.2], rel=1e-15)
    assert s["variability"][:3] == pytest.approx([math.sqrt(0.05), 0.0, 0.4], rel=1e-12, abs=1e-15)
    assert s["confidence"].dtype == np.float64


def test_aum_el2n_epoch_and_final_loss():
    s = example_scores(REC)
    assert s["aum"][:3] == pytest.approx([0.0, 2.0, -3.8], rel=1e-15)
    # default epoch min(10, E) = 5: 5 / 8 + offset
    assert same(s["el2n"], [0.625, 1.125, 1.625, 0.625, 0.625])
    assert same(example_scores(REC, el2n_epoch=2)["el2n"], [0.25, 0.75, 1.25, 0.25, 0.25])
    assert same(s["final_loss"], [5.0, 5.25, 5.5, 5.75, 5.0])
    assert tuple(s) == SCORES


@pytest.mark.parametrize("epoch", [0, 6])
def test_el2n_epoch_outside_the_record_is_a_config_error(epoch):
    with pytest.raises(ConfigError, match="1 to 5"):
        example_scores(REC, el2n_epoch=epoch)


def test_single_epoch_record():
    rec = ExampleRecord(**{k: (v[:1] if np.ndim(v) == 2 else v) for k, v in arrays().items()})
    s = example_scores(rec)
    # epoch 1 only: [1, 0, 0, 0, 1] correct
    assert same(s["first_learned"], [1, nan, nan, nan, 1])
    assert same(s["learned_forever"], [1, nan, nan, nan, 1])
    assert s["forgetting_events"].tolist() == [0, 1, 1, 1, 0]


def test_scores_csv_reads_back_with_pandas(tmp_path):
    s = example_scores(REC)
    write_scores_csv(tmp_path / "scores.csv", REC, s)
    df = pd.read_csv(tmp_path / "scores.csv")
    exact = pd.read_csv(tmp_path / "scores.csv", float_precision="round_trip")
    assert list(df.columns) == ["index", "label", "true_label", "changed", *SCORES]
    assert df["index"].tolist() == [10, 11, 12, 13, 14]
    assert df["changed"].tolist() == [False, True, False, True, False]
    assert same(df["learned_forever"], [1, 4, nan, 5, nan])
    for name in SCORES:
        assert same(exact[name], s[name]), name  # repr of a float reads back exactly
        # pandas' default parser may differ in the last bit, no more
        assert np.allclose(df[name], s[name], rtol=1e-15, atol=0, equal_nan=True), name


# --- detection ------------------------------------------------------------------------------------------------

def pairwise_auroc(scores, positives):
    """The definition: over all (positive, negative) pairs, 1 if the positive is higher, 1/2 if tied."""
    s = np.where(np.isnan(scores), np.inf, scores)
    p, n = s[positives], s[~positives]
    return np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a in p for b in n])


def test_auroc_with_ties_matches_pair_counting():
    scores = np.array([0.1, 0.4, 0.4, 0.8, 0.4, 0.2])
    pos = np.array([0, 1, 0, 1, 1, 0], dtype=bool)
    # positives .4, .8, .4 against negatives .1, .4, .2:
    # .4 -> 1 + 1/2 + 1, .8 -> 3, .4 -> 2.5: 8 wins of 9 pairs
    assert auroc(scores, pos) == pytest.approx(8 / 9, rel=1e-15)
    assert auroc(scores, pos) == pytest.approx(pairwise_auroc(scores, pos), rel=1e-15)
    assert auroc(-scores, pos) == pytest.approx(1 / 9, rel=1e-15)


def test_auroc_counts_nan_as_most_suspicious():
    scores = np.array([nan, 1.0, 2.0, nan, 0.0])
    pos = np.array([1, 0, 1, 0, 0], dtype=bool)
    # positives inf, 2 against negatives 1, inf, 0: inf -> 1 + 1/2 + 1, 2 -> 1 + 0 + 1: 4.5 of 6
    assert auroc(scores, pos) == pytest.approx(0.75, rel=1e-15)
    assert auroc(scores, pos) == pytest.approx(pairwise_auroc(scores, pos), rel=1e-15)


def test_auroc_random_scores_match_pair_counting():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=40).astype(float)  # many ties
    scores[rng.random(40) < 0.1] = nan
    pos = rng.random(40) < 0.3
    assert auroc(scores, pos) == pytest.approx(pairwise_auroc(scores, pos), rel=1e-12)


def test_auroc_is_nan_without_both_classes():
    assert math.isnan(auroc([1.0, 2.0, 3.0], [False, False, False]))
    assert math.isnan(auroc([1.0, 2.0, 3.0], [True, True, True]))


def test_precision_at_k():
    # no ties: top 2 are .9 (changed) and .8 (not): 1/2
    assert precision_at_k([0.9, 0.8, 0.7, 0.1], [True, False, True, False]) == 0.5
    # k = 3: 5 is changed; the last 2 slots fall in the tie at 4 (3 examples, 1 changed): 2 * 1/3 hits
    scores, pos = [5, 4, 4, 4, 1, 0], np.array([1, 0, 1, 0, 0, 1], dtype=bool)
    assert precision_at_k(scores, pos) == pytest.approx((1 + 2 / 3) / 3, rel=1e-15)
    # the same, averaged over every order of the tied three: 5/9
    means = []
    for order in itertools.permutations([1, 2, 3]):
        means.append((pos[0] + pos[list(order[:2])].sum()) / 3)
    assert precision_at_k(scores, pos) == pytest.approx(np.mean(means), rel=1e-15)
    assert precision_at_k([nan, 0.0, 1.0], [True, False, False], k=1) == 1.0  # NaN first
    assert math.isnan(precision_at_k([1.0, 2.0], [False, False]))
    with pytest.raises(DataError, match="k = 3"):
        precision_at_k([1.0, 2.0], [True, False], k=3)


def test_detection_table_orients_each_score(tmp_path):
    s = example_scores(REC)
    rows = detection_table(s, REC.changed)
    assert [r["score"] for r in rows] == list(SCORES)
    by = {r["score"]: r for r in rows}
    assert set(DIRECTIONS) == set(SCORES)
    # changed = ex1, ex3. first_learned [1, 2, inf, 2, 1]: positives 2, 2 against 1, inf, 1:
    # each 1 + 0 + 1 = 2 wins: 4 of 6. Top 2: inf (unchanged), then one slot in the tie 2, 2 (both changed): 1/2
    assert by["first_learned"]["auroc"] == pytest.approx(4 / 6, rel=1e-15)
    assert by["first_learned"]["precision_at_k"] == 0.5
    # aum is oriented lower-first: -aum = [0, -2, 3.8, 0, 0]; positives -2, 0 against 0, 3.8, 0:
    # -2 -> 0, 0 -> 1/2 + 0 + 1/2 = 1: 1 of 6
    assert by["aum"]["direction"] == -1
    assert by["aum"]["auroc"] == pytest.approx(1 / 6, rel=1e-15)
    assert (by["aum"]["k"], by["aum"]["n"]) == (2, 5)

    write_detection_csv(tmp_path / "detection.csv", rows)
    df = pd.read_csv(tmp_path / "detection.csv")
    assert list(df.columns) == ["score", "direction", "auroc", "precision_at_k", "k", "n"]
    assert df["auroc"].tolist()[0] == pytest.approx(4 / 6, rel=1e-15)


def test_detection_without_changed_labels_is_nan_not_an_error():
    rows = detection_table(example_scores(REC), np.zeros(5, dtype=bool))
    assert all(math.isnan(r["auroc"]) and math.isnan(r["precision_at_k"]) and r["k"] == 0 for r in rows)


# --- memorisation ---------------------------------------------------------------------------------------------

MASKS = np.array([
    # ex0 ex1 ex2 ex3
    [1, 1, 1, 1],  # model 0
    [1, 0, 1, 1],
    [1, 1, 1, 1],
    [0, 0, 1, 1],
    [0, 1, 0, 1],
    [0, 0, 0, 1],  # model 5
], dtype=bool)
MODEL_CORRECT = np.array([
    [1, 1, 1, 1],
    [1, 0, 1, 0],
    [1, 1, 0, 1],
    [1, 0, 1, 0],
    [1, 1, 1, 1],
    [1, 0, 0, 0],
], dtype=bool)
# ex0: always right, in or out: mem 0, se 0.
# ex1: right exactly when in: p1 = 1, p0 = 0: mem 1, se 0.
# ex2: in for models 0-3, right in 3 of 4 (p1 = 3/4); out for 4, 5, right in 1 of 2 (p0 = 1/2):
#      mem 1/4, se = sqrt(3/4 * 1/4 / 4 + 1/2 * 1/2 / 2) = sqrt(0.171875)
# ex3: in every subset, never out: NaN.


def test_memorization_by_hand():
    mem, se = memorization(MASKS, MODEL_CORRECT)
    assert same(mem, [0.0, 1.0, 0.25, nan])
    assert se[:3] == pytest.approx([0.0, 0.0, math.sqrt(0.171875)], rel=1e-15, abs=0)
    assert math.isnan(se[3])


def test_influence_by_hand_and_its_diagonal_is_memorization():
    test_correct = MASKS[:, [1, 0]] & True  # test j0 right exactly when ex1 is in, j1 when ex0 is in
    infl = influence(MASKS, test_correct)
    assert infl.shape == (4, 2) and infl.dtype == np.float32
    assert infl[1, 0] == 1.0 and infl[0, 1] == 1.0
    # ex0 in models 0-2: j0 right in 0, 2 (2/3); out 3-5: right in 4 (1/3): 1/3
    assert infl[0, 0] == pytest.approx(1 / 3, rel=1e-6)
    assert np.isnan(infl[3]).all()
    mem, _ = memorization(MASKS, MODEL_CORRECT)
    assert same(np.diag(influence(MASKS, MODEL_CORRECT)), mem)


def test_memorization_shape_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="shape of masks"):
        memorization(MASKS, MODEL_CORRECT[:, :3])
    with pytest.raises(DataError, match="K = 6"):
        influence(MASKS, MODEL_CORRECT[:5])


def test_subset_masks():
    m = subset_masks(10, 8, 0.7, seed=3)
    assert m.shape == (8, 10) and m.dtype == bool
    assert m.sum(axis=1).tolist() == [7] * 8
    assert np.array_equal(m, subset_masks(10, 8, 0.7, seed=3))
    assert not np.array_equal(m, subset_masks(10, 8, 0.7, seed=4))
    assert len({r.tobytes() for r in m}) > 1  # each model draws its own subset
    with pytest.raises(ConfigError):
        subset_masks(10, 8, 1.0, seed=0)


# --- the record -----------------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    written = save_examples(tmp_path, **arrays())
    rec = load_examples(tmp_path)  # a run directory finds examples.npz in it
    assert (tmp_path / "examples.npz").is_file()
    for name in ("correct", "prob", "margin", "loss", "el2n", "index", "label", "true_label", "changed"):
        assert np.array_equal(getattr(rec, name), getattr(written, name)), name
    assert rec.prob.dtype == np.float16 and rec.correct.dtype == bool and rec.index.dtype == np.int64
    assert (rec.epochs, rec.n) == (5, 5)
    assert same(example_scores(rec)["learned_forever"], [1, 4, nan, 5, nan])


def test_shape_mismatch_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"'prob' has shape \(4, 5\)"):
        save_examples(tmp_path / "examples.npz", **arrays(prob=PROB[:4]))
    with pytest.raises(DataError, match="'label' has shape"):
        ExampleRecord(**arrays(label=LABEL[:4]))
    # a file written by something else is checked on reading
    np.savez(tmp_path / "bad.npz", **arrays(margin=MARGIN[:, :3]))
    with pytest.raises(DataError, match=r"bad.npz: examples: 'margin' has shape \(5, 3\)"):
        load_examples(tmp_path / "bad.npz")


def test_invalid_records_are_data_errors(tmp_path):
    # ex3 changed (1 != 7) but is not marked
    with pytest.raises(DataError, match="disagrees with label != true_label for 1 examples"):
        ExampleRecord(**arrays(changed=np.array([0, 1, 0, 0, 0], dtype=bool)))
    a = arrays()
    del a["loss"]
    np.savez(tmp_path / "short.npz", **a)
    with pytest.raises(DataError, match=r"missing arrays \['loss'\]"):
        load_examples(tmp_path / "short.npz")
    with pytest.raises(DataError, match="cannot read"):
        load_examples(tmp_path / "absent.npz")


def test_analysis_imports_no_training_side_modules():
    code = ("import sys, rote.analysis.examples, rote.analysis.scores, rote.analysis.detection, "
            "rote.analysis.memorization; "
            "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
            "(['rote', 'experiments'], ['rote', 'cli'], ['rote', 'reporting']) or m == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
