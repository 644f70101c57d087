"""The seed's figure for one run: loss and val_loss against epoch, plus accuracies.

Reads only the run directory (history.csv, result.json, config.json), so it
can be redrawn at any time without retraining.
"""

from __future__ import annotations

import json
from pathlib import Path

from rote.reporting.results import read_history
from rote.reporting.style import save, subplots


def plot_run(run_dir: Path) -> list[Path]:
    run_dir = Path(run_dir)
    h = read_history(run_dir)
    result = json.loads((run_dir / "result.json").read_text()) if (run_dir / "result.json").exists() else {}
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    ep = h.get("epoch", [])
    fig, (ax_loss, ax_acc) = subplots(ncols=2, width=4.2, height=3.2)

    ax_loss.plot(ep, h["loss"], label="loss (training part)", color="C0")
    ax_loss.plot(ep, h["val_loss"], label="val_loss", color="C1")
    full = [(e, v) for e, v in zip(ep, h["train_loss_full"]) if v is not None]
    if full:
        ax_loss.plot(*zip(*full), "o", ms=3, color="C0", label="full training part, eval mode")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss (nats)")
    ax_loss.set_title("loss")
    ax_loss.legend(loc="upper left", framealpha=0.9, fontsize=7.5)

    pct = lambda xs: [None if x is None else 100 * x for x in xs]  # noqa: E731
    ax_acc.plot(ep, pct(h["acc"]), label="acc (training part)", color="C0")
    ax_acc.plot(ep, pct(h["val_acc"]), label="val_acc", color="C1")
    full = [(e, 100 * v) for e, v in zip(ep, h["train_acc_full"]) if v is not None]
    if full:
        ax_acc.plot(*zip(*full), "o", ms=3, color="C0", label="full training part, eval mode")
    chance = result.get("chance", {}).get("uniform", 0.1)
    ax_acc.axhline(100 * chance, color="grey", ls="--", lw=1, label=f"chance ({chance:.0%})")
    if "test_acc" in result:
        ax_acc.axhline(100 * result["test_acc"], color="C3", ls=":", lw=1.2,
                       label=f"final test acc ({result['test_acc']:.2%})")
        low, high = result["chance"]["band"]
        ax_acc.axhspan(100 * low, 100 * high, color="grey", alpha=0.15, lw=0, label="95% chance band")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(0, 101)
    ax_acc.set_title("accuracy")
    ax_acc.legend(loc="center right", framealpha=0.9, fontsize=7.5)
    fig.suptitle(f"{cfg['model']} on {cfg['n_train']} {cfg['dataset']} images, labels '{cfg['labels']}', "
                 f"seed {cfg['seed']}", fontsize=10)
    return save(fig, run_dir / "curves.png")
