"""Per-example pictures of a run, from its scores.csv (and the dataset's images).

Three views of which training examples a network learns, and when:

- ``draw_grid``: the top-k training examples by a score (default: learned last,
  ``first_learned`` highest, never learned first), each with its given and true
  label above it, red where they differ. The image is the one the network
  trained on (rebuilt with rote.data.prepare, so shuffled pixels are shuffled).
- ``draw_first_learned``: the epoch each example was first predicted right,
  kept against changed labels (Arpit et al. 2017: clean examples are learned first).
- ``draw_data_map``: confidence against variability of the given label's
  probability, coloured by changed (Swayamdipta et al. 2020, dataset cartography).

Each draws into axes it is given, so the same drawing serves one run
(``plot_examples``: ``rote plot RUN_DIR``) and a sweep (one representative
run per condition, rote.reporting.figures).
"""

from __future__ import annotations

import csv
import functools
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from rote.experiments.record import SCORES_CSV, read_record
from rote.reporting.results import labels_in_words, setting_in_words
from rote.reporting.style import plt, save, subplots

KEPT, CHANGED = "#1f77b4", "#d62728"


def read_scores(run_dir: Path) -> dict[str, np.ndarray]:
    """scores.csv as columns: index, label, true_label (int), changed (bool), every score (float, NaN kept)."""
    with open(Path(run_dir) / SCORES_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    out = {}
    for k in rows[0]:
        col = [r[k] for r in rows]
        if k in ("index", "label", "true_label", "believed_label"):
            out[k] = np.array(col, dtype=np.int64)
        elif k == "changed":
            out[k] = np.array([v == "True" for v in col])
        else:
            out[k] = np.array([float(v) if v != "" else math.nan for v in col])
    return out


def top_k(scores: dict, score: str = "first_learned", k: int = 24) -> np.ndarray:
    """Row positions of the k highest values of `score`, NaN (never learned) first; ties by position."""
    s = np.where(np.isnan(scores[score]), np.inf, scores[score])
    return np.argsort(-s, kind="stable")[:k]


@functools.lru_cache(maxsize=2)
def _dataset(name: str):
    from rote.data.sources import load_dataset

    return load_dataset(name, allow_download=False, log=lambda s: None)


@functools.lru_cache(maxsize=4)
def _trained_images(config_json: str) -> np.ndarray:
    """(n_fit, H, W[, C]) in [0, 1]: the training images as this run saw them (its input corruption)."""
    from rote.config import RunConfig
    from rote.data.prepare import prepare

    cfg = RunConfig.from_dict(json.loads(config_json))
    x = prepare(_dataset(cfg.dataset), cfg).x_part()  # (n_part, C, H, W) in [-0.5, 0.5], by dataset index
    x = np.clip(x + 0.5, 0.0, 1.0)
    return x[:, 0] if x.shape[1] == 1 else np.transpose(x, (0, 2, 3, 1))


def images_for(cfg: dict) -> tuple[Optional[np.ndarray], str]:
    """(images, '') or (None, why not): the data is read from rote's cache only, never downloaded."""
    try:
        return _trained_images(json.dumps(cfg, sort_keys=True)), ""
    except Exception as e:  # noqa: BLE001  (no data: the grid is skipped with a note, the rest is drawn)
        return None, f"images of {cfg.get('dataset')} unavailable ({type(e).__name__}: {e})"


def score_words(score: str) -> str:
    return {"first_learned": "learned last (highest first-learned epoch; never learned first)"}.get(
        score, f"highest {score.replace('_', ' ')}")


def draw_grid(fig, spec, scores: dict, images: np.ndarray, score: str = "first_learned", k: int = 24,
              ncols: int = 8, title: str = ""):
    """k small image panels in a subgridspec of `spec`, given/true label above each (red if they differ)."""
    pick = top_k(scores, score, k)
    nrows = max(1, math.ceil(len(pick) / ncols))
    sub = spec.subgridspec(nrows, ncols, hspace=0.55, wspace=0.08)
    first = None
    for j in range(nrows * ncols):
        ax = fig.add_subplot(sub[j // ncols, j % ncols])
        ax.set_axis_off()
        first = first or ax
        if j >= len(pick):
            continue
        i = pick[j]
        ax.imshow(images[scores["index"][i]], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        given, true = int(scores["label"][i]), int(scores["true_label"][i])
        v = scores[score][i]
        ax.set_title(f"{given} / {true}\n" + ("never" if np.isnan(v) else f"{v:g}"), fontsize=6.5, pad=2,
                     color=CHANGED if given != true else "0.1")
    if title and first is not None:
        import textwrap

        # wrapped to the grid's width: a longer line would widen the saved figure and shrink the images
        first.text(0, 1.6, textwrap.fill(title, 13 * ncols), transform=first.transAxes, fontsize=8.5, va="bottom",
                   ha="left")


def _epoch_or_never(scores: dict, epochs: int) -> np.ndarray:
    fl = scores["first_learned"]
    return np.where(np.isnan(fl), epochs + 1, fl)


def draw_first_learned(ax, scores: dict, epochs: int, legend: bool = True) -> str:
    """CDFs of the first-learned epoch for kept and changed labels; 'never' counted at epochs + 1.

    Returns the groups' counts in words (for a panel's title when the legend is the figure's)."""
    e = _epoch_or_never(scores, epochs)
    xs = np.arange(1, epochs + 2)
    words = []
    for mask, color, name in ((~scores["changed"], KEPT, "kept labels"), (scores["changed"], CHANGED,
                                                                          "changed labels")):
        if mask.sum() == 0:
            continue
        cdf = [(e[mask] <= x).mean() * 100 for x in xs[:-1]]
        never = np.isnan(scores["first_learned"][mask]).mean() * 100
        # the step of the last epoch drawn out to epochs + 0.5, so it shows as a level, not a bare rise
        ax.step([*xs[:-1], epochs + 0.5], [*cdf, cdf[-1]], where="post", color=color, lw=1.6,
                label=f"{name} (n = {int(mask.sum())}; never learned: {never:.0f}%)" if legend else name)
        words.append(f"{name.split()[0]} {int(mask.sum()):,}, never {never:.0f}%")
    ax.set_xlabel("epoch first predicted right")
    ax.set_ylabel("learned by then (%)")
    ax.set_ylim(0, 101)
    ax.set_xlim(0.8, max(epochs, 1) + 0.5)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if legend:  # below the axes, never over the curves
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.42), fontsize=6.5, frameon=False)
    return "; ".join(words)


# at most this many points of the larger group (kept, changed) in a data map: more only hide each other
DATA_MAP_POINTS = 800


def draw_data_map(ax, scores: dict, legend: bool = True, fraction: float | None = None) -> str:
    """Confidence (mean probability of the given label) against its variability (std over epochs).

    Both groups are drawn as one fixed random share of their examples (``fraction``; default: the share that
    leaves at most DATA_MAP_POINTS of the larger group), so that their densities compare, light enough that the
    density shows, with a cross at each group's median: thousands of points are a blot. Returns the groups'
    counts in words (for a panel's title when the legend is the figure's).
    """
    ch = scores["changed"]
    rng = np.random.default_rng(0)  # the same sample every time the figure is drawn
    if fraction is None:
        fraction = data_map_fraction([scores])
    words = []
    for mask, color, name, z in ((~ch, KEPT, "kept labels", 2), (ch, CHANGED, "changed labels", 3)):
        idx = np.flatnonzero(mask)
        if not len(idx):
            continue
        k = max(1, round(fraction * len(idx)))
        shown = np.sort(rng.choice(idx, k, replace=False)) if k < len(idx) else idx
        x, y = scores["variability"][shown], scores["confidence"][shown]
        what = f"{name} ({len(idx):,}" + (f"; {len(shown):,} shown)" if len(shown) < len(idx) else ")")
        ax.scatter(x, y, s=4, color=color, alpha=0.4, lw=0, zorder=z,  # one alpha: densities compare
                   label=what if legend else name, rasterized=len(shown) > 500)
        ax.plot(np.nanmedian(scores["variability"][idx]), np.nanmedian(scores["confidence"][idx]), marker="P",
                ms=8, color=color, mec="white", mew=1.0, ls="none", zorder=5)
        words.append(f"{name.split()[0]} {len(idx):,}")
    ax.plot([], [], marker="P", ms=4, color="0.3", mec="white", ls="none", label="median of each group")
    ax.set_xlabel("variability (std of p(label))")
    ax.set_ylabel("confidence\n(mean p(label))")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=0)
    if legend:  # one column: as narrow as the panel, so that panels side by side keep their legends apart
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.42), fontsize=6.5, frameon=False, markerscale=2)
    return ", ".join(words) + (f"; {fraction:.0%} shown" if fraction < 1 else "")


