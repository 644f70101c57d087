"""`rote suspects`: the training labels most likely wrong, for a run or every run of a store, as files.

For each run: suspects.csv (every training example, most suspicious first:
rank, index into the dataset, the given label, the label the model predicted
most often over its presentations, the score; and, where rote changed the
labels itself, the true label and whether it was changed), suspects.png (the
top ones with both labels) and one line of summary. The ranking is
rote.analysis.suspects'.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from rote.analysis.scores import format_csv
from rote.analysis.suspects import DEFAULT_SCORE, Judgement, judge, rank, suspect_rows
from rote.atomic import write_atomic
from rote.errors import RoteError
from rote.experiments.record import CONFIG, SCORES_CSV, read_record


def _judged(cfg: dict) -> bool:
    """Did rote change this run's labels itself (so that its true labels are known)?"""
    return str(cfg.get("labels")) not in ("true", "True")


def suspects_of_run(run_dir: Path, out: Path, score: str = DEFAULT_SCORE, top: int = 24) -> tuple[list, str]:
    """Write suspects.csv and suspects.png for one run into out; (rows, the summary line)."""
    from rote.reporting.examples_figures import images_for, read_scores

    run_dir = Path(run_dir)
    if not (run_dir / SCORES_CSV).is_file():
        raise RoteError(f"{run_dir} has no {SCORES_CSV}: the run was recorded with record_examples false; "
                        f"rerun it with --record-examples true")
    rec = read_record(run_dir)
    scores = read_scores(run_dir)
    ranking = rank(scores, score)
    judged = _judged(rec["config"]) and bool(np.asarray(scores["changed"]).any())
    rows = suspect_rows(scores, ranking, judged=judged)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "suspects.csv", format_csv(rows).encode())
    images, why = images_for(rec["config"])
    drawn = ""
    if images is not None:
        _grid(rows[:top], images, score, rec["config"], out / "suspects.png")
        drawn = ", suspects.png"
    line = _summary(run_dir, rows, score, judge(scores, ranking) if judged else None, top) + (
        f" ({out}/suspects.csv{drawn})" + ("" if images is not None else f"; no image grid: {why}"))
    return rows, line


def _summary(run_dir: Path, rows: list, score: str, j: Optional[Judgement], top: int) -> str:
    n = len(rows)
    head = rows[:top]
    line = f"{run_dir.name}: {n:,} examples ranked by {score}"
    if rows and "believed_label" in rows[0]:
        believed = [r for r in head if r["believed_label"] != r["given_label"]]
        line += (f"; of the top {len(head)}, {len(believed)} were predicted most often as another class than "
                 f"their label")
    else:
        line += " (a record made before rote kept each prediction: no believed label)"
    if j is not None:
        line += (f"; against the {j.changed:,} labels rote changed: AUROC {j.auroc:.3f}, precision at "
                 f"{j.changed:,} {j.precision_at_k:.3f} (chance {j.changed / j.n:.3f})")
    return line


def _grid(rows: list, images: np.ndarray, score: str, cfg: dict, path: Path) -> None:
    from rote.reporting.style import plt, save

    ncols = 8
    nrows = max(1, math.ceil(len(rows) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.1 * ncols, 1.35 * nrows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, r in zip(axes.flat, rows):
        ax.imshow(images[r["index"]], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        b = r.get("believed_label")
        wrong = r.get("changed")
        ax.set_title(f"#{r['rank']} given {r['given_label']}" + (f"\nbelieves {b}" if b is not None else ""),
                     fontsize=6.5, pad=2, color="#d62728" if wrong else "0.1")
    what = (f"the {len(rows)} training labels most likely wrong, by {score} (lowest first)"
            + ("; red: a label rote changed" if any(r.get("changed") for r in rows) else ""))
    fig.suptitle(f"{cfg.get('dataset')}, {cfg.get('labels')} labels, {cfg.get('model')}, seed {cfg.get('seed')}: "
                 f"{what}", fontsize=8)
    save(fig, path)


def suspects(path, out=None, score: str = DEFAULT_SCORE, top: int = 24,
             log: Callable[[str], None] = print) -> list[Path]:
    """Suspects of a run directory (into out, default the run directory) or of every run of a store with
    per-example records (into out/<key>/, default STORE/suspects/<key>/); returns the suspects.csv paths."""
    from rote.experiments.store import Store

    path = Path(path)
    if (path / CONFIG).is_file():
        dest = Path(out) if out is not None else path
        _, line = suspects_of_run(path, dest, score, top)
        log(line)
        return [dest / "suspects.csv"]
    if not (path / "runs").is_dir():
        raise RoteError(f"{path} is neither a run directory (config.json) nor a store (runs/); give one made by "
                        f"`rote run` or `rote sweep`")
    base = Path(out) if out is not None else path / "suspects"
    written = []
    for r in Store(path).records():
        if not (r["dir"] / SCORES_CSV).is_file():
            continue
        _, line = suspects_of_run(r["dir"], base / r["key"], score, top)
        log(line)
        written.append(base / r["key"] / "suspects.csv")
    if not written:
        raise RoteError(f"no run in {path} has a {SCORES_CSV} (its runs were recorded with record_examples false)")
    return written
