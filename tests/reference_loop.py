"""The single-model training loop as it was before training was written once over R models
(commit c9b17ed, `rote/training/loop.py:train`), trimmed to what a default seed-protocol run
uses. tests/test_training.py checks that today's loop at R = 1 gives the same history bit for
bit, on whatever machine the tests run.
"""

import numpy as np
import torch
import torch.nn.functional as F

from rote.config import seeds_for
from rote.models import create_model


@torch.inference_mode()
def _evaluate(model, x, y):
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    preds = []
    for i in range(0, len(x), 1000):
        out = model(x[i:i + 1000])
        total += F.cross_entropy(out, y[i:i + 1000], reduction="sum").to(torch.float64)
        preds.append(out.argmax(1))
    model.train()
    pred = torch.cat(preds)
    return float(total) / len(x), float((pred == y).sum()) / len(x), pred


def reference_train(cfg, data):
    """(history rows, test_loss) of Adam, channels-last, full-train evaluation every epoch."""
    s = seeds_for(cfg.seed)
    init_gen = torch.Generator().manual_seed(s["init"])
    order_gen = torch.Generator().manual_seed(s["order"])
    model = create_model(cfg.model, in_shape=tuple(data.x_fit.shape[1:]), classes=data.classes,
                         init=cfg.init, generator=init_gen).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)

    def put(a):
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t

    x_fit, y_fit, x_val, y_val, x_test, y_test = (put(getattr(data, n)) for n in
                                                  ("x_fit", "y_fit", "x_val", "y_val", "x_test", "y_test"))
    n_fit, rows = len(x_fit), []
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(n_fit, generator=order_gen)
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        hist = torch.zeros(data.classes, dtype=torch.long)
        for i in range(0, n_fit, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb, yb = x_fit[idx], y_fit[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                pred = out.argmax(1)
                loss_sum += loss.detach() * len(idx)
                correct += (pred == yb).sum()
                hist += torch.bincount(pred, minlength=data.classes)
        val_loss, val_acc, _ = _evaluate(model, x_val, y_val)
        f_loss, f_acc, _ = _evaluate(model, x_fit, y_fit)
        rows.append((epoch, float(loss_sum) / n_fit, float(correct) / n_fit, val_loss, val_acc, f_loss, f_acc,
                     float(hist.max()) / n_fit))
    return rows, _evaluate(model, x_test, y_test)[0]
