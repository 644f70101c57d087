"""The seed's figure for one run: loss and val_loss against epoch, plus accuracies.

Reads only the run directory (through rote.experiments.record), so it
can be redrawn at any time without retraining. The per-example figures of a
run (``examples.npz``/``scores.csv``) are drawn beside it by
``rote.reporting.examples_figures``.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from rote.experiments.record import read_record
from rote.reporting.results import labels_in_words, setting_in_words
from rote.reporting.style import save, subplots


def run_title(cfg: dict) -> str:
    """'mlp:16 on 180 MNIST images: random labels, original inputs, seed 0'."""
    return (f"{cfg['model']} on {cfg['n_train']:,} {cfg['dataset'].upper() if cfg['dataset'] == 'mnist' else cfg['dataset']}"
            f" images: {labels_in_words(cfg['labels'])}, {setting_in_words('inputs', cfg.get('inputs', 'none'))}, "
            f"seed {cfg['seed']}")


def _points(ep, ys, scale=1.0):
    return [(e, scale * v) for e, v in zip(ep, ys or []) if isinstance(v, float) and v == v]


def plot_run(run_dir: Path, log=None) -> list[Path]:
    """curves.png, and where the run kept its per-example record, examples.png and examples_grid.png
    (rote.reporting.examples_figures); `log` hears why a figure was left out."""
    run_dir = Path(run_dir)
    paths = _plot_curves(run_dir)
    from rote.reporting.examples_figures import plot_examples

    more, notes = plot_examples(run_dir)
    for n in notes:
        if log is not None:
            log(n)
    return paths + more


def _plot_curves(run_dir: Path) -> list[Path]:
    rec = read_record(run_dir)
    h, cfg = rec.history, rec.config
    ep = h.get("epoch", [])
    fig, (ax_loss, ax_acc) = subplots(ncols=2, width=4.2, height=3.2)

    # a log axis: the training loss falls to ~1e-3 while val_loss climbs past 5; on a linear axis
    # val_loss would squash the training loss to a line on zero
    for col, lab, style in (("loss", "loss (training part)", dict(color="C0")),
                            ("val_loss", "val_loss", dict(color="C1")),
                            ("train_loss_full", "full training part, eval mode", dict(color="C0", ls="", marker="o",
                                                                                       ms=3))):
        pts = [(e, v) for e, v in _points(ep, h.get(col)) if v > 0]
        if pts:
            ax_loss.plot(*zip(*pts), label=lab, **style)
    ax_loss.set_yscale("log")
    # one style of number on the whole axis: 0.01, 0.1, 1, 10 (and, over a short range, 2.2, 2.4), never 1e-02
    plain = FuncFormatter(lambda v, _: f"{v:.10g}")
    ax_loss.yaxis.set_major_formatter(plain)
    lo, hi = ax_loss.get_ylim()
    # minor ticks labelled only where the axis spans about one decade (then it may have no major tick)
    ax_loss.yaxis.set_minor_formatter(plain if lo > 0 and hi / lo < 20 else NullFormatter())
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss (nats, log scale)")
    ax_loss.set_title("loss")

    for col, lab, style in (("acc", "acc (training part)", dict(color="C0")),
                            ("val_acc", "val_acc", dict(color="C1")),
                            ("train_acc_full", "full training part, eval mode", dict(color="C0", ls="", marker="o",
                                                                                      ms=3))):
        pts = _points(ep, h.get(col), 100)
        if pts:
            ax_acc.plot(*zip(*pts), label=lab, **style)
    chance = rec.chance_uniform or 0.1
    ax_acc.axhline(100 * chance, color="grey", ls="--", lw=1, label=f"uniform chance ({chance:.0%})")
    if rec.test_acc is not None and ep:
        # the test accuracy is one number, after the last epoch: drawn there, with its chance band there only
        # one step right of the last epoch, so the band is not under the training curves' last points; the band
        # a thick bar and the marker small, so both are seen
        last = max(e for e in ep if e is not None)
        x = last + max(1.0, 0.04 * last)
        band = rec.chance_band
        if None not in band:
            ax_acc.plot([x, x], [100 * band[0], 100 * band[1]], color="0.55", lw=7, solid_capstyle="butt", zorder=1,
                        label=f"95% chance band of the test acc ({100 * band[0]:.1f}-{100 * band[1]:.1f}%)")
        ax_acc.scatter([x], [100 * rec.test_acc], marker="_", s=90, linewidths=2.2, color="C3", zorder=4,
                       label=f"final test acc ({rec.test_acc:.2%})")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(0, 101)
    ax_acc.set_title("accuracy")
    for a in (ax_loss, ax_acc):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    # one legend below both panels: never over the data
    handles, labels = [], []
    for a in (ax_loss, ax_acc):
        for hd, lb in zip(*a.get_legend_handles_labels()):
            if lb not in labels:
                handles.append(hd)
                labels.append(lb)
    fig.suptitle(run_title(cfg), fontsize=10)
    # hung below the figure: tight_layout leaves it out, save's bbox_inches="tight" takes it in
    leg = fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=7.5, frameon=False,
                     bbox_to_anchor=(0.5, 0.0))
    leg.set_in_layout(True)
    return save(fig, run_dir / "curves.png")
