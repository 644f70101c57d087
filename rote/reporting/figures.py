"""The figures of a sweep, drawn from its store alone (Zhang et al. 2017, Fig. 1, and more).

Each figure is a function registered with ``@figure(name, title)``; FIGURES
holds them in the order they are drawn and shown. Every figure the store's
data supports is drawn, as PNG and SVG; one it cannot support raises Skip,
and is left out with a note saying why.

Lines are means over seeds; shaded bands are min-max over seeds (curves) and
error bars mean ± std over seeds (per-condition numbers); dots are single runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from matplotlib.ticker import MaxNLocator

from rote.config import fit_threshold
from rote.data.corruption import parse_label_corruption
from rote.errors import ConfigError
from rote.reporting.results import OUTCOMES, Condition, SweepData, fit_epoch, fmt_value, load, mean_std
from rote.reporting.style import (OUTCOME_COLORS, OUTCOME_MARKERS, RC, condition_color, legend, plt, save,
                                  subplots)


@dataclass(frozen=True)
class Figure:
    name: str  # also the file name
    title: str
    draw: Callable[[SweepData], tuple]  # -> (matplotlib figure, caption); raises Skip


FIGURES: dict[str, Figure] = {}


def figure(name: str, title: str):
    """Register the decorated drawer as the figure `name`."""
    def register(draw):
        FIGURES[name] = Figure(name, title, draw)
        return draw
    return register


@dataclass
class FigureResult:
    name: str
    paths: list  # [Path], .png first
    caption: str


class Skip(Exception):
    """A figure the store's data cannot support; the message says why."""


# -- helpers -----------------------------------------------------------------------


def corruption_level(labels: str) -> Optional[float]:
    """The P of partial:P / flip:P; true labels are 0, random and permuted labels 1."""
    try:
        c = parse_label_corruption(str(labels))
    except ConfigError:
        return None
    return {"true": 0.0, "random": 1.0, "permute": 1.0}.get(c.kind, c.p)


def _label_kind(labels: str) -> str:
    return str(labels).partition(":")[0]


def _series(data: SweepData, field: str, xfunc: Callable[[Condition], Optional[float]]):
    """Conditions grouped into lines along `field`: [(label, [(x, condition), ...]), ...]."""
    others = [k for k in data.varying if k != field]
    groups: dict[tuple, list] = {}
    for c in data.conditions:
        x = xfunc(c)
        if x is None:
            continue
        key = tuple((k, fmt_value(c.settings.get(k))) for k in others)
        groups.setdefault(key, []).append((x, c))
    out = []
    for key, items in groups.items():
        label = ", ".join(f"{k}={v}" for k, v in key)
        if field == "labels":
            # partial:P and flip:P are different corruptions: one line each, sharing the end points
            fams = sorted({_label_kind(c.settings["labels"]) for _, c in items} & {"partial", "flip"})
            if len(fams) > 1:
                for fam in fams:
                    sub = [(x, c) for x, c in items if _label_kind(c.settings["labels"]) not in set(fams) - {fam}]
                    out.append(((label + ", " if label else "") + f"{fam}:P", sorted(sub, key=lambda t: t[0])))
                continue
        out.append((label, sorted(items, key=lambda t: t[0])))
    return out


def _jitter_lin(levels):
    """Runs at one x side by side, 1.2% of the x range apart."""
    d = 0.012 * ((max(levels) - min(levels)) or 1.0)
    return lambda x, j, n: x + (j - (n - 1) / 2) * d


def _jitter_log(x, j, n):
    return x * 10 ** ((j - (n - 1) / 2) * 0.012)


class _MeanLine:
    """Values collected per x, drawn as mean ± std over seeds with error bars."""

    def __init__(self):
        self.x, self.mean, self.std = [], [], []

    def add(self, x, values):
        if values:
            m, s = mean_std(values)
            self.x.append(x)
            self.mean.append(m)
            self.std.append(s or 0.0)

    def draw(self, ax, color, label):
        if self.x:
            ax.errorbar(self.x, self.mean, yerr=self.std, color=color, marker="o", ms=5, lw=1.5, capsize=3,
                        zorder=4, label=label)


