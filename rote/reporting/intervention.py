"""Arms of an intervention: one network, one N, the recipe changed one setting at a time.

The seed closes by saying that with more data its network can no longer
memorise. Under the seed's recipe, more data kills the network before it fits
(memorize-n); whether that is the data or the recipe is a question for an
intervention: the same network and N, each arm the seed's recipe with one
setting changed, the same seeds in every arm, one budget.

The runs may come from several stores (the seed's recipe is usually already in
another study's store). Runs are grouped into arms by their *recipe*: every
setting that differs from the seed experiment's default, leaving out the size
of the data, the budget and the settings that only say how a run was kept
(``NOT_RECIPE``). Each run's fate is read at one common budget in epochs: a
run that memorised or died within it keeps its outcome; a run that did either
later, or that was still alive at the budget's end, is censored there. The
time of every fate is counted in epochs and in optimiser steps
(ceil(n_fit / batch_size) a epoch), because the arms differ in steps per epoch.

    python -m rote.reporting.intervention results/recipe-n20k results/memorize-n \\
        --n-train 20000 --budget 150 --predicted-steps 16795:6330:33115 --out DIR

prints the table (arm x memorised / died / alive at the budget's end with 95%
Wilson intervals, the median steps and epochs to memorise from the cumulative
incidence, and each arm's memorised share against the seed's recipe with
Newcombe's interval and Fisher's exact p) and, with --out, writes it as
Markdown and CSV with the figure of every run's fate.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from rote.config import RunConfig
from rote.errors import ConfigError
from rote.experiments.record import fit_epoch
from rote.experiments.store import Store
from rote.reporting.compare import rate_difference
from rote.reporting.results import fmt_value, wilson
from rote.reporting.survival import CENSORED, COMPETING, MEMORISED, aalen_johansen

# settings that are not part of a recipe: the data's size and the budget (read at one common budget), and
# those that only say how a run was kept or where it ran
NOT_RECIPE = ("seed", "n_train", "epochs", "record_examples", "device", "channels_last", "eval_every")
SEED_RECIPE = "the seed's recipe"
DEFAULTS = RunConfig().to_dict()
FATES = ("memorised", "died", "alive")  # alive: still training when the budget ended (censored)


@dataclass(frozen=True)
class Fate:
    """How one run ended, read at the common budget."""

    seed: int
    fate: str  # one of FATES
    epoch: int  # when it memorised, was found dead, or was censored
    steps_per_epoch: int
    note: str = ""  # e.g. 'memorised in epoch 170, after the budget'

    @property
    def steps(self) -> int:
        return self.epoch * self.steps_per_epoch

    @property
    def kind(self) -> int:
        return {"memorised": MEMORISED, "died": COMPETING}.get(self.fate, CENSORED)


@dataclass
class Arm:
    changes: dict  # setting -> value, where this arm's recipe differs from the seed's
    fates: list = field(default_factory=list)  # [Fate], by seed
    stores: set = field(default_factory=set)

    @property
    def label(self) -> str:
        return recipe_in_words(self.changes)

    @property
    def steps_per_epoch(self) -> int:
        return self.fates[0].steps_per_epoch

    def count(self, fate: str) -> int:
        return sum(f.fate == fate for f in self.fates)


def recipe_changes(config: dict, among=None) -> dict:
    """The recipe settings of a run's config that differ from the seed experiment's.

    among: only these settings (those that tell the arms apart); settings all arms share are then not named.
    """
    out = {k: v for k, v in config.items()
           if k not in NOT_RECIPE and k in DEFAULTS and v != DEFAULTS[k] and (among is None or k in among)}
    if out.get("optimizer") == "sgd":  # momentum is an SGD setting: name it even at its default
        out.setdefault("momentum", config.get("momentum", DEFAULTS["momentum"]))
    return out


def recipe_in_words(changes: dict) -> str:
    if not changes:
        return SEED_RECIPE
    order = ["optimizer", "momentum", "lr", "batch_size", "preprocess"]
    keys = sorted(changes, key=lambda k: (order.index(k) if k in order else len(order), k))
    return ", ".join(f"{k} {fmt_value(changes[k])}" for k in keys)


def steps_per_epoch(record) -> int:
    n_fit, bs = record["result"].get("n_fit"), record["config"].get("batch_size")
    if not n_fit or not bs:
        raise ConfigError(f"run {record['dir']} does not record its training images and batch size")
    return -(-int(n_fit) // int(bs))


def fate_at_budget(record, budget: int) -> Fate:
    """A finished run's fate read at `budget` epochs (see the module's docstring)."""
    spe = steps_per_epoch(record)
    res, seed = record["result"], int(record["config"]["seed"])
    outcome = res.get("outcome")
    ran = int(res.get("epochs") or 0)
    e_mem, _ = fit_epoch(record)
    if e_mem is not None:
        if e_mem <= budget:
            return Fate(seed, "memorised", e_mem, spe)
        return Fate(seed, "alive", budget, spe, note=f"memorised in epoch {e_mem}, after the budget")
    if outcome in ("collapsed", "diverged"):
        if ran <= budget:
            return Fate(seed, "died", ran, spe)
        return Fate(seed, "alive", budget, spe, note=f"{outcome} in epoch {ran}, after the budget")
    if ran < budget:  # its own budget was smaller than the common one
        return Fate(seed, "alive", ran, spe, note=f"its budget ended at epoch {ran}")
    return Fate(seed, "alive", budget, spe)


def load_arms(stores, n_train: int, budget: int) -> list[Arm]:
    """The finished runs at n_train of every store, grouped into arms, the seed's recipe first."""
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1 epoch, got {budget}")
    found = []  # (store, record) of every finished run at n_train
    for root in stores:
        root = Path(root)
        if not (root / "runs").is_dir():
            raise ConfigError(f"{root} is not a store of runs (no runs/ folder); give a directory "
                              f"`rote sweep --out` wrote")
        found += [(root, r) for r in Store(root).records()
                  if int(r["config"].get("n_train", -1)) == n_train and r["result"]]
    # the settings that tell arms apart; what every run shares (the model, say) is the common ground
    among = {k for k in DEFAULTS if k not in NOT_RECIPE
             and len({repr(r["config"].get(k)) for _, r in found}) > 1}
    arms: dict[tuple, Arm] = {}
    for root, r in found:
        cfg = r["config"]
        changes = recipe_changes(cfg, among)
        key = tuple(sorted((k, repr(v)) for k, v in changes.items()))
        arm = arms.setdefault(key, Arm(changes=changes))
        if any(f.seed == int(cfg["seed"]) for f in arm.fates):
            raise ConfigError(f"arm '{arm.label}' has seed {cfg['seed']} twice (in {root} and "
                              f"{', '.join(map(str, sorted(arm.stores)))}); give each run once")
        arm.fates.append(fate_at_budget(r, budget))
        arm.stores.add(root)
    if not arms:
        raise ConfigError(f"no finished run at n_train={n_train} in {', '.join(map(str, stores))}")
    out = sorted(arms.values(), key=lambda a: (bool(a.changes), a.label))
    for a in out:
        a.fates.sort(key=lambda f: f.seed)
    return out


