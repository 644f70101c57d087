"""What a test accuracy means next to chance.

A network trained on random labels cannot know which name goes with which
class, so any accuracy it shows on the true test labels is luck. How much luck
is plausible depends on how the network spreads its predictions: it tends to
send whole groups of similar digits to one label, so its luck comes in clumps.
Relabelling its test predictions by random permutations of the class names
keeps those clumps and gives the band of accuracies such a model reaches by
chance; shuffling test labels instead would destroy them and give a far too
narrow (binomial) band.
"""

from __future__ import annotations

import numpy as np

# Files keep the outcome values as they are ("memorized"); what people read is British prose.
OUTCOME_WORDS = {"memorized": "memorised", "budget-spent": "budget spent"}


def outcome_word(outcome) -> str:
    """An outcome as prose spells it: 'memorized' -> 'memorised'; other outcomes as they are."""
    return OUTCOME_WORDS.get(outcome, str(outcome))


def chance_analysis(pred: np.ndarray, truth: np.ndarray, classes: int, *, permutations: int = 1000,
                    seed: int = 0, accuracy: float | None = None) -> dict:
    """Chance levels for a classifier's test predictions.

    uniform:   1/classes, guessing uniformly at random;
    histogram: sum over classes of (predicted share) x (true share), the
               expected accuracy of a predictor with this prediction histogram
               that is independent of the images;
    band:      the 2.5 and 97.5 percentiles of the accuracy after applying
               ``permutations`` random permutations of the class names to pred.
    verdict:   'below', 'within' or 'above' the band, for ``accuracy``
               (default: the accuracy of pred itself).
    """
    pred = np.asarray(pred, dtype=np.int64)
    truth = np.asarray(truth, dtype=np.int64)
    acc = float((pred == truth).mean()) if accuracy is None else float(accuracy)
    pred_share = np.bincount(pred, minlength=classes) / len(pred)
    true_share = np.bincount(truth, minlength=classes) / len(truth)
    # confusion counts make each relabelling O(classes), not O(N)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (pred, truth), 1)
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(classes) for _ in range(permutations)])  # (P, C): class c -> perms[:, c]
    # accuracy after relabelling = sum_c confusion[c, perm[c]] / N
    accs = confusion[np.arange(classes)[None, :], perms].sum(axis=1) / len(pred)
    low, high = (float(v) for v in np.percentile(accs, [2.5, 97.5]))
    verdict = "below" if acc < low else "above" if acc > high else "within"
    return {
        "uniform": 1.0 / classes,
        "histogram": float(pred_share @ true_share),
        "band": [low, high],
        "band_method": f"{permutations} random relabellings of the model's test predictions, 2.5-97.5 percentiles",
        "verdict": verdict,
    }


def chance_sentence(test_acc: float, chance: dict) -> str:
    low, high = chance["band"]
    where = "BELOW" if test_acc < low else "ABOVE" if test_acc > high else "WITHIN"
    return (f"Test accuracy {test_acc:.2%} is {where} chance: a model that predicts this way by luck scores "
            f"{low:.2%}-{high:.2%} (95% band); uniform guessing gives {chance['uniform']:.0%}, "
            f"this model's prediction histogram {chance['histogram']:.2%}.")


def label_entropy(labels: np.ndarray, classes: int) -> float:
    """Entropy (nats) of the label marginal: the loss of a model that ignores its input."""
    p = np.bincount(np.asarray(labels), minlength=classes) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())
