"""The exact Keras 1 mode: Adam as Keras 1.2 updates, and Keras 1.2's clipped cross-entropy."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from rote.config import RunConfig
from rote.data.prepare import prepare
from rote.training.loop import train
from rote.training.optim import AdamKeras1, keras1_cross_entropy


def keras12_adam(p, grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """A NumPy transcription of keras/optimizers.py (1.2.2), Adam.get_updates."""
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        lr_t = lr * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        p = p - lr_t * m / (np.sqrt(v) + eps)
    return p


def test_adam_keras1_follows_the_keras_update_for_hundreds_of_steps():
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(7, 5))
    # gradients over four orders of magnitude, where eps's place matters most
    grads = [rng.normal(size=(7, 5)) * 10.0 ** rng.uniform(-6, -2) for _ in range(300)]
    p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    opt = AdamKeras1([p])
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    expected = keras12_adam(p0, grads)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-12, atol=1e-15)
    # and it is not what torch.optim.Adam computes: eps sits elsewhere
    q = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    torch_opt = torch.optim.Adam([q], eps=1e-8)
    for g in grads:
        q.grad = torch.tensor(g)
        torch_opt.step()
    assert np.abs(q.detach().numpy() - expected).max() > 1e-6


def test_keras1_loss_value_and_no_gradient_outside_the_clip():
    logits = torch.tensor([[2.0, 0.5, -1.0],    # an ordinary example
                           [-40.0, 0.0, 0.0],   # its label has p ~ 2e-18 < 1e-7: clipped
                           [60.0, 0.0, 0.0]],   # p = 1 - 1e-26 > 1 - 1e-7: clipped at the top
                          dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 0])
    loss = keras1_cross_entropy(logits, y, reduction="none")
    assert loss[0].item() == torch.nn.functional.cross_entropy(logits[:1], y[:1]).item()
    assert loss[1].item() == -math.log(1e-7) and abs(loss[2].item() + math.log(1 - 1e-7)) < 1e-15
    loss.sum().backward()
    g = logits.grad
    np.testing.assert_allclose(g[0].numpy(), (F.softmax(logits[0], -1) - F.one_hot(y[0], 3)).detach().numpy(),
                               atol=1e-12)
    assert torch.all(g[1] == 0) and torch.all(g[2] == 0)  # outside the clip: no gradient at all


def test_the_keras1_mode_trains(mnist):
    cfg = RunConfig.from_dict(dict(n_train=200, epochs=2, stop_at="none", optimizer="adam-keras1", loss="keras1"))
    res = train(cfg, prepare(mnist, cfg))
    assert res.epochs == 2 and math.isfinite(res.train_loss)
