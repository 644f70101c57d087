"""The capacity curve: memorised bits against N for small models on uniform random labels, and bits per parameter.

A run on uniform random labels (``labels: random``) over K classes memorises

    bits = n_fit * log2 K - n_fit * train_loss / ln 2

where train_loss is the mean cross-entropy in nats on the full training part in
eval mode (result.json ``train_loss``; history.csv ``train_loss_full`` at each
evaluation), as rote.analysis.capacity defines it (Morris et al., 2025). For a
fixed model the bits grow with N until the model is full, then flatten: the
plateau is its capacity.

Convergence rule, one for the search and the study: a run is still rising (its
bits are a lower bound) when its memorised bits grew by more than 1% of their
final value over the last 20% of its epochs, judged on the full-train
evaluations; a run that learned nothing (bits <= 0) is a lower bound too.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from rote.analysis.capacity import bits_from_mean_loss
from rote.reporting.figures import Skip, _jitter_log, figure
from rote.reporting.style import condition_color, legend_below, subplots

# a plateau at or above this share of what its labels offer (N log2 K) is the data's ceiling, not a capacity
CEILING = 0.95

RISE_WINDOW = 0.2  # the last fifth of the epochs
RISE_TOLERANCE = 0.01  # may add at most 1% of the final bits
# published capacities to compare with, in bits per parameter
MORRIS = 3.6  # Morris et al. 2025, GPT-style transformers
COLLINS = 5.0  # Collins, Sohl-Dickstein and Sussillo, ICLR 2017, RNNs after extensive hyperparameter search


def bits_from_loss(n_fit: int, loss_nats: float, classes: int = 10) -> float:
    """Memorised bits of n_fit uniform random labels over ``classes`` at a mean eval-mode loss of ``loss_nats``."""
    return bits_from_mean_loss(n_fit, loss_nats, math.log2(classes))


def still_rising(epochs: Sequence[float], bits: Sequence[float]) -> bool:
    """True when the bits grew by more than RISE_TOLERANCE of their final value over the last RISE_WINDOW epochs.

    ``epochs`` and ``bits`` are the evaluations of one run in order. The value
    compared with the last is the last evaluation at or before 80% of the final
    epoch (the first one where none is that early).
    """
    e = np.asarray(epochs, dtype=float)
    b = np.asarray(bits, dtype=float)
    if b.size == 0 or not np.isfinite(b[-1]) or b[-1] <= 0:
        return True
    if b.size == 1:
        return True  # one evaluation cannot show a plateau
    early = np.nonzero(e <= e[-1] * (1.0 - RISE_WINDOW))[0]
    ref = b[early[-1]] if early.size else b[0]
    return bool(b[-1] - ref > RISE_TOLERANCE * b[-1])


# two-sided 95% Student t quantiles by degrees of freedom (scipy.stats.t.ppf(0.975, df)), so that the
# reporting needs no scipy; beyond 30 the normal's 1.96 is within 4%
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 25: 2.060, 30: 2.042}


def t975(df: int) -> float:
    if df in T975:
        return T975[df]
    below = [d for d in T975 if d < df]
    return T975[max(below)] if df < 30 else 1.96


def t_interval(values: Sequence[float]) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """(mean, low, high): the mean with its 95% Student t interval; low = high = None for fewer than two values."""
    xs = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if xs.size == 0:
        return None, None, None
    m = float(xs.mean())
    if xs.size < 2:
        return m, None, None
    half = t975(xs.size - 1) * float(xs.std(ddof=1)) / math.sqrt(xs.size)
    return m, m - half, m + half


# -- per run ---------------------------------------------------------------------


def _classes(result: dict) -> int:
    """K from the run's own record: uniform guessing on its test part is right 1/K of the time."""
    u = (result.get("chance") or {}).get("uniform")
    return int(round(1.0 / u)) if u else 10


