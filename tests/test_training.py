"""Training on the real MNIST files: determinism, memorisation, the true-label control, collapse."""

import math

import numpy as np
import pytest

from rote.config import RunConfig
from rote.data.prepare import prepare
import torch

from rote.models import create_model
from rote.training.loop import train
from rote.training.members import diagnose
from rote.training.records import EpochRecord
from rote.training.stopping import Stopper
from rote.training.metrics import chance_analysis


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


def _plateau(epoch, **diag):
    return EpochRecord(epoch, 0, 2.2996, 0.11, 2.3, 0.1, pred_max_share=1.0, **diag)


def test_a_dead_network_is_collapsed_at_the_first_check(mnist):
    cfg = RunConfig.from_dict({"n_train": 200, "collapse_patience": 1})
    data = prepare(mnist, cfg)
    model = create_model("seed-cnn", in_shape=(1, 28, 28), classes=10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model[-3].bias.fill_(-1e3)  # the dense 512 layer before the last ReLU: no unit can fire
    share, where, spread = diagnose(model.eval(), torch.from_numpy(data.x_fit))
    assert share == 1.0 and where == "dense 512: 512 of 512 units dead" and spread < 1e-5
    s = Stopper(cfg, entropy=2.2996)
    assert s.update(_plateau(3, dead_share=share, dead_layer=where, logit_spread=spread), 1.0)
    assert s.outcome == "collapsed" and "dense 512" in s.message and "since epoch 3" in s.message


def test_a_plateau_that_is_not_dead_goes_on_and_is_called_stalled(mnist):
    cfg = RunConfig.from_dict({"n_train": 200, "epochs": 40, "collapse_patience": 2})
    data = prepare(mnist, cfg)
    model = create_model("seed-cnn", in_shape=(1, 28, 28), classes=10, generator=torch.Generator().manual_seed(0))
    share, where, spread = diagnose(model.eval(), torch.from_numpy(data.x_fit))
    assert share < 1.0 and spread > 1e-3  # a fresh network's logits depend on its input
    s = Stopper(cfg, entropy=2.2996)
    stops = [s.update(_plateau(e, dead_share=share, dead_layer=where, logit_spread=spread), 1.0)
             for e in range(1, 41)]
    assert stops == [False] * 39 + [True] and s.outcome == "budget-spent" and "stalled" in s.message
    assert "since epoch 1" in s.message
    # dead on one check, alive on the next: the count starts again
    s = Stopper(cfg, entropy=2.2996)
    dead = dict(dead_share=1.0, dead_layer="dense 512: 512 of 512 units dead", logit_spread=0.0)
    alive = dict(dead_share=share, dead_layer=where, logit_spread=spread)
    assert [s.update(_plateau(e, **d), 1.0) for e, d in enumerate([dead, alive, dead, dead], 1)] == \
        [False, False, False, True]


def test_a_finite_explosion_is_divergence():
    s = Stopper(RunConfig())
    assert s.update(EpochRecord(1, 0, 1e9, 0.1, 2.3, 0.1), 0.0) and s.outcome == "diverged"


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


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_the_optimisers_one_kernel_per_operation_update_as_one_per_tensor(name):
    # make_optimizer asks for foreach kernels (faster for small models on a CPU): the same numbers
    from rote.training.optim import make_optimizer

    cfg = RunConfig.from_dict(dict(optimizer=name, lr=0.01, momentum=0.9, weight_decay=1e-4))
    base = [torch.randn(20, 7, generator=torch.Generator().manual_seed(0)), torch.randn(7)]
    out = []
    for foreach in (True, False):
        ps = [b.clone().requires_grad_() for b in base]
        opt, gen = make_optimizer(cfg, ps), torch.Generator().manual_seed(1)
        assert opt.defaults["foreach"] is True
        if not foreach:  # the same optimiser, one kernel per tensor
            opt = type(opt)(ps, **{**opt.defaults, "foreach": False})
        for _ in range(30):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        out.append(ps)
    assert all(torch.equal(a, b) for a, b in zip(*out))
