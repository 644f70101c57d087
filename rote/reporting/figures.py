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

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from rote.config import fit_threshold
from rote.data.corruption import parse_label_corruption
from rote.errors import ConfigError
from rote.experiments.record import BUDGET_SPENT
from rote.training.metrics import outcome_word
from rote.reporting.results import (OUTCOMES, Condition, SweepData, condition_in_words, detection_rows, fit_epoch,
                                    incidence, load, mean_std, median_while_all_running, memorisation_events,
                                    representative_runs)
from rote.reporting.style import (OUTCOME_COLORS, OUTCOME_MARKERS, RC, condition_color, legend, legend_below, plt,
                                  save, subplots)


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
        key = tuple((k, c.settings.get(k)) for k in others)
        groups.setdefault(key, []).append((x, c))
    out = []
    for key, items in groups.items():
        label = condition_in_words(dict(key)) if key else ""
        if field == "labels":
            # partial:P and flip:P are different corruptions: one line each, sharing the end points
            fams = sorted({_label_kind(c.settings["labels"]) for _, c in items} & {"partial", "flip"})
            if len(fams) > 1:
                for fam in fams:
                    sub = [(x, c) for x, c in items if _label_kind(c.settings["labels"]) not in set(fams) - {fam}]
                    fam_words = "P of labels replaced" if fam == "partial" else "P of labels flipped"
                    out.append(((label + ", " if label else "") + fam_words, sorted(sub, key=lambda t: t[0])))
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

    def draw(self, ax, color, label, connect: bool = True):
        if self.x:
            ax.errorbar(self.x, self.mean, yerr=self.std, color=color, marker="o", ms=5, lw=1.5 if connect else 0,
                        elinewidth=1.5, capsize=3, zorder=4, label=label)


def _by_epoch(data: SweepData, r, column: str, scale: float = 1.0) -> dict:
    """One run's history column as {epoch: value}, finite values only."""
    h = data.history(r)
    return {int(e): scale * v for e, v in zip(h.get("epoch", []), h.get(column, []))
            if e is not None and isinstance(v, float) and math.isfinite(v)}


NOT_REACHED = "median not reached"  # in _draw_fit's returned kinds: some condition had no median


# the strip above a time axis, in axes fractions: what has no time to memorise is drawn there, never at a number
DIED_AT, NOT_REACHED_AT = 1.04, 1.0


def _not_fit_proxies(ax, kinds: set):
    """Legend entries for the runs that did not memorise."""
    if BUDGET_SPENT in kinds:
        ax.scatter([], [], marker="o", s=30, facecolors="none", edgecolors="0.3", lw=1.2,
                   label="alive when its budget ran out (drawn at the budget: at least that long)")
    if kinds & {"collapsed", "diverged"}:
        ax.scatter([], [], marker="x", s=30, color="0.3", lw=1.2,
                   label="died (collapsed or diverged): never memorises, drawn above the plot")


def _draw_fit(ax, series, jitter, *, scale=None, mean_label="median (cumulative incidence), 95% interval",
              connect: bool = True) -> tuple[set, dict]:
    """Epochs to memorise per condition: dots per run, the median of the cumulative incidence of
    memorisation with its 95% interval.

    Runs whose budget ran out are censored at the epochs they ran (drawn hollow: at least that long);
    collapsed / diverged ones are competing events that never memorise: they have no time, so they are
    drawn as crosses in the strip above the plot, not at the epoch they stopped. A median never reached
    has no value either: an open triangle on the top edge. scale: per-series divisor (relative plots) or
    None. connect: join the medians of neighbouring conditions (on a numeric axis); a line never crosses a
    condition whose median was not reached, nor joins two across a change of outcome.
    Returns (the outcomes of runs drawn hollow or crossed, and NOT_REACHED if some median was not reached;
    {x: ['k/n' memorised of runs, one per series]}).
    """
    missed: set = set()
    counts: dict = {}
    ns = len(series)
    edge = ax.get_xaxis_transform()  # x in data, y in axes fractions
    for si, (label, items) in enumerate(series):
        color = condition_color(si)
        div = 1.0 if scale is None else scale[si]
        if div is None:
            continue
        mx, my, mlo, mhi, nr_x = [], [], [], [], []
        segments: list = [[]]  # runs of neighbouring conditions whose median was reached
        for x, c in items:
            n = len(c.runs)
            for j, r in enumerate(c.runs):
                e = fit_epoch(r)[0]
                xj = jitter(x, si * n + j, ns * n)  # the runs of all series side by side
                if e is not None:
                    ax.scatter([xj], [e / div], s=14, color=color, alpha=0.55, lw=0, zorder=3)
                elif r.outcome in ("collapsed", "diverged"):
                    missed.add(r.outcome)
                    ax.scatter([xj], [DIED_AT], marker="x", s=26, color=color, lw=1.1, zorder=5, transform=edge,
                               clip_on=False)
                else:
                    missed.add(BUDGET_SPENT)
                    ax.scatter([xj], [r.epochs_or_budget / div], marker="o", s=30, facecolors="none",
                               edgecolors=color, lw=1.2, zorder=3)
            km = incidence(c.runs)  # collapse competing, budget censored
            if km.median is not None:
                mx.append(x)
                my.append(km.median / div)
                lo = km.median_low if km.median_low is not None else km.median
                hi = km.median_high if km.median_high is not None else max(memorisation_events(c.runs)[0])
                mlo.append(km.median / div - lo / div)
                mhi.append(hi / div - km.median / div)
                segments[-1].append((x, km.median / div))
            else:
                segments.append([])
                nr_x.append(x)
            counts.setdefault(x, []).append(f"{sum(r.memorized for r in c.runs)}/{n}")
        if mx:
            ax.errorbar(mx, my, yerr=[mlo, mhi], color=color, marker="o", ms=5, ls="none", elinewidth=1.5,
                        capsize=3, zorder=4, label=label or mean_label)
            for seg in segments if connect else ():
                if len(seg) > 1:
                    ax.plot([x for x, _ in seg], [y for _, y in seg], color=color, lw=1.5, zorder=4)
        if nr_x:
            missed.add(NOT_REACHED)
            ax.scatter(nr_x, [NOT_REACHED_AT] * len(nr_x), marker="^", s=46, facecolors="white", edgecolors=color,
                       lw=1.4, zorder=6, transform=edge, clip_on=False)
        if not mx and label:
            ax.plot([], [], color=color, marker="o", ms=5, lw=1.5, label=label)
    return missed, counts