def data_map_fraction(all_scores: list) -> float:
    """One share of examples shown in every data map of a figure: at most DATA_MAP_POINTS of its largest group."""
    largest = max((int(m.sum()) for s in all_scores for m in (s["changed"], ~s["changed"])), default=1)
    return min(1.0, DATA_MAP_POINTS / max(largest, 1))


def run_words(cfg: dict) -> str:
    return f"{labels_in_words(cfg['labels'])}, {setting_in_words('inputs', cfg.get('inputs', 'none'))}, seed {cfg['seed']}"


def plot_examples(run_dir: Path, score: str = "first_learned", k: int = 24) -> tuple[list[Path], list[str]]:
    """A run's per-example figures, beside curves.png: examples_grid, first_learned, data_map (PNG and SVG).

    Returns (paths, notes); nothing (with a note) when the run has no scores.csv.
    """
    run_dir = Path(run_dir)
    if not (run_dir / SCORES_CSV).is_file():
        return [], [f"no {SCORES_CSV} in {run_dir} (recorded with record_examples false): no per-example figures"]
    scores = read_scores(run_dir)
    rec = read_record(run_dir)
    cfg, epochs = rec.config, rec.epochs_or_budget
    paths, notes = [], []
    images, why = images_for(cfg)
    if images is None:
        notes.append(f"examples_grid not drawn: {why}")
    else:
        fig = plt.figure(figsize=(8.0, 1.25 * math.ceil(k / 8) + 0.6))
        draw_grid(fig, fig.add_gridspec(1, 1)[0], scores, images, score, k,
                  title=f"{run_words(cfg)}: the {k} training examples {score_words(score)}; "
                        "given / true label above each (red: changed), then the score")
        paths += save(fig, run_dir / "examples_grid.png")
    fig, (ax1, ax2) = subplots(ncols=2, width=3.6, height=3.4)
    draw_first_learned(ax1, scores, epochs)
    ax1.set_title("When examples are learned", fontsize=10)
    draw_data_map(ax2, scores)
    ax2.set_title("Data map", fontsize=10)
    # above both panels and their titles, clear of the rotated axis labels
    fig.suptitle(run_words(cfg), fontsize=9.5, y=1.0)
    paths += save(fig, run_dir / "examples.png")
    return paths, notes