def _interval(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n} ({100 * lo:.0f}-{100 * hi:.0f}%)"


def arm_rows(arms: list[Arm]) -> list[dict]:
    """One dict per arm: counts, Wilson intervals, median times, and the test against the seed's recipe."""
    base = next((a for a in arms if not a.changes), None)
    rows = []
    for a in arms:
        n = len(a.fates)
        row = {"arm": a.label, "runs": n, "seeds": " ".join(str(f.seed) for f in a.fates),
               "steps_per_epoch": a.steps_per_epoch}
        for f in FATES:
            k = sum(x.fate == f for x in a.fates)
            lo, hi = wilson(k, n)
            row.update({f"n_{f}": k, f"frac_{f}_low": lo, f"frac_{f}_high": hi})
        for unit, times in (("steps", [f.steps for f in a.fates]), ("epochs", [f.epoch for f in a.fates])):
            inc = aalen_johansen(times, [f.kind for f in a.fates])
            row[f"median_{unit}"], row[f"median_{unit}_low"], row[f"median_{unit}_high"] = (
                inc.median, inc.median_low, inc.median_high)
            row[f"median_{unit}_text"] = _median_text(inc)
        dead = [f.steps for f in a.fates if f.fate == "died"]
        row["died_steps_min"], row["died_steps_max"] = (min(dead), max(dead)) if dead else (None, None)
        mem = [f.steps for f in a.fates if f.fate == "memorised"]
        row["memorised_steps_min"], row["memorised_steps_max"] = (min(mem), max(mem)) if mem else (None, None)
        if base is not None and a is not base:
            d = rate_difference(base.count("memorised"), len(base.fates), a.count("memorised"), n)
            row.update({"memorised_difference": d.difference, "memorised_difference_low": d.low,
                        "memorised_difference_high": d.high, "memorised_p": d.p_value})
        rows.append(row)
    return rows