def _median_not_reached_proxy(ax):
    ax.scatter([], [], marker="^", s=42, facecolors="white", edgecolors="0.3", lw=1.4,
               label="median not reached (fewer than half memorised): on the top edge")


def _counts_in_ticks(ax, lay, counts: dict) -> None:
    """'k/n' memorised under each condition's tick label, where it can hide nothing."""
    ax.set_xticks(lay.ticks)
    ax.set_xticklabels([f"{lab}\n{', '.join(counts.get(x, []))}" for x, lab in zip(lay.ticks, lay.ticklabels)],
                       fontsize=7.5)


def _budget_line(ax, conditions):
    budgets = {c.settings.get("epochs") for c in conditions}
    # only where some run's budget ran out: otherwise a far-off budget line only squashes the data
    censored = any(r.outcome == BUDGET_SPENT for c in conditions for r in c.runs)
    if len(budgets) == 1 and censored:
        b = budgets.pop()
        ax.axhline(b, color="0.5", ls=":", lw=1, label=f"epoch budget ({b})", zorder=1)


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
    stopped_early = False
    collapsed = 0
    for c in data.conditions:
        color = condition_color(c.index)
        runs, drawn = [], 0  # runs: the curves of the runs that did not die, whose median is drawn
        for r in c.runs:
            pts = _by_epoch(data, r, "loss")
            if pts:
                drawn += 1
                ep = sorted(pts)
                dead = r["result"].get("outcome") in ("collapsed", "diverged")
                if not dead:
                    runs.append(pts)
                if dead:  # dashed and ending in a cross: a run that died looks nothing like one still on its plateau
                    collapsed += 1
                    ax.plot(ep, [pts[e] for e in ep], color=color, lw=0.9, ls=(0, (3, 2)), alpha=0.8, zorder=2)
                    ax.plot([ep[-1]], [pts[ep[-1]]], color=color, marker="x", ms=5, mew=1.2, ls="none", zorder=3)
                else:
                    # a condition of one run has no median: its run is drawn as the legend shows it
                    single = len(c.runs) == 1
                    ax.plot(ep, [pts[e] for e in ep], color=color, lw=1.9 if single else 0.6, alpha=0.9 if single else 0.35)
        if not drawn:
            continue
        ep, med = median_while_all_running(runs)
        longest = max((max(p) for p in runs), default=0)
        early = bool(ep) and ep[-1] < longest
        stopped_early |= early
        label = c.label
        if len(runs) > 1 and ep:
            # the legend says which runs the median is of, and how far it goes when the first stopped early
            of = f"{len(runs)}" if len(runs) == drawn else f"the {len(runs)} of {drawn} that did not die"
            label += f" (median of {of}" + (f", to epoch {ep[-1]})" if early else ")")
            ax.plot(ep, med, color=color, lw=1.9, label=label)
            if early:
                ax.plot([ep[-1]], [med[-1]], color=color, marker="|", ms=9, mew=1.9, ls="none")
        else:
            ax.plot([], [], color=color, lw=1.9, label=label)
    if collapsed:
        ax.plot([], [], color="0.3", lw=0.9, ls=(0, (3, 2)), marker="x", ms=5, mew=1.2,
                label=f"collapsed or diverged run ({collapsed}), x at its end")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("training loss (cross-entropy, nats)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.set_title("Learning curves")
    legend(ax, fontsize=7.5, outside=True)  # beside the axes: curves fill the whole plot
    caption = ("Training loss (mean over the epoch's batches) against epoch: thin lines are single runs, the thick "
               "line of each condition the median over its seeds that did not die (a dead network's loss is "
               "drawn on its own, not averaged with the living), drawn only while every one of them is still "
               "running"
               + (" (it ends, at the bar, where the first of them stopped: a median of the survivors alone would "
                  "be a curve no run had)" if stopped_early else "")
               + ("; dashed lines ending in a cross are runs that collapsed (a dead network, stopped) or diverged"
                  if collapsed else "")
               + ". Cf. Zhang et al. 2017, Fig. 1a.")
    return fig, caption


@dataclass
class _Layout:
    """Where conditions sit on the x axis: by label corruption level P, or one category each."""
    categorical: bool
    series: list  # [(label, [(x, condition), ...]), ...]
    ticks: list  # x positions
    ticklabels: list
    xlabel: str


def _wrap(text: str, width: int = 14) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _layout(data: SweepData) -> _Layout:
    """Label corruption levels on a numeric axis when only the labels (and settings drawn as separate lines)
    vary; otherwise (a sweep of cases, e.g. Zhang's five conditions) one category per condition."""
    if "labels" not in data.varying and "inputs" not in data.varying:
        raise Skip("needs a sweep over label or input corruption (labels and inputs take one value here)")
    if "inputs" not in data.varying:
        series = _series(data, "labels", lambda c: corruption_level(c.settings["labels"]))
        levels = {x for _, items in series for x, _ in items}
        distinct = all(len({x for x, _ in items}) == len(items) for _, items in series)
        if len(levels) >= 2 and distinct:
            levels, kinds_at = _levels(series)
            return _Layout(False, series, levels,
                           [f"{x:g}" + (f"\n{kinds_at[x]}" if x in kinds_at else "") for x in levels], CORRUPTION_X)
    if len(data.conditions) < 2:
        raise Skip("needs at least two conditions")
    items = [(float(i), c) for i, c in enumerate(data.conditions)]
    return _Layout(True, [("", items)], [x for x, _ in items], [_wrap(c.label) for _, c in items], "")


def _apply_layout(ax, lay: _Layout):
    ax.set_xticks(lay.ticks)
    ax.set_xticklabels(lay.ticklabels, fontsize=7.5 if lay.categorical else None)
    ax.set_xlabel(lay.xlabel)
    if lay.categorical:
        ax.set_xlim(min(lay.ticks) - 0.6, max(lay.ticks) + 0.6)
        ax.grid(axis="x", visible=False)


def _jitter_cat(x, j, n):
    return x + (j - (n - 1) / 2) * min(0.06, 0.5 / max(n, 1))


CORRUPTION_X = "label corruption P"


@figure("time_to_fit", "Time to memorise")
def time_to_fit(data: SweepData):
    lay = _layout(data)
    series = lay.series
    jit = _jitter_cat if lay.categorical else _jitter_lin(lay.ticks)
    # per series, the median epochs (cumulative incidence) to memorise true labels (P = 0)
    base = []
    for _, items in series:
        at0 = [r for x, c in items if x == 0 for r in c.runs]
        base.append(incidence(at0).median if at0 and not lay.categorical else None)
    relative = any(b is not None for b in base)
    fig, axes = subplots(ncols=2 if relative else 1, width=3.8 if not lay.categorical else 5.2, height=3.4)
    ax = axes[0]
    missed, counts = _draw_fit(ax, series, jit, connect=not lay.categorical)
    _budget_line(ax, data.conditions)
    _not_fit_proxies(ax, missed)
    if NOT_REACHED in missed:
        _median_not_reached_proxy(ax)
    ax.set_ylabel("epochs to memorise")
    ax.set_ylim(bottom=0)
    ax.margins(y=0.08)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Time to memorise", pad=16)
    _apply_layout(ax, lay)
    _counts_in_ticks(ax, lay, counts)
    if relative:
        ax2 = axes[1]
        _draw_fit(ax2, series, jit, scale=base, connect=not lay.categorical)
        ax2.axhline(1.0, color="0.5", lw=1, ls="--", label="true labels = 1")
        ax2.set_ylabel("epochs to memorise / true labels' median")
        ax2.set_ylim(bottom=0)
        ax2.margins(y=0.08)
        ax2.set_title("Relative to true labels", pad=16)
        _apply_layout(ax2, lay)
        _counts_in_ticks(ax2, lay, counts)
    legend_below(fig, axes, ncol=2)
    caption = ("Epochs until the whole training set is fitted: dots are runs that memorised; hollow circles runs "
               "still alive when their epoch budget ran out, drawn at the budget (they took at least that long). "
               "Runs that died (collapsed or diverged) never memorise and have no such time: they are the crosses "
               "in the strip above the plot. Markers with bars are the median epochs to memorise over all seeds, "
               "from the cumulative incidence of memorisation (Aalen-Johansen; dead runs count as never "
               "memorising, runs whose budget ran out are censored), with its 95% interval; an open triangle on "
               "the top edge means the incidence stays below one half (no median); under each condition, k/n "
               "counts the runs that memorised"
               + ("; right: divided by the median for true labels" if relative else "")
               + ". Cf. Zhang et al. 2017, Fig. 1b.")
    return fig, caption


@figure("test_error", "Test error against label corruption")
def test_error(data: SweepData):
    lay = _layout(data)
    series = lay.series
    if not any(r.test_acc is not None for r in data.records):
        raise Skip("no run has a test accuracy")
    jit = _jitter_cat if lay.categorical else _jitter_lin(lay.ticks)
    fig, (ax,) = subplots(width=5.2 if lay.categorical else 4.4, height=3.4)
    uniform = mean_std(r.chance_uniform for r in data.records)[0] or 0.1
    ax.axhline(100 * (1 - uniform), color="0.3", ls="--", lw=1,
               label=f"uniform guessing ({100 * (1 - uniform):.0f}% error)")
    # each condition's own chance band (mean over its seeds), a grey bar at its x
    ns = len(series)
    band_label = "95% chance band of each condition (relabelled predictions)"
    for si, (_, items) in enumerate(series):
        for x, c in items:
            bands = [r.chance_band for r in c.runs]
            bands = [b for b in bands if b and None not in b]
            if not bands:
                continue
            lo = 100 * (1 - sum(b[1] for b in bands) / len(bands))
            hi = 100 * (1 - sum(b[0] for b in bands) / len(bands))
            half = 0.22 if lay.categorical else 0.02 * ((max(lay.ticks) - min(lay.ticks)) or 1.0)
            xc = x if ns == 1 else jit(x, si, ns)
            ax.fill_between([xc - half, xc + half], [lo, lo], [hi, hi], color="0.5", alpha=0.3, lw=0, zorder=1,
                            label=band_label)
            band_label = None
    for si, (label, items) in enumerate(series):
        color = condition_color(si)
        line = _MeanLine()
        for x, c in items:
            errs = []
            for j, r in enumerate(c.runs):
                acc = r.test_acc
                if acc is None:
                    continue
                errs.append(100 * (1 - acc))
                ax.scatter([jit(x, j, len(c.runs))], [errs[-1]], s=14, color=color, alpha=0.55, lw=0, zorder=3)
            line.add(x, errs)
        line.draw(ax, color, label or "test error, mean ± std over seeds", connect=not lay.categorical)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test error (%)")
    ax.set_title("Generalisation")
    _apply_layout(ax, lay)
    legend(ax, fontsize=7.5, outside=True)
    caption = ("Test error (1 - test accuracy, true test labels) "
               + ("for each condition" if lay.categorical else "against the share of corrupted training labels")
               + ", mean ± std over seeds with single runs as dots; the dashed line is uniform guessing, the grey "
               "bar at each condition the 95% range a model that predicts as its runs do reaches by chance (random "
               "relabellings of its test predictions, mean over its seeds). Cf. Zhang et al. 2017, Fig. 1c.")
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
        med_x, med_y = [], []
        for x, c in items:
            thresholds.add(fit_threshold(c.settings.get("stop_at")))
            accs = []
            for j, r in enumerate(c.runs):
                a = r.train_acc
                if a is None:
                    continue
                accs.append(100 * a)
                xj = _jitter_log(x, j, len(c.runs))
                if r.memorized:
                    ax_acc.scatter([xj], [100 * a], s=14, zorder=3, color=color, alpha=0.6, lw=0)
                elif r.outcome in ("collapsed", "diverged"):
                    ax_acc.scatter([xj], [100 * a], marker="x", s=30, zorder=3, color=color, lw=1.2)
                else:  # its budget ran out
                    ax_acc.scatter([xj], [100 * a], s=22, zorder=3, facecolors="none", edgecolors=color, lw=1.0)
            if accs:  # outcomes are often two-valued (memorised or dead): a median, not a mean and std
                med_x.append(x)
                med_y.append(float(np.median(accs)))
        ax_acc.plot(med_x, med_y, color=color, marker="o", ms=5, lw=1.5, zorder=4, label=label or "median over seeds")
        every = {x: all(r.memorized for r in c.runs) for x, c in items}
        all_mem, not_all = [x for x in every if every[x]], [x for x in every if not every[x]]
        claim = (f"every seed memorised up to N={int(max(all_mem))}" if all_mem else "no N had every seed memorise")
        if not_all:
            claim += f", not every seed at N={int(min(not_all))}"
        claims.append((f"{label}: " if label else "") + claim)
    for t in sorted(thresholds):
        ax_acc.axhline(100 * t, color="0.4", ls="-.", lw=1, label=f"memorisation threshold ({100 * t:.1f}%)")
    ax_acc.set_xscale("log")
    ax_acc.set_xlabel("training images N (log scale)")
    ax_acc.set_ylabel("final training accuracy (%)")
    ax_acc.set_ylim(top=100.4)
    ax_acc.set_title("Fit at the end of training")
    missed, counts = _draw_fit(ax_ep, series, _jitter_log)
    _budget_line(ax_ep, data.conditions)
    _not_fit_proxies(ax_ep, missed)
    if NOT_REACHED in missed:
        _median_not_reached_proxy(ax_ep)
    ax_ep.set_xscale("log")
    ax_ep.set_xlabel("training images N (log scale)")
    ax_ep.set_ylabel("epochs to memorise")
    ax_ep.set_ylim(bottom=0)
    ax_ep.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_ep.margins(y=0.08)
    ax_ep.set_title("Time to memorise", pad=16)
    for a in (ax_acc, ax_ep):
        a.set_xticks(ns)
        a.set_xticklabels([f"{n / 1000:g}k" if n >= 1000 else f"{int(n)}" for n in ns])
        a.minorticks_off()
    ax_ep.set_xticklabels([f"{n / 1000:g}k" if n >= 1000 else f"{int(n)}" for n in ns], fontsize=7.5)
    ax_ep.set_xticklabels([f"{lab.get_text()}\n{', '.join(counts.get(n, []))}"
                           for n, lab in zip(ns, ax_ep.get_xticklabels())], fontsize=7.5)
    legend_below(fig, [ax_acc, ax_ep], ncol=2)
    caption = ("Final accuracy on the training part and epochs to memorise it, against the number of training "
               "images (log scale): dots are runs that memorised, crosses runs that collapsed or diverged, hollow "
               "markers runs whose epoch budget ran out; the left line is the median over seeds. "
               + "; ".join(claims) + ".")
    return fig, caption


@figure("clean_vs_corrupt", "Kept vs changed labels")
def clean_vs_corrupt(data: SweepData):
    conds = [c for c in data.conditions if _label_kind(c.settings.get("labels", "")) in ("partial", "flip")]
    if not conds:
        raise Skip("needs runs with partial:P or flip:P labels")
    have = [(c, [(r, _by_epoch(data, r, "clean_acc", 100), _by_epoch(data, r, "corrupt_acc", 100)) for r in c.runs])
            for c in conds]
    have = [(c, [t for t in runs if t[1] and t[2]]) for c, runs in have]
    have = [(c, runs) for c, runs in have if runs]
    if not have:
        raise Skip("no partial/flip run evaluated its full training part "
                   "(run with eval_every 1 to record clean_acc and corrupt_acc)")
    fig, axes = _panels(len(have), width=3.0, height=2.7, per_row=3)
    stopped_early = False
    for ax, (c, runs) in zip(axes, have):
        color = condition_color(c.index)
        for col, ls in ((1, "-"), (2, "--")):
            for t in runs:  # every run, to its own end: a mean over the runs still going would be a curve no run had
                ep = sorted(t[col])
                ax.plot(ep, [t[col][e] for e in ep], color=color, lw=0.7, ls=ls, alpha=0.45)
                if t[0].outcome in ("collapsed", "diverged"):
                    ax.plot([ep[-1]], [t[col][ep[-1]]], color=color, marker="x", ms=5, mew=1.2, ls="none")
            if len(runs) > 1:
                ep, med = median_while_all_running([t[col] for t in runs])
                if ep:
                    ax.plot(ep, med, color=color, lw=1.9, ls=ls)
                    if ep[-1] < max(max(t[col]) for t in runs):
                        stopped_early = True
                        ax.plot([ep[-1]], [med[-1]], color=color, marker="|", ms=9, mew=1.9, ls="none")
        ax.set_title(f"{c.label} ({len(runs)} run{'s' if len(runs) > 1 else ''})", fontsize=9)
        ax.set_ylim(0, 101)
        ax.set_xlim(left=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("training accuracy (%)")
    right = max(a.get_xlim()[1] for a in axes)
    for a in axes:  # panels that compare share their axes
        a.set_xlim(0, right)
    axes[0].plot([], [], color="0.3", ls="-", label="kept labels")
    axes[0].plot([], [], color="0.3", ls="--", label="changed labels")
    legend_below(fig, axes[:1], ncol=2)
    fig.suptitle("Kept vs changed labels", fontsize=11)
    caption = ("Accuracy against the training labels, on the examples whose label was kept (solid) and on those "
               "whose label was changed (dashed), evaluated on the whole training part in eval mode after each "
               "epoch, one panel per condition: thin lines are single runs, each to the epoch it stopped (crosses: "
               "collapsed); the thick line is the median over all the condition's runs"
               + (", drawn only while every run is still going (it ends at the bar)" if stopped_early else "")
               + ".")
    return fig, caption


def _steps_per_epoch(r) -> Optional[int]:
    n_fit, bs = r["result"].get("n_fit"), r["config"].get("batch_size")
    return -(-int(n_fit) // int(bs)) if n_fit and bs else None


@figure("memorise_vs_n", "Time to memorise against N")
def memorise_vs_n(data: SweepData):
    """Epochs and optimiser steps to memorise against N (log-log) with a power-law fit; outcomes against N."""
    from rote.reporting.scaling import fit_power_law
    from rote.reporting.results import wilson

    if "n_train" not in data.varying:
        raise Skip("needs a sweep over n_train (n_train takes one value here)")
    series = _series(data, "n_train", lambda c: float(c.settings["n_train"]))
    if len(series) != 1:
        raise Skip("drawn for a sweep over n_train alone (and seeds)")
    _, items = series[0]
    pts = [(x, e, e * _steps_per_epoch(r)) for x, c in items for r in c.runs
           if (e := fit_epoch(r)[0]) is not None and _steps_per_epoch(r)]
    if len({p[0] for p in pts}) < 2:
        raise Skip("needs memorised runs at two or more values of n_train")
    dead = [(x, r.epochs_or_budget, r.epochs_or_budget * _steps_per_epoch(r)) for x, c in items for r in c.runs
            if r.outcome == "collapsed" and _steps_per_epoch(r)]
    fig, axes = subplots(ncols=3, width=3.3, height=3.1)
    ns = sorted({x for x, _ in items})
    grid = np.geomspace(min(ns), max(ns), 50)
    fits = []
    for ax, col, what in ((axes[0], 1, "epochs"), (axes[1], 2, "optimiser steps")):
        xs = np.array([p[0] for p in pts])
        ys = np.array([p[col] for p in pts], dtype=float)
        ax.scatter([_jitter_log(x, j % 3, 3) for j, x in enumerate(xs)], ys, s=16, color=OUTCOME_COLORS["memorized"],
                   alpha=0.7, lw=0, zorder=3, label="a run that memorised")
        if dead:  # the other clock: when each dead network was found, in the same units
            ax.scatter([_jitter_log(x, j % 3, 3) for j, (x, *_) in enumerate(dead)], [d[col] for d in dead], s=22,
                       marker="x", color=OUTCOME_COLORS["collapsed"], lw=1.1, zorder=3,
                       label="a run that died (when found dead)")
        fit = fit_power_law(xs, ys)
        fits.append((what, fit))
        pred = np.array([fit.predict(g) for g in grid])
        ax.plot(grid, pred[:, 0], color="0.2", lw=1.3, label=f"fit: {what} ∝ N^{fit.slope:.2f}")
        ax.fill_between(grid, pred[:, 1], pred[:, 2], color="0.5", alpha=0.25, lw=0, label="95% interval (bootstrap)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("training images N")
        # the dots are times to memorise, the crosses times of death: the axis names neither alone
        ax.set_ylabel(what)
        ax.set_title(f"{what.capitalize()}: to memorise (dots),\nto death (crosses)", fontsize=9.5)
    ax = axes[2]
    for o, dx in (("memorized", -0.02), ("collapsed", 0.02)):
        xs, fr, lo, hi = [], [], [], []
        for x, c in items:
            k, n = sum(r["result"].get("outcome") == o for r in c.runs), len(c.runs)
            w = wilson(k, n)
            xs.append(x * 10 ** dx)
            fr.append(100 * k / n)
            lo.append(100 * (k / n - w[0]))
            hi.append(100 * (w[1] - k / n))
        ax.errorbar(xs, fr, yerr=[lo, hi], color=OUTCOME_COLORS[o], marker=OUTCOME_MARKERS[o], ms=5, lw=1.2,
                    capsize=3, label={"memorized": "share of runs that memorised",
                                      "collapsed": "share of runs that died (dead network)"}[o])
    for x, c in items:
        ax.annotate(f"n={len(c.runs)}", (x, 103), ha="center", fontsize=6.5, color="0.35")
    ax.set_xscale("log")
    ax.set_ylim(-3, 110)
    ax.set_xlabel("training images N")
    ax.set_ylabel("runs (%)")
    ax.set_title("Outcomes (95% Wilson)")
    legend_below(fig, axes, ncol=3)
    for a in axes:
        a.set_xticks(ns)
        a.set_xticklabels([f"{int(n / 1000)}k" if n >= 1000 else f"{int(n)}" for n in ns])
        a.minorticks_off()
    parts = "; ".join(f"{w} ∝ N^{f.slope:.2f} (95% interval {f.slope_low:.2f} to {f.slope_high:.2f})"
                      for w, f in fits)
    caption = (f"Left and middle: epochs and optimiser steps until the whole training part is fitted, one dot per "
               f"run that memorised ({len(pts)} runs at {len(ns)} sizes), with a least-squares power law in "
               f"log-log and its 95% bootstrap interval over runs: {parts}. Runs that collapsed never memorise "
               f"and are not in the fit; a cross marks the epoch (step) at which each was found dead. Right: the "
               f"share of runs that memorised or collapsed at each N, with 95% Wilson intervals.")
    return fig, caption


@figure("incidence", "Cumulative incidence of memorisation")
def incidence_curves(data: SweepData):
    """Per condition, the probability of having memorised by epoch t, collapse counted as never memorising."""
    curves = [(c, incidence(c.runs)) for c in data.conditions]
    if not any(inc.n_events for _, inc in curves):
        raise Skip("no run memorised")
    fig, (ax,) = subplots(ncols=1, width=5.0, height=3.3)
    end = max((t for _, inc in curves for t in inc.times), default=1.0)
    flat = 0
    for i, (c, inc) in enumerate(curves):
        color = condition_color(i)
        t = [0.0] + inc.times
        f = [0.0] + inc.incidence
        if not inc.n_events:  # no run memorised: a curve on the 0% line, drawn dashed and below it to be seen
            flat += 1
            ax.plot([0.0, max(t[-1], end)], [-1.5 * flat] * 2, color=color, lw=1.5, ls=(0, (4, 2)), clip_on=False,
                    label=f"{c.label or 'all runs'} (n={inc.n}: none memorised, {inc.n_competing} dead, "
                          f"{inc.n_censored} censored; at 0%)")
            continue
        ax.step(t, [100 * v for v in f], where="post", color=color, lw=1.5,
                label=f"{c.label or 'all runs'} (n={inc.n}: {inc.n_events} memorised, {inc.n_competing} "
                      f"dead, {inc.n_censored} censored)")
        ax.fill_between(t, [100 * v for v in [0.0] + inc.low], [100 * v for v in [0.0] + inc.high], step="post",
                        color=color, alpha=0.15, lw=0)
    ax.axhline(50, color="0.4", ls=":", lw=1)
    ax.set_ylim(-1.5 * flat - 1.5, 101.5)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.set_xlim(left=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("runs memorised by this epoch (%)")
    ax.set_title("Cumulative incidence of memorisation")
    legend_below(fig, [ax], ncol=1)
    caption = ("The estimated share of runs that have memorised by each epoch (Aalen-Johansen), with its 95% "
               "pointwise band: a collapsed (dead) or diverged run counts as never memorising, a run still alive "
               "when its budget ran out is censored there. The median is where a curve crosses the dotted 50% "
               "line; a curve that stays below it has no median"
               + ("; a condition in which no run memorised is a dashed line just below 0%, where it would "
                  "otherwise lie hidden on the axis" if flat else "") + ".")
    return fig, caption


@figure("seed_outcomes", "Outcome per seed")
def seed_outcomes(data: SweepData):
    if len(data.conditions) != 1:
        raise Skip(f"drawn for a sweep over the seeds of one condition; this one has "
                   f"{len(data.conditions)} conditions")
    c = data.conditions[0]
    if len(c.runs) < 2:
        raise Skip("needs at least two seeds")
    n = len(c.runs)
    fig, (ax, ax_ep) = subplots(ncols=2, width=max(3.8, 1.3 + 0.11 * n), height=3.2)
    xs = list(range(n))
    seen = set()
    uniform = None
    budget = None
    for x, r in zip(xs, c.runs):
        outcome = r.outcome
        color = OUTCOME_COLORS.get(outcome, "0.3")
        marker = OUTCOME_MARKERS.get(outcome, "o")
        uniform = r.chance_uniform or uniform
        band = r.chance_band
        if band and None not in band:
            ax.vlines(x, 100 * band[0], 100 * band[1], color="0.6", lw=min(7.0, 180 / n), alpha=0.45, zorder=1,
                      label="95% chance band" if x == 0 else None)
        lab = outcome_word(outcome) if outcome not in seen else None
        seen.add(outcome)
        if r.test_acc is not None:
            ax.scatter([x], [100 * r.test_acc], color=color, marker=marker, s=36, zorder=3, label=lab,
                       edgecolors="white", lw=0.5)
        # right: the epoch it memorised, or the epoch it stopped at (collapsed, diverged, out of budget)
        e = fit_epoch(r)[0] if outcome == "memorized" else r.epochs_run
        if e is not None:
            ax_ep.scatter([x], [e], color=color, marker=marker, s=36, zorder=3, edgecolors="white", lw=0.5)
        budget = r["config"].get("epochs", budget)
    if uniform is not None:
        ax.axhline(100 * uniform, color="0.3", ls="--", lw=1, label=f"uniform chance ({100 * uniform:.0f}%)")
    if budget is not None:
        ax_ep.axhline(budget, color="0.5", ls=":", lw=1, label=f"epoch budget ({budget})", zorder=1)
    # seed labels: every one while they fit, else every 5th (with a small tick at each seed)
    every = 1 if n <= 15 else 5 if n <= 60 else 10
    for a in (ax, ax_ep):
        a.set_xticks(xs, minor=True)
        a.set_xticks(xs[::every])
        a.set_xticklabels([str(s) for s in c.seeds][::every])
        a.set_xlabel("seed")
        a.set_xlim(-0.7, n - 0.3)
        a.grid(axis="x", visible=False)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy vs chance")
    ax_ep.set_ylim(bottom=0)
    ax_ep.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_ep.set_ylabel("epoch memorised, or stopped at")
    ax_ep.set_title("When each run ended")
    legend(ax_ep, sources=[ax], fontsize=7.5, outside=True)
    counts = ", ".join(f"{sum(r['result'].get('outcome') == o for r in c.runs)} {outcome_word(o)}" for o in OUTCOMES
                       if any(r["result"].get("outcome") == o for r in c.runs))
    ends = []
    for o in OUTCOMES:
        accs = [100 * r["result"]["train_acc"] for r in c.runs
                if r["result"].get("outcome") == o and r["result"].get("train_acc") is not None]
        if accs:
            span = f"{min(accs):.1f}%" if round(min(accs), 1) == round(max(accs), 1) else \
                f"{min(accs):.1f}-{max(accs):.1f}%"
            ends.append(f"{outcome_word(o)} {span}")
    caption = (f"Each seed of {c.label}: left, test accuracy (true test labels) with the 95% band a model "
               f"predicting this way reaches by chance and the uniform-guessing line; right, the epoch each run "
               f"memorised its training set in, or, for the others, the epoch it stopped at; colour and marker give "
               f"the outcome ({counts}). Final training accuracy: {'; '.join(ends)}.")
    return fig, caption


# -- the per-example view across a sweep -------------------------------------------------


@figure("detection_auroc", "Finding the changed labels")
def detection_auroc(data: SweepData):
    rows = [d for d in detection_rows(data) if d["auroc_mean"] is not None]
    if not rows:
        raise Skip("no run has a detection.csv with a defined AUROC (needs record_examples and changed labels)")
    conds = {c.label: c for c in data.conditions}
    others = [k for k in data.varying if k != "labels"]
    pts: dict = {}
    for d in rows:
        c = conds[d["condition"]]
        x = corruption_level(c.settings.get("labels"))
        if x is None:
            continue
        extra = condition_in_words({k: c.settings.get(k) for k in others}) if others else ""
        pts.setdefault((d["score"], extra), []).append((x, d))
    if not pts:
        raise Skip("no condition with label corruption P")
    levels = sorted({x for v in pts.values() for x, _ in v})
    if len(levels) == 1:  # one level: a line per score would be nine markers on one x; one row per score instead
        return _auroc_dots(pts, levels[0])
    fig, (ax,) = subplots(width=4.8, height=3.4)

    def outcomes(d):  # what the networks behind a point did: a line never joins memorised to dead
        return tuple(sorted({r.outcome for r in conds[d["condition"]].runs}))
    unlike = False
    for i, ((score, extra), items) in enumerate(pts.items()):
        items.sort(key=lambda t: t[0])
        color = condition_color(i)
        ax.plot([], [], color=color, marker="o", ms=4, lw=1.3, label=score + (f", {extra}" if extra else ""))
        seg: list = []
        for k, (x, d) in enumerate(items):
            if seg and outcomes(seg[-1][1]) != outcomes(d):
                seg = []
            seg.append((x, d))
            full = outcomes(d) == ("memorized",)
            unlike |= not full
            ax.errorbar([x], [d["auroc_mean"]], yerr=[d["auroc_std"] or 0.0], color=color, marker="o", ms=4,
                        mfc=color if full else "white", capsize=2.5, ls="none", zorder=3)
            if len(seg) > 1:
                ax.plot([seg[-2][0], x], [seg[-2][1]["auroc_mean"], d["auroc_mean"]], color=color, lw=1.3, zorder=2)
    if unlike:
        ax.plot([], [], color="0.3", marker="o", mfc="white", ls="none",
                label="not every network memorised there (e.g. all dead): not joined")
    ax.axhline(0.5, color="0.3", ls="--", lw=1, label="chance (0.5)")
    dead_at = {x for x in levels if all(r.outcome in ("collapsed", "diverged") for c in data.conditions
                                        if corruption_level(c.settings.get("labels")) == x for r in c.runs)}
    ax.set_xticks(levels)
    ax.set_xticklabels([f"{x:g}" + ("\n(all dead)" if x in dead_at else "") for x in levels])
    ax.set_xlabel(CORRUPTION_X)
    ax.set_ylabel("AUROC for the changed labels")
    ax.set_ylim(0, 1.02)
    ax.set_title("Which score finds the changed labels")
    legend(ax, fontsize=7.5, outside=True)
    caption = ("AUROC of each per-example score as a detector of the training labels rote changed, against the "
               "share of labels changed (P; random labels at 1): mean ± std over seeds. 0.5 is chance; below it "
               "the score points the other way. True labels (P = 0) have no changed label to find. A hollow marker "
               "is a level where not every network memorised (at P = 1 with the seed's recipe every network died, "
               "so its scores describe dead networks); lines join only levels whose runs ended alike. Each run's "
               "numbers are its detection.csv; all of them, with precision@k, in detection_summary.csv "
               "(`rote table`).")
    return fig, caption


def _auroc_dots(pts: dict, level: float):
    """AUROC of each score at a single corruption level: one row per score, best at the top."""
    scores = sorted({score for score, _ in pts}, key=lambda sc: -max(
        d["auroc_mean"] for (s2, _), items in pts.items() if s2 == sc for _, d in items))
    extras = list(dict.fromkeys(extra for _, extra in pts))
    fig, (ax,) = subplots(width=4.8, height=0.32 * len(scores) + 1.3)
    step = 0.6 / max(1, len(extras))
    for j, extra in enumerate(extras):
        off = (j - (len(extras) - 1) / 2) * step
        for i, score in enumerate(scores):
            for _, d in pts.get((score, extra), []):
                ax.errorbar([d["auroc_mean"]], [i + off], xerr=[d["auroc_std"] or 0.0], color=condition_color(j),
                            marker="o", ms=5, lw=1.3, capsize=2.5, ls="none",
                            label=(extra or None) if i == 0 else None)
    ax.axvline(0.5, color="0.3", ls="--", lw=1, label="chance (0.5)")
    ax.set_yticks(range(len(scores)))
    ax.set_yticklabels(scores)
    ax.set_ylim(len(scores) - 0.5, -0.5)  # best score on top
    ax.set_xlim(0, 1.02)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(f"AUROC for the changed labels (P = {level:g})")
    ax.set_title("Which score finds the changed labels")
    legend(ax, fontsize=7.5, outside=True)
    caption = (f"AUROC of each per-example score as a detector of the training labels rote changed, at the one "
               f"corruption level of this sweep (P = {level:g}): mean ± std over seeds, best score at the top. 0.5 is "
               f"chance; below it the score points the other way. Each run's numbers are its detection.csv; all of "
               f"them, with precision@k, in detection_summary.csv (`rote table`).")
    return fig, caption


def _reps(data: SweepData):
    from rote.reporting import examples_figures as ex

    reps = representative_runs(data)
    if not reps:
        raise Skip("no run has a scores.csv (runs recorded with record_examples false have none)")
    return ex, reps


def _panels(n: int, width: float = 3.2, height: float = 3.2, per_row: int = 4):
    rows = math.ceil(n / per_row)
    cols = min(n, per_row)
    with plt.rc_context(RC):
        fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]


def _rep_title(c, r) -> str:
    return f"{c.label}\n(seed {r['config']['seed']})"


def _per_run_panels(data: SweepData, draw, shared_xlim=None):
    """One panel per condition for its representative run (seed 0), drawn by draw(ex, ax, record, scores)
    (which returns the panel's counts in words, for its title); the panels share their axes and one legend
    below them all, which can hide no panel's data."""
    ex, reps = _reps(data)
    fig, axes = _panels(len(reps), height=3.0)
    for ax, (c, r) in zip(axes, reps):
        words = draw(ex, ax, r)
        ax.set_title(f"{c.label} (seed {r['config']['seed']})\n{words}", fontsize=8.5)
    if shared_xlim is not None:
        for ax in axes:
            ax.set_xlim(*shared_xlim(axes))
    legend_below(fig, axes, ncol=3, markerscale=2)
    return fig


@figure("first_learned", "When examples are learned: kept vs changed labels")
def first_learned(data: SweepData):
    fig = _per_run_panels(data, lambda ex, ax, r: ex.draw_first_learned(
        ax, ex.read_scores(r.dir), r.epochs_or_budget, legend=False),
        shared_xlim=lambda axes: (0.8, max(a.get_xlim()[1] for a in axes)))
    caption = ("For one run per condition (seed 0): the share of training examples first predicted right by each "
               "epoch, for kept and for changed labels, on one epoch axis for all panels; examples never learned "
               "are left out of the curve (their share is in each panel's title). Arpit et al. 2017: networks fit "
               "the clean examples first.")
    return fig, caption


@figure("data_map", "Data maps")
def data_map(data: SweepData):
    ex, reps = _reps(data)
    frac = ex.data_map_fraction([ex.read_scores(r.dir) for _, r in reps])
    fig = _per_run_panels(data, lambda ex, ax, r: ex.draw_data_map(ax, ex.read_scores(r.dir), legend=False,
                                                                    fraction=frac),
                          shared_xlim=lambda axes: (0.0, max(a.get_xlim()[1] for a in axes)))
    caption = ("For one run per condition (seed 0): each training example's confidence (mean probability of its "
               "given label over the epochs) against its variability (the std of that probability), red where "
               "rote changed the label (Swayamdipta et al. 2020, dataset cartography), on the same axes in every "
               f"panel. Every group in every panel shows the same random share of its examples ({frac:.0%}), so "
               "densities compare; a cross marks each group's median. A network that died (every prediction "
               "constant) has no variability: its points lie on the left edge.")
    return fig, caption


@figure("examples_grid", "The examples learned last")
def examples_grid(data: SweepData, k: int = 16):
    ex, reps = _reps(data)
    imgs, notes = [], []
    for c, r in reps:
        im, why = ex.images_for(r.config)
        if im is None:
            notes.append(why)
        else:
            imgs.append((c, r, im))
    if not imgs:
        raise Skip(notes[0] if notes else "no images")
    ncols = 8
    rows_per = math.ceil(k / ncols)
    with plt.rc_context(RC):
        fig = plt.figure(figsize=(8.0, len(imgs) * (1.3 * rows_per + 0.5)))
    gs = fig.add_gridspec(len(imgs), 1, hspace=0.45)
    for i, (c, r, im) in enumerate(imgs):
        ex.draw_grid(fig, gs[i], ex.read_scores(r.dir), im, "first_learned", k, ncols=ncols,
                     title=f"{c.label} (seed {r['config']['seed']})")
    caption = (f"For one run per condition (seed 0): the {k} training examples learned last (highest first-learned "
               "epoch; never learned first), as the network saw them, with the given / true label above each (red: "
               "the label was changed) and the epoch first learned. `rote plot RUN_DIR` draws any run's."
               + (" Not shown: " + "; ".join(notes) if notes else ""))
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


def plot_sweep(store, out_dir=None, log: Optional[Callable[[str], None]] = print,
               where: Optional[dict] = None) -> list[Path]:
    """Draw the sweep's figures as PNG and SVG into out_dir (default: SWEEP_DIR/figures); return their paths.

    A figure the data cannot support is skipped, and `log` is told why. where: {setting: value} draws only
    the matching runs (see results.load).
    """
    data = load(store, where)
    figs, notes = draw_figures(data, out_dir if out_dir is not None else data.store.root / "figures")
    if log is not None:
        for n in notes:
            log(n)
    return [p for f in figs for p in f.paths]


from rote.reporting import capacity as _capacity  # noqa: E402,F401  (registers the capacity_bits figure)