def _per_epoch(data: SweepData, runs, column: str, scale: float = 1.0) -> dict[int, list]:
    """The finite values of a history column in each epoch, over runs."""
    per: dict = {}
    for r in runs:
        h = data.history(r)
        for e, v in zip(h.get("epoch", []), h.get(column, [])):
            if e is not None and v is not None and math.isfinite(v):
                per.setdefault(int(e), []).append(scale * v)
    return per


def _mean_and_range(ax, per: dict, n_runs: int, color, alpha: float, **kw):
    """A _per_epoch dict drawn as its mean, shaded min-max when there are several runs."""
    ep = sorted(per)
    ax.plot(ep, [sum(per[e]) / len(per[e]) for e in ep], color=color, lw=1.6, **kw)
    if n_runs > 1:
        ax.fill_between(ep, [min(per[e]) for e in ep], [max(per[e]) for e in ep], color=color, alpha=alpha, lw=0)


def _not_fit_proxies(ax, kinds: set):
    """Legend entries for the runs that did not memorise."""
    if "unfinished" in kinds:
        ax.scatter([], [], marker="o", s=30, facecolors="none", edgecolors="0.3", lw=1.2,
                   label="did not fit within budget")
    if kinds & {"collapsed", "diverged"}:
        ax.scatter([], [], marker="x", s=30, color="0.3", lw=1.2, label="collapsed / diverged (at its last epoch)")


def _draw_fit(ax, series, jitter, *, scale=None, mean_label="mean ± std of the runs that memorised") -> set:
    """Epochs to memorise per condition: dots per run, mean ± std of the runs that memorised.

    scale: per-series divisor (relative plots) or None. Returns the outcomes of runs drawn hollow.
    """
    missed: set = set()
    ns = len(series)
    for si, (label, items) in enumerate(series):
        color = condition_color(si)
        div = 1.0 if scale is None else scale[si]
        if div is None:
            continue
        line = _MeanLine()
        for x, c in items:
            fitted = []
            n = len(c.runs)
            for j, r in enumerate(c.runs):
                e = fit_epoch(r)[0]
                xj = jitter(x, si * n + j, ns * n)  # the runs of all series side by side
                if e is not None:
                    fitted.append(e / div)
                    ax.scatter([xj], [e / div], s=14, color=color, alpha=0.55, lw=0, zorder=3)
                else:
                    outcome = r["result"].get("outcome", "unfinished")
                    y = (r["result"].get("epochs") or r["config"]["epochs"]) / div
                    if outcome in ("collapsed", "diverged"):
                        missed.add(outcome)
                        ax.scatter([xj], [y], marker="x", s=30, color=color, lw=1.2, zorder=3)
                    else:
                        missed.add("unfinished")
                        ax.scatter([xj], [y], marker="o", s=30, facecolors="none", edgecolors=color, lw=1.2,
                                   zorder=3)
            line.add(x, fitted)
        if line.x:
            line.draw(ax, color, label or mean_label)
        elif label:
            ax.plot([], [], color=color, marker="o", ms=5, lw=1.5, label=label)
    return missed


def _budget_line(ax, conditions):
    budgets = {c.settings.get("epochs") for c in conditions}
    all_fit = all(r["result"].get("outcome") == "memorized" for c in conditions for r in c.runs)
    if len(budgets) == 1 and not all_fit:  # a far-off budget line only squashes the data
        b = budgets.pop()
        ax.axhline(b, color="0.5", ls=":", lw=1, label=f"epoch budget ({b})", zorder=1)


def _level_ticks(ax, levels, kinds_at):
    ax.set_xticks(levels)
    ax.set_xticklabels([f"{x:g}" + (f"\n{kinds_at[x]}" if x in kinds_at else "") for x in levels])