def run_bits(record: dict, history: Optional[dict] = None) -> Optional[dict]:
    """A run's memorised bits at the end and along training; None for runs not on uniform random labels, and for
    runs whose final loss is not finite (diverged).

    Returns {'bits', 'ideal_bits', 'classes', 'parameters', 'bits_per_parameter', 'epochs_curve', 'bits_curve',
    'rising'}; the curve is every full-train evaluation in history.csv (``train_loss_full``).
    """
    cfg, res = record["config"], record["result"]
    if cfg.get("labels") != "random" or res.get("train_loss") is None or not res.get("n_fit"):
        return None
    if not math.isfinite(float(res["train_loss"])):  # a diverged run: its code length says nothing
        return None
    n, k = int(res["n_fit"]), _classes(res)
    bits = bits_from_loss(n, float(res["train_loss"]), k)
    ep, curve = [], []
    if history is not None:
        for e, loss in zip(history.get("epoch", []), history.get("train_loss_full", [])):
            if loss is not None and math.isfinite(float(loss)):
                ep.append(float(e))
                curve.append(bits_from_loss(n, float(loss), k))
    params = res.get("parameters")
    return {"bits": bits, "ideal_bits": n * math.log2(k), "classes": k, "parameters": params,
            "bits_per_parameter": bits / params if params else None, "epochs_curve": ep, "bits_curve": curve,
            "rising": still_rising(ep, curve) if curve else True}


# -- per model -------------------------------------------------------------------


def capacity_points(data) -> dict[str, list[dict]]:
    """model -> one point per N (ascending): {'n', 'runs': [run_bits + seed], 'mean', 'low', 'high', 'rising'}.

    ``data`` is rote.reporting.results.load's SweepData; only runs on uniform random labels count.
    """
    per: dict[str, dict[int, list]] = {}
    for c in data.conditions:
        for r in c.runs:
            b = run_bits(r, data.history(r))
            if b is None:
                continue
            b["seed"] = r["config"]["seed"]
            per.setdefault(r["config"]["model"], {}).setdefault(int(r["result"]["n_fit"]), []).append(b)
    out = {}
    for model, by_n in per.items():
        pts = []
        for n in sorted(by_n):
            runs = sorted(by_n[n], key=lambda b: b["seed"])
            m, lo, hi = t_interval([b["bits"] for b in runs])
            pts.append({"n": n, "runs": runs, "mean": m, "low": lo, "high": hi,
                        "rising": any(b["rising"] for b in runs)})
        out[model] = pts
    return out


def capacity_rows(data) -> list[dict]:
    """One row per model: its capacity (the plateau of memorised bits over N) and bits per parameter.

    The capacity is the largest mean over seeds of the bits at one N (the plateau point). Its interval is the
    95% t-interval over that N's seeds. It is a lower bound when a run at that N was still rising at the end of
    its epochs (RISE rule above), or when it is the largest N measured and the mean bits there grew by more than
    5% over the next smaller N (the curve has not flattened: a larger N may hold more).
    """
    rows = []
    for model, pts in capacity_points(data).items():
        best = max(range(len(pts)), key=lambda i: pts[i]["mean"])
        p = pts[best]
        params = next((b["parameters"] for b in p["runs"] if b["parameters"]), None)
        growing = (best == len(pts) - 1 and (len(pts) == 1 or p["mean"] > 1.05 * pts[best - 1]["mean"]))
        bpp = [b["bits"] / params for b in p["runs"]] if params else []
        m, lo, hi = t_interval(bpp)
        rows.append({"model": model, "parameters": params, "plateau_n": p["n"], "seeds": len(p["runs"]),
                     "sizes": len(pts), "capacity_bits": p["mean"], "bits_low": p["low"], "bits_high": p["high"],
                     "bits_per_parameter": m, "bpp_low": lo, "bpp_high": hi,
                     "lower_bound": bool(p["rising"] or growing),
                     "why_lower": ", ".join(w for w, on in (("still rising in epochs", p["rising"]),
                                                            ("still rising in N", growing)) if on),
                     "vs_morris": None if m is None else m / MORRIS, "vs_collins": None if m is None else m / COLLINS})
    rows.sort(key=lambda r: (r["model"].split(":")[0], r["parameters"] or 0))
    return rows