def _median_text(inc) -> str:
    """'3,910 (3,500-4,200)', '3,910 (3,500 to not reached)' or 'not reached'; one run: no interval."""
    if inc.median is None:
        return "not reached"
    if inc.n == 1:
        return f"{inc.median:,.0f} (one run)"
    lo = "?" if inc.median_low is None else f"{inc.median_low:,.0f}"
    hi = "not reached" if inc.median_high is None else f"{inc.median_high:,.0f}"
    return f"{inc.median:,.0f} ({lo}-{hi})" if inc.median_high is not None else f"{inc.median:,.0f} ({lo} to {hi})"


def _steps_range(lo, hi) -> str:
    if lo is None:
        return "-"
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"


def format_markdown(rows: list[dict], n_train: int, budget: int, prediction=None, fates=None) -> str:
    head = ["arm", "runs", "memorised", "died", "alive at the budget's end", "steps / epoch",
            "median steps to memorise", "median epochs", "steps when memorised", "steps when found dead",
            "memorised vs the seed's recipe"]
    lines = [f"Seed CNN, N = {n_train:,}, each run's fate at {budget} epochs (counts with 95% Wilson intervals; "
             f"medians from the cumulative incidence of memorisation, death competing, alive censored):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        test = "-"
        if "memorised_p" in r:
            test = (f"{100 * r['memorised_difference']:+.0f} points ({100 * r['memorised_difference_low']:+.0f} "
                    f"to {100 * r['memorised_difference_high']:+.0f}), Fisher p = {r['memorised_p']:.2g}")
        cells = [r["arm"], str(r["runs"]), _interval(r["n_memorised"], r["runs"]), _interval(r["n_died"], r["runs"]),
                 _interval(r["n_alive"], r["runs"]), str(r["steps_per_epoch"]), r["median_steps_text"],
                 r["median_epochs_text"], _steps_range(r["memorised_steps_min"], r["memorised_steps_max"]),
                 _steps_range(r["died_steps_min"], r["died_steps_max"]), test]
        lines.append("| " + " | ".join(cells) + " |")
    if prediction is not None and fates is not None:
        p, lo, hi = prediction
        lines += ["", f"The prediction committed before these runs: {p:,.0f} optimiser steps to memorise "
                      f"(95% interval {lo:,.0f}-{hi:,.0f}), made for the seed's learning rate."]
        for a in fates:
            mem = [f.steps for f in a.fates if f.fate == "memorised"]
            if mem:
                inside = sum(lo <= s <= hi for s in mem)
                lines.append(f"- {a.label}: {inside} of {len(mem)} memorised runs inside the interval "
                             f"({sum(s < lo for s in mem)} sooner, {sum(s > hi for s in mem)} later)")
    notes = [f"{a.label}, seed {f.seed}: {f.note}" for a in (fates or []) for f in a.fates if f.note]
    if notes:
        lines += ["", "Censored at the budget: " + "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"


def format_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    return buf.getvalue()


FATE_STYLE = {"memorised": ("memorized", "memorised (when it fitted 99.7%)"),
              "died": ("collapsed", "died (when found dead)"),
              "alive": ("budget-spent", "alive at the budget's end (censored)")}


def fates_figure(arms: list[Arm], n_train: int, budget: int, prediction=None):
    """Every run's fate per arm, in optimiser steps (left) and epochs (right); one row per arm."""
    from rote.reporting.style import OUTCOME_COLORS, OUTCOME_MARKERS, subplots

    fig, axes = subplots(ncols=2, width=4.2, height=0.55 * len(arms) + 1.6)
    for ax, unit in zip(axes, ("steps", "epochs")):
        if unit == "steps" and prediction is not None:
            p, lo, hi = prediction
            ax.axvspan(lo, hi, color="0.85", lw=0, zorder=0, label="memorize-n's prediction, 95% interval")
            ax.axvline(p, color="0.45", ls="--", lw=1, zorder=1, label="memorize-n's prediction")
        for i, a in enumerate(arms):
            n = len(a.fates)
            for j, f in enumerate(a.fates):
                y = i + (j - (n - 1) / 2) * min(0.12, 0.6 / max(n, 1))
                x = f.steps if unit == "steps" else f.epoch
                okey, label = FATE_STYLE[f.fate]
                marker = ">" if f.fate == "alive" else OUTCOME_MARKERS[okey]
                ax.scatter([x], [y], marker=marker, s=30, color=OUTCOME_COLORS[okey], lw=0.6, zorder=3,
                           edgecolors="white", label=label)
            if unit == "steps":  # where this arm's budget ends, in its own steps
                ax.plot([budget * a.steps_per_epoch] * 2, [i - 0.4, i + 0.4], color="0.3", lw=1.2, zorder=2,
                        label=f"the budget ({budget} epochs)")
        if unit == "epochs":
            ax.axvline(budget, color="0.3", lw=1.2, zorder=2)
        ax.set_yticks(range(len(arms)))
        ax.set_yticklabels([f"{a.label} ({len(a.fates)})" for a in arms] if unit == "steps" else [])
        ax.set_ylim(len(arms) - 0.5, -0.5)
        ax.set_xlim(left=0)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("optimiser steps" if unit == "steps" else "epochs")
        ax.set_title("in optimiser steps" if unit == "steps" else "in epochs", fontsize=10)
        if unit == "steps":
            ax.xaxis.set_major_formatter(_thousands())
    handles, labels = [], []
    for a in axes:
        for h, lab in zip(*a.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=7.5,
               frameon=False)
    fig.suptitle(f"Seed CNN on N = {n_train:,} permuted MNIST labels: when each run memorised or died", fontsize=11)
    return fig


def _thousands():
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0")


def _parse_prediction(text: Optional[str]):
    if text is None:
        return None
    try:
        parts = [float(x.replace(",", "")) for x in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not all(math.isfinite(x) and x > 0 for x in parts) or not parts[1] <= parts[0] <= parts[2]:
        raise ConfigError(f"--predicted-steps {text!r}: expected MEDIAN:LOW:HIGH, three positive step counts with "
                          f"LOW <= MEDIAN <= HIGH, e.g. 16795:6330:33115")
    return tuple(parts)


def write(stores, n_train: int, budget: int, out=None, prediction=None) -> str:
    """The table as Markdown; with out, also intervention.md, intervention.csv and the fates figure there."""
    arms = load_arms(stores, n_train, budget)
    rows = arm_rows(arms)
    text = format_markdown(rows, n_train, budget, prediction, arms)
    if out is not None:
        from rote.atomic import write_atomic
        from rote.reporting.style import save

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "intervention.md", text.encode())
        write_atomic(out / "intervention.csv", format_csv(rows).encode())
        save(fates_figure(arms, n_train, budget, prediction), out / "fates.png")
    return text


def main(argv=None) -> int:
    import sys

    ap = argparse.ArgumentParser(prog="python -m rote.reporting.intervention",
                                 description="The arms of an intervention at one N: each run's fate at one budget, "
                                             "each arm against the seed's recipe.")
    ap.add_argument("stores", nargs="+", help="stores of runs (`rote sweep --out`); runs are grouped by recipe")
    ap.add_argument("--n-train", type=int, required=True, help="the N whose runs are compared")
    ap.add_argument("--budget", type=int, required=True, help="the common budget in epochs")
    ap.add_argument("--predicted-steps", metavar="MEDIAN:LOW:HIGH",
                    help="a prediction of the optimiser steps to memorise, to check the runs against")
    ap.add_argument("--out", help="also write intervention.md, intervention.csv and fates.png here")
    args = ap.parse_args(argv)
    try:
        print(write(args.stores, args.n_train, args.budget, args.out, _parse_prediction(args.predicted_steps)), end="")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
