"""K runs trained as one batched model give the same records as the K runs one by one."""

import numpy as np
import pytest

from rote.config import RunConfig
from rote.data.prepare import prepare
from rote.errors import ConfigError
from rote.experiments.grouping import group_runs
from rote.training.loop import train, train_many


# cnn:4 runs through vmap; mlp:16 through the batched matrix products of rote.training.stacked
@pytest.mark.parametrize("model", ["cnn:4", "mlp:16"])
def test_group_matches_separate_runs_including_early_stop(mnist, model):
    # different seeds, labels and budgets; the 'true' run stops after 2 epochs while the others go on
    cfgs = [RunConfig.from_dict(dict(n_train=200, seed=s, epochs=e, stop_at="none", eval_every=1, labels=lab,
                                     model=model))
            for s, e, lab in [(0, 4, "permute"), (1, 2, "true"), (2, 4, "partial:0.5")]]
    datas = [prepare(mnist, c) for c in cfgs]
    grouped = train_many(cfgs, datas)
    for c, d, g in zip(cfgs, datas, grouped):
        s = train(c, d)
        assert (g.epochs, g.outcome) == (s.epochs, s.outcome) == (c.epochs, "budget-spent")
        cols = lambda r: [r.loss, r.acc, r.val_loss, r.val_acc, r.train_loss_full, r.train_acc_full]  # noqa: E731
        np.testing.assert_allclose([cols(r) for r in g.history], [cols(r) for r in s.history], atol=2e-4)
        assert [r.clean_acc for r in g.history] == pytest.approx([r.clean_acc for r in s.history], abs=2e-3)
        assert g.test_loss == pytest.approx(s.test_loss, abs=2e-4)
        assert np.mean(g.test_pred != s.test_pred) < 0.002
        # the per-example losses of the memorised bits are the run's own, also after a member left the group
        np.testing.assert_allclose(g.fit_loss, s.fit_loss, atol=2e-3)


def test_a_group_holds_shared_images_once(mnist):
    from rote.training.loop import _Loop

    # the same first N images, different labels: one copy of the images, one row of labels per run
    cfgs = [RunConfig.from_dict(dict(n_train=200, seed=s, model="mlp:16", labels="permute")) for s in range(3)]
    loop = _Loop(cfgs, [prepare(mnist, c) for c in cfgs], __import__("torch").device("cpu"), keep_weights=False)
    assert loop.t["x_fit"].shape[0] == loop.t["x_test"].shape[0] == 1
    assert loop.t["y_fit"].shape[0] == 3 and loop.xrow["fit"] == [0, 0, 0]


def test_grouping_keeps_incompatible_runs_apart():
    a = [RunConfig.from_dict({"seed": s}) for s in range(5)]
    b = [RunConfig.from_dict({"seed": s, "lr": 0.01}) for s in range(2)]
    c = [RunConfig.from_dict({"seed": 0, "dropout": 0.5})]
    groups = group_runs(a + b + c, 2)
    assert sorted(len(g) for g in groups) == [1, 1, 2, 2, 2]
    assert all(len({x.lr for x in g}) == 1 for g in groups)
    assert [len(g) for g in group_runs(a, 1)] == [1] * 5
    with pytest.raises(ConfigError, match="lr"):
        train_many(a[:1] + b[:1], [])


def test_a_group_cannot_claim_channels_last(mnist):
    cfgs = [RunConfig.from_dict({"n_train": 100, "seed": s, "channels_last": "true", "model": "cnn:4"}) for s in (0, 1)]
    with pytest.raises(ConfigError, match="channels_last"):
        train_many(cfgs, [prepare(mnist, c) for c in cfgs])


def test_only_plain_mlps_take_the_batched_product_path():
    import torch

    from rote.models import create_model
    from rote.training.stacked import stacked_forward, take

    make = lambda m: create_model(m, in_shape=(1, 28, 28), classes=10, dropout=0.0)  # noqa: E731
    assert stacked_forward(make("mlp:16x8")) is not None
    assert stacked_forward(make("cnn:4")) is None and stacked_forward(make("seed-cnn")) is None
    assert stacked_forward(create_model("mlp:16", in_shape=(1, 28, 28), classes=10, dropout=0.5)) is None
    x = torch.randn(3, 7, 1, 2, 2)
    rows, idx = torch.tensor([[0], [2]]), torch.tensor([[6, 1], [0, 0]])
    assert torch.equal(take(x, rows, idx), x[rows, idx])