def _levels(series):
    levels = sorted({x for _, items in series for x, _ in items})
    kinds_at = {}
    for _, items in series:
        for x, c in items:
            k = _label_kind(c.settings["labels"])
            if k in ("true", "random", "permute"):
                kinds_at.setdefault(x, set()).add(k)
    return levels, {x: "/".join(sorted(v)) for x, v in kinds_at.items()}


# -- the figures ---------------------------------------------------------------------


@figure("learning_curves", "Learning curves")
def learning_curves(data: SweepData):
    if not any(data.history(r).get("loss") for r in data.records):
        raise Skip("no run has a history.csv with training loss")
    fig, (ax,) = subplots(width=5.0 if len(data.conditions) > 6 else 4.4, height=3.2)
    for c in data.conditions:
        per = _per_epoch(data, c.runs, "loss")
        if per:
            _mean_and_range(ax, per, len(c.runs), condition_color(c.index), alpha=0.18, label=c.label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("training loss (cross-entropy, nats)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.set_title("Learning curves")
    legend(ax)
    caption = ("Training loss (mean over the epoch's batches) against epoch for each condition: mean over seeds, "
               "shaded min-max over seeds; where runs stopped early (memorised or collapsed) the mean is over the "
               "seeds still running. Cf. Zhang et al. 2017, Fig. 1a.")
    return fig, caption


def _corruption_series(data: SweepData):
    if "labels" not in data.varying:
        raise Skip("needs a sweep over label corruption (labels takes one value here)")
    series = _series(data, "labels", lambda c: corruption_level(c.settings["labels"]))
    levels = {x for _, items in series for x, _ in items}
    if len(levels) < 2:
        raise Skip("needs at least two label corruption levels (true = 0, random = 1)")
    return series


CORRUPTION_X = "label corruption P"


@figure("time_to_fit", "Time to memorise")
def time_to_fit(data: SweepData):
    series = _corruption_series(data)
    levels, kinds_at = _levels(series)
    # per series, the mean epochs to memorise true labels (or partial:0 / flip:0, which are the same)
    base = [mean_std(fit_epoch(r)[0] for x, c in items if x == 0 for r in c.runs)[0] for _, items in series]
    relative = any(b is not None for b in base)
    fig, axes = subplots(ncols=2 if relative else 1, width=3.8, height=3.2)
    jit = _jitter_lin(levels)
    ax = axes[0]
    missed = _draw_fit(ax, series, jit)
    _budget_line(ax, data.conditions)
    _not_fit_proxies(ax, missed)
    ax.set_xlabel(CORRUPTION_X)
    ax.set_ylabel("epochs to memorise")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Time to memorise")
    _level_ticks(ax, levels, kinds_at)
    if not relative:
        legend(ax, fontsize=7.5)
    else:
        ax2 = axes[1]
        _draw_fit(ax2, series, jit, scale=base)
        ax2.axhline(1.0, color="0.5", lw=1, ls="--", label="true labels = 1")
        ax2.set_xlabel(CORRUPTION_X)
        ax2.set_ylabel("time to memorise (true labels = 1)")
        ax2.set_ylim(bottom=0)
        ax2.set_title("Relative to true labels")
        _level_ticks(ax2, levels, kinds_at)
        legend(ax2, sources=[ax], fontsize=7.5, outside=True)
    caption = ("Epochs until the whole training set is fitted, against the share of corrupted labels: dots are "
               "runs, markers with bars the mean ± std of the runs that memorised; hollow circles are runs that "
               "did not fit within their epoch budget, drawn at the epoch they stopped"
               + ("; right: divided by the mean for true labels" if relative else "")
               + ". Cf. Zhang et al. 2017, Fig. 1b.")
    return fig, caption


@figure("test_error", "Test error against label corruption")
def test_error(data: SweepData):
    series = _corruption_series(data)
    if not any(r["result"].get("test_acc") is not None for r in data.records):
        raise Skip("no run has a test accuracy")
    levels, kinds_at = _levels(series)
    jit = _jitter_lin(levels)
    fig, (ax,) = subplots(width=4.4, height=3.2)
    uniform = mean_std((r["result"].get("chance") or {}).get("uniform") for r in data.records)[0] or 0.1
    ax.axhline(100 * (1 - uniform), color="0.3", ls="--", lw=1,
               label=f"uniform guessing ({100 * (1 - uniform):.0f}% error)")
    # the chance band of each level, mean over all its runs (the band hardly depends on anything else)
    band_at: dict = {}
    for r in data.records:
        x = corruption_level(r["config"].get("labels"))
        b = (r["result"].get("chance") or {}).get("band")
        if x is not None and b and None not in b:
            band_at.setdefault(x, []).append(b)
    if band_at:
        bx = sorted(band_at)
        ax.fill_between(bx, [100 * (1 - sum(b[1] for b in band_at[x]) / len(band_at[x])) for x in bx],
                        [100 * (1 - sum(b[0] for b in band_at[x]) / len(band_at[x])) for x in bx],
                        color="0.5", alpha=0.22, lw=0, label="95% chance band (relabelled predictions)")
    for si, (label, items) in enumerate(series):
        color = condition_color(si)
        line = _MeanLine()
        for x, c in items:
            errs = []
            for j, r in enumerate(c.runs):
                acc = r["result"].get("test_acc")
                if acc is None:
                    continue
                errs.append(100 * (1 - acc))
                ax.scatter([jit(x, j, len(c.runs))], [errs[-1]], s=14, color=color, alpha=0.55, lw=0, zorder=3)
            line.add(x, errs)
        line.draw(ax, color, label or "test error, mean ± std over seeds")
    ax.set_ylim(0, 100)
    ax.set_xlabel(CORRUPTION_X)
    ax.set_ylabel("test error (%)")
    ax.set_title("Generalisation")
    _level_ticks(ax, levels, kinds_at)
    legend(ax, fontsize=7.5)
    caption = ("Test error (1 - test accuracy, true test labels) against the share of corrupted training labels, "
               "mean ± std over seeds with single runs as dots; the dashed line is uniform guessing, the shaded "
               "band the 95% range reached by chance by a model that predicts this way (random relabellings of its "
               "test predictions). Cf. Zhang et al. 2017, Fig. 1c.")
    return fig, caption


@figure("capacity", "Capacity: training set size")
def capacity(data: SweepData):
    if "n_train" not in data.varying:
        raise Skip("needs a sweep over n_train (n_train takes one value here)")
    series = _series(data, "n_train", lambda c: float(c.settings["n_train"]))
    ns = sorted({x for _, items in series for x, _ in items})
    if len(ns) < 2:
        raise Skip("needs at least two values of n_train")
    fig, (ax_acc, ax_ep) = subplots(ncols=2, width=3.8, height=3.2)
    thresholds = set()
    claims = []
    for si, (label, items) in enumerate(series):
        color = condition_color(si)
        line = _MeanLine()
        for x, c in items:
            thresholds.add(fit_threshold(c.settings.get("stop_at")))
            accs = []
            for j, r in enumerate(c.runs):
                a = r["result"].get("train_acc")
                if a is None:
                    continue
                accs.append(100 * a)
                mem = r["result"].get("outcome") == "memorized"
                ax_acc.scatter([_jitter_log(x, j, len(c.runs))], [100 * a], s=22 if not mem else 14, zorder=3,
                               facecolors=color if mem else "none", edgecolors=color, lw=1.0,
                               alpha=0.6 if mem else 1.0)
            line.add(x, accs)
        line.draw(ax_acc, color, label or "mean ± std over seeds")
        every = {x: all(r["result"].get("outcome") == "memorized" for r in c.runs) for x, c in items}
        all_mem, not_all = [x for x in every if every[x]], [x for x in every if not every[x]]
        claim = (f"every seed memorised up to N={int(max(all_mem))}" if all_mem else "no N had every seed memorise")
        if not_all:
            claim += f", not every seed at N={int(min(not_all))}"
        claims.append((f"{label}: " if label else "") + claim)
    for t in sorted(thresholds):
        ax_acc.axhline(100 * t, color="0.4", ls="-.", lw=1, label=f"memorisation threshold ({100 * t:.1f}%)")
    ax_acc.scatter([], [], s=30, facecolors="none", edgecolors="0.3", lw=1.2, label="did not fit within budget")
    ax_acc.set_xscale("log")
    ax_acc.set_xlabel("training images N (log scale)")
    ax_acc.set_ylabel("final training accuracy (%)")
    ax_acc.set_ylim(top=100.4)
    ax_acc.set_title("Fit at the end of training")
    missed = _draw_fit(ax_ep, series, _jitter_log, mean_label="mean ± std over seeds")
    _budget_line(ax_ep, data.conditions)
    _not_fit_proxies(ax_ep, missed)
    ax_ep.set_xscale("log")
    ax_ep.set_xlabel("training images N (log scale)")
    ax_ep.set_ylabel("epochs to memorise")
    ax_ep.set_ylim(bottom=0)
    ax_ep.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_ep.set_title("Time to memorise")
    for a in (ax_acc, ax_ep):
        a.set_xticks(ns)
        a.set_xticklabels([f"{int(n):,}" for n in ns])
        a.minorticks_off()
    legend(ax_ep, sources=[ax_acc], fontsize=7.5, outside=True)
    caption = ("Final accuracy on the training part and epochs to memorise it, against the number of training "
               "images (log scale); hollow markers are runs that did not memorise within their epoch budget. "
               + "; ".join(claims) + ".")
    return fig, caption


@figure("clean_vs_corrupt", "Kept vs changed labels")
def clean_vs_corrupt(data: SweepData):
    conds = [c for c in data.conditions if _label_kind(c.settings.get("labels", "")) in ("partial", "flip")]
    if not conds:
        raise Skip("needs runs with partial:P or flip:P labels")
    have = [c for c in conds if any(all(any(v is not None for v in data.history(r).get(col, []))
                                        for col in ("clean_acc", "corrupt_acc")) for r in c.runs)]
    if not have:
        raise Skip("no partial/flip run evaluated its full training part "
                   "(run with eval_every 1 to record clean_acc and corrupt_acc)")
    fig, (ax,) = subplots(width=5.0 if len(have) > 3 else 4.4, height=3.2)
    for c in have:
        color = condition_color(c.index)
        for col, ls in (("clean_acc", "-"), ("corrupt_acc", "--")):
            per = _per_epoch(data, c.runs, col, scale=100)
            if per:
                _mean_and_range(ax, per, len(c.runs), color, alpha=0.15, ls=ls, marker="o" if len(per) < 12 else None,
                                ms=3, label=c.label if col == "clean_acc" else None)
    ax.plot([], [], color="0.3", ls="-", label="kept labels (clean)")
    ax.plot([], [], color="0.3", ls="--", label="changed labels (corrupted)")
    ax.set_ylim(0, 101)
    ax.set_xlim(left=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("training accuracy on its labels (%)")
    ax.set_title("Kept vs changed labels")
    legend(ax, fontsize=7.5)
    caption = ("Accuracy against the training labels, on the examples whose label was kept (solid) and on those "
               "whose label was changed (dashed), evaluated on the whole training part in eval mode after each "
               "epoch: mean over seeds, shaded min-max.")
    return fig, caption


@figure("seed_outcomes", "Outcome per seed")
def seed_outcomes(data: SweepData):
    if len(data.conditions) != 1:
        raise Skip(f"drawn for a sweep over the seeds of one condition; this one has "
                   f"{len(data.conditions)} conditions")
    c = data.conditions[0]
    if len(c.runs) < 2:
        raise Skip("needs at least two seeds")
    fig, (ax, ax_tr) = subplots(ncols=2, width=3.8, height=3.2)
    xs = list(range(len(c.runs)))
    seen = set()
    uniform = None
    for x, r in zip(xs, c.runs):
        res = r["result"]
        outcome = res.get("outcome", "unfinished")
        color = OUTCOME_COLORS.get(outcome, "0.3")
        marker = OUTCOME_MARKERS.get(outcome, "o")
        chance = res.get("chance") or {}
        uniform = chance.get("uniform", uniform)
        band = chance.get("band")
        if band and None not in band:
            ax.vlines(x, 100 * band[0], 100 * band[1], color="0.6", lw=7, alpha=0.45, zorder=1,
                      label="95% chance band" if x == 0 else None)
        lab = outcome if outcome not in seen else None
        seen.add(outcome)
        if res.get("test_acc") is not None:
            ax.scatter([x], [100 * res["test_acc"]], color=color, marker=marker, s=36, zorder=3, label=lab,
                       edgecolors="white", lw=0.5)
        if res.get("train_acc") is not None:
            ax_tr.scatter([x], [100 * res["train_acc"]], color=color, marker=marker, s=36, zorder=3,
                          edgecolors="white", lw=0.5)
            e = fit_epoch(r)[0]
            if e is not None:
                ax_tr.annotate(f"{e}", (x, 100 * res["train_acc"]), textcoords="offset points", xytext=(0, -7),
                               ha="center", va="top", fontsize=7, color="0.25")
    if uniform is not None:
        ax.axhline(100 * uniform, color="0.3", ls="--", lw=1, label=f"uniform chance ({100 * uniform:.0f}%)")
    stop = fit_threshold(c.settings.get("stop_at"))
    ax_tr.axhline(100 * stop, color="0.4", ls="-.", lw=1, label=f"memorisation threshold ({100 * stop:.1f}%)")
    for a in (ax, ax_tr):
        a.set_xticks(xs)
        a.set_xticklabels([str(s) for s in c.seeds])
        a.set_xlabel("seed")
        a.set_xlim(-0.7, len(xs) - 0.3)
        a.grid(axis="x", visible=False)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy vs chance")
    lo = min([100 * r["result"]["train_acc"] for r in c.runs if r["result"].get("train_acc") is not None]
             + [100 * stop])
    ax_tr.set_ylim(max(0.0, lo - 0.15 * (100 - lo) - 1), 100.4)
    ax_tr.set_ylabel("final training accuracy (%)")
    ax_tr.set_title("Fit of the training set")
    legend(ax_tr, sources=[ax], fontsize=7.5, outside=True)
    counts = ", ".join(f"{sum(r['result'].get('outcome') == o for r in c.runs)} {o}" for o in OUTCOMES
                       if any(r["result"].get("outcome") == o for r in c.runs))
    caption = (f"Each seed of {c.label}: left, test accuracy (true test labels) with the 95% band a model "
               f"predicting this way reaches by chance and the uniform-guessing line; right, final training "
               f"accuracy, with the epoch it memorised below each marker; colour and marker give the outcome "
               f"({counts}).")
    return fig, caption


def draw_figures(data: SweepData, out_dir, formats=("png", "svg")) -> tuple[list[FigureResult], list[str]]:
    """Draw every figure the data supports into out_dir; return them and a note per skipped figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not data.records:
        return [], ["no figures: the store has no finished runs yet"]
    done, notes = [], []
    for f in FIGURES.values():
        try:
            with plt.rc_context(RC):
                fig, caption = f.draw(data)
                paths = save(fig, out_dir / f"{f.name}.png", formats=formats)
        except Skip as e:
            plt.close("all")
            notes.append(f"{f.name} not drawn: {e}")
            continue
        done.append(FigureResult(name=f.name, paths=paths, caption=caption))
    return done, notes


def plot_sweep(store, out_dir=None, log: Optional[Callable[[str], None]] = print) -> list[Path]:
    """Draw the sweep's figures as PNG and SVG into out_dir (default: SWEEP_DIR/figures); return their paths.

    A figure the data cannot support is skipped, and `log` is told why.
    """
    data = load(store)
    figs, notes = draw_figures(data, out_dir if out_dir is not None else data.store.root / "figures")
    if log is not None:
        for n in notes:
            log(n)
    return [p for f in figs for p in f.paths]