def format_markdown(rows: list[dict]) -> str:
    head = ("| model | parameters | plateau at N | seeds | capacity (bits) | bits per parameter | "
            "converged? | / 3.6 (Morris) | / 5 (Collins) |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        def iv(m, lo, hi, d):
            if m is None:
                return "-"
            return f"{m:,.{d}f}" + ("" if lo is None else f" ({lo:,.{d}f} to {hi:,.{d}f})")
        conv = f"lower bound: {r['why_lower']}" if r["lower_bound"] else "yes"
        pre = ">= " if r["lower_bound"] else ""
        lines.append(f"| {r['model']} | {r['parameters'] or 0:,} | {r['plateau_n']:,} | {r['seeds']} | "
                     f"{pre}{iv(r['capacity_bits'], r['bits_low'], r['bits_high'], 0)} | "
                     f"{pre}{iv(r['bits_per_parameter'], r['bpp_low'], r['bpp_high'], 3)} | {conv} | "
                     + ("-" if r["vs_morris"] is None else f"{r['vs_morris']:.2f}") + " | "
                     + ("-" if r["vs_collins"] is None else f"{r['vs_collins']:.2f}") + " |")
    lines.append("")
    lines.append("Capacity: the largest mean over seeds of memorised bits at one N; intervals are 95% Student t "
                 "over that N's seeds (none for one seed). '>=': a lower bound, because a run at that N was still "
                 "rising at its last epoch (its bits grew by more than 1% over its last 20% of epochs) or because "
                 "it is the largest N measured and the bits still grew by more than 5% from the N below. The last "
                 "two columns divide bits per parameter by 3.6 (Morris et al. 2025, GPT-style models) and 5 "
                 "(Collins, Sohl-Dickstein and Sussillo 2017, RNNs).")
    return "\n".join(lines) + "\n"


# -- the figure ------------------------------------------------------------------


@figure("capacity_bits", "Capacity: memorised bits against N")
def capacity_bits(data):
    """Memorised bits against N per model (log x) with its plateau, and each model's bits along training."""
    every = capacity_points(data)
    points = {m: p for m, p in every.items() if len(p) >= 2}
    single = sorted(set(every) - set(points))
    if not points:
        raise Skip("needs runs on uniform random labels (labels: random) at two or more values of n_train")
    rows = {r["model"]: r for r in capacity_rows(data)}
    order = sorted(points, key=lambda m: (m.split(":")[0], rows[m]["parameters"] or 0))
    fig, (ax, ax_ep) = subplots(ncols=2, width=4.2, height=3.4)
    ns = sorted({p["n"] for pts in points.values() for p in pts})
    k = next(iter(points.values()))[0]["runs"][0]["classes"]
    xs = np.geomspace(min(ns), max(ns), 50)
    ax.plot(xs, xs * math.log2(k), color="0.6", lw=1, ls=":", label=f"every label (N log2 {k})")
    for i, m in enumerate(order):
        pts, row, color = points[m], rows[m], condition_color(i)
        cnn = not m.startswith("mlp")  # two families, two line styles: a CNN's line is never lost under an MLP's
        ax.plot([p["n"] for p in pts], [p["mean"] for p in pts], color=color, lw=1.5, ls="-." if cnn else "-",
                zorder=4 if cnn else 2, label=f"{m} ({row['parameters'] or 0:,} parameters), mean over seeds")
        for p in pts:
            for j, b in enumerate(p["runs"]):
                # each run on top of the lines; hollow: still rising when it stopped, a lower bound
                ax.scatter([_jitter_log(p["n"], j, len(p["runs"]))], [b["bits"]], s=18, zorder=5, lw=0.9,
                           marker="s" if cnn else "o", facecolors="none" if b["rising"] else color,
                           edgecolors=color)
        plateau_pt = [p for p in pts if p["n"] == row["plateau_n"]][0]
        # a model that holds (nearly) every label it was given shows the data's ceiling, not its capacity:
        # no capacity line for it
        if plateau_pt["mean"] < CEILING * row["plateau_n"] * math.log2(k):
            ax.axhline(row["capacity_bits"], color=color, ls="--", lw=1, alpha=0.8, zorder=1)
        # right: the runs at the plateau N along training, their mean as a line, the end hollow if still rising
        plateau = [p for p in pts if p["n"] == row["plateau_n"]][0]
        per: dict = {}
        for b in plateau["runs"]:
            for e, v in zip(b["epochs_curve"], b["bits_curve"]):
                per.setdefault(e, []).append(v)
        ep = sorted(per)
        if ep:
            ys = [sum(per[e]) / len(per[e]) for e in ep]
            ax_ep.plot(ep, ys, color=color, lw=1.5, ls="-." if cnn else "-",
                       label=f"{m} along training, at N = {row['plateau_n']:,}")
            ax_ep.scatter([ep[-1]], [ys[-1]], s=28, zorder=3, lw=1.2, edgecolors=color, marker="s" if cnn else "o",
                          facecolors="none" if plateau["rising"] else color)
    ax.scatter([], [], s=16, facecolors="none", edgecolors="0.3", lw=0.9,
               label="hollow: still rising at its last epoch (lower bound)")
    ax.plot([], [], color="0.3", ls="--", lw=1, label="highest mean over N: the capacity (a lower bound while "
                                                    "hollow; none where a model holds every label)")
    ax.set_xscale("log")
    # a run that learned nothing has bits <= 0, which a log axis would silently drop
    positive = all(b["bits"] > 0 for pts in points.values() for p in pts for b in p["runs"])
    ax.set_yscale("log" if positive else "linear")
    if positive:  # a range within one decade gets no labelled ticks from the default log locator
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ns)
    ax.set_xticklabels([f"{n:,}" for n in ns], rotation=45 if len(ns) > 4 else 0)
    ax.minorticks_off()
    ax.set_xlabel("training images N (log scale)")
    ax.set_ylabel("memorised bits" + (" (log scale)" if positive else ""))
    ax.set_title("Memorised bits against N")
    ax_ep.set_xlabel("epoch")
    ax_ep.set_ylabel("memorised bits")
    ax_ep.set_title("Along training, at each model's plateau N")
    ax_ep.set_ylim(bottom=0)
    legend_below(fig, [ax, ax_ep], ncol=2)
    lb = [m for m in order if rows[m]["lower_bound"]]
    caption = ("Memorised bits on uniform random labels (Morris et al. 2025: N log2 K minus the code length of the "
               "labels under the model, eval mode, whole training part) against N, one line per model (mean over "
               "seeds, runs as dots, hollow where a run was still rising at its last epoch); dashed lines mark each "
               "model's plateau, the largest mean at one N; the dotted line is every label memorised. Right: mean "
               "bits along training at each model's plateau N, the end hollow where a run there was still rising. "
               + ("Lower bounds: " + ", ".join(lb) + "." if lb else "Every plateau met the convergence rule.")
               + (" Not drawn (one N so far): " + ", ".join(single) + "." if single else ""))
    return fig, caption


def main(argv=None) -> int:
    """python -m rote.reporting.capacity STORE: print the capacity table of a store as Markdown."""
    import sys

    from rote.reporting.results import load

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m rote.reporting.capacity STORE", file=sys.stderr)
        return 2
    rows = capacity_rows(load(argv[0]))
    if not rows:
        print(f"{argv[0]}: no finished runs on uniform random labels (labels: random) yet", file=sys.stderr)
        return 2
    print(format_markdown(rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
