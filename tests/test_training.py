"""Training on the real MNIST files: determinism, memorisation, the true-label control, collapse."""

import math

import numpy as np
import pytest

from rote.config import RunConfig
from rote.data.prepare import prepare
from rote.training.loop import EpochRecord, Stopper, train
from rote.training.metrics import chance_analysis, label_entropy


def _train(mnist, **over):
    cfg = RunConfig.from_dict(over)
    data = prepare(mnist, cfg)
    return cfg, data, train(cfg, data)


def test_same_seed_same_history_bit_for_bit(mnist):
    over = dict(n_train=200, epochs=2, stop_at="none", eval_every=1, seed=4)
    _, da, a = _train(mnist, **over)
    _, db, b = _train(mnist, **over)
    assert np.array_equal(da.labels, db.labels)
    key = lambda r: (r.loss, r.acc, r.val_loss, r.val_acc, r.train_loss_full, r.train_acc_full)  # noqa: E731
    assert [key(r) for r in a.history] == [key(r) for r in b.history]
    assert a.test_loss == b.test_loss and np.array_equal(a.test_pred, b.test_pred)
    _, _, c = _train(mnist, **{**over, "seed": 5})
    assert [key(r) for r in c.history] != [key(r) for r in a.history]


def test_one_run_is_bit_identical_to_the_loop_before_it_was_shared(mnist):
    # the single-model loop as it was before it was written once over R models, kept in tests/
    from reference_loop import reference_train

    cfg = RunConfig.from_dict(dict(n_train=300, epochs=3, seed=0, eval_every=1))
    data = prepare(mnist, cfg)
    rows, test_loss = reference_train(cfg, data)
    res = train(cfg, data)
    assert [(r.epoch, r.loss, r.acc, r.val_loss, r.val_acc, r.train_loss_full, r.train_acc_full, r.pred_max_share)
            for r in res.history] == rows
    assert res.test_loss == test_loss


def test_random_labels_are_memorised_and_test_stays_at_chance(mnist):
    cfg, data, res = _train(mnist, n_train=300, stop_at=0.99, epochs=80, seed=0)
    assert res.outcome == "memorized" and res.memorized_epoch <= 80
    assert res.train_acc >= 0.99
    assert data.changed_fraction > 0.8  # the labels really were scrambled
    low, high = chance_analysis(res.test_pred, data.y_test, 10)["band"]
    assert low <= res.test_acc <= high
    # the stop rule confirmed memorisation on the full training part, in eval mode
    last = res.history[-1]
    assert last.train_acc_full is not None and last.train_acc_full >= 0.99


def test_true_labels_generalise(mnist):
    _, _, res = _train(mnist, n_train=2000, labels="true", epochs=3, stop_at="none")
    assert res.test_acc > 0.85


def test_collapse_is_detected_and_stops_the_run(mnist):
    # with PyTorch's default initialisation, seed 3 on 1,000 images collapses to a one-class predictor
    cfg, data, res = _train(mnist, n_train=1000, init="torch", seed=3, epochs=40, collapse_patience=8)
    assert res.outcome == "collapsed" and res.epochs < 40
    h = label_entropy(data.y_fit, 10)
    assert all(r.pred_max_share >= 0.99 or abs(r.loss - h) < 0.005 for r in res.history[-8:])
    assert res.history[-1].pred_max_share >= 0.9  # and it was predicting (nearly) one class
    assert "collapsed" in res.message
    # a one-class predictor: training accuracy is that class's share
    share = np.bincount(data.y_fit, minlength=10).max() / len(data.y_fit)
    assert res.train_acc <= share + 1e-9


def test_stopper_needs_consecutive_one_class_epochs():
    s = Stopper(RunConfig.from_dict({"collapse_patience": 3}), entropy=2.2996)
    rec = lambda share, loss=1.5: EpochRecord(1, 0, loss, 0.1, 2.3, 0.1, pred_max_share=share)  # noqa: E731
    assert [s.collapsed(rec(x)) for x in (1.0, 1.0, 0.5, 1.0, 1.0, 1.0)] == [False] * 5 + [True]
    assert not Stopper(RunConfig.from_dict({"collapse_patience": 0})).collapsed(rec(1.0))
    # a loss at the label entropy counts even when the predictions spread over a few classes
    s = Stopper(RunConfig.from_dict({"collapse_patience": 3}), entropy=2.2996)
    assert [s.collapsed(rec(0.8, loss)) for loss in (2.2991, 2.2999, 2.2500, 2.2990, 2.2993, 2.2995)] == \
        [False] * 5 + [True]


def test_nan_loss_stops_the_run_and_keeps_history(mnist):
    cfg, data, res = _train(mnist, n_train=200, optimizer="sgd", lr=1e12, momentum=0.9, epochs=20,
                            collapse_patience=0)
    assert res.outcome == "diverged" and "smaller --lr" in res.message
    assert not math.isfinite(res.history[-1].loss) and len(res.history) == res.epochs < 20


@pytest.mark.parametrize("over", [
    {"model": "mlp:64", "optimizer": "sgd", "lr": 0.05, "schedule": "step"},
    {"model": "cnn:4", "augment_shift": 2, "dropout": 0.3, "weight_decay": 1e-4},
    {"inputs": "gaussian", "labels": "partial:0.5", "eval_every": 1},
])
def test_other_settings_train(mnist, over):
    cfg, data, res = _train(mnist, n_train=200, epochs=2, stop_at="none", **over)
    assert res.epochs == 2 and math.isfinite(res.train_loss)
    if over.get("eval_every"):
        assert all(r.clean_acc is not None and r.corrupt_acc is not None for r in res.history)
    if over.get("schedule") == "step":
        assert res.history[1].lr == pytest.approx(0.05 * 0.95)
