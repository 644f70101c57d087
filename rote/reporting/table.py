"""The summary table of a sweep as text, Markdown and CSV: one row per condition, mean ± std over seeds.

Formatting only: the numbers are ``results.summary_rows``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

from rote.atomic import write_atomic
from rote.experiments.record import BUDGET_SPENT, DIVERGED
from rote.reporting.results import (MEMORIZATION_COLUMNS, detection_rows, load, memorization_rows, outcome_column,
                                    summary_rows)
from rote.training.metrics import outcome_word


def _pct(m, s) -> str:
    if m is None:
        return "-"
    return f"{100 * m:.1f}%" if s is None else f"{100 * m:.1f} ± {100 * s:.1f}%"


def _plain(m, s, digits=1) -> str:
    if m is None:
        return "-"
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def share(row, outcome: str) -> str:
    """'6/10 memorised (31-83%)': k of n with its 95% Wilson interval."""
    col = outcome_column(outcome)
    n, k = row["n_seeds"], row[f"n_{col}"]
    lo, hi = row[f"frac_{col}_low"], row[f"frac_{col}_high"]
    word = outcome_word(outcome)
    return f"{k}/{n} {word} ({100 * lo:.0f}-{100 * hi:.0f}%)"


def median_time(row, unit: str = "epoch", digits: int = 0) -> str:
    """The median time to memorise (cumulative incidence) with its 95% interval, or 'not reached'."""
    m = row[f"median_{unit}"]
    if m is None:
        return "not reached"
    lo, hi = row[f"median_{unit}_low"], row[f"median_{unit}_high"]
    f = lambda v: "?" if v is None else f"{v:.{digits}f}"  # noqa: E731  (an interval edge never reached)
    return f"{m:.{digits}f} ({f(lo)}-{f(hi)})"


def _others(row) -> str:
    parts = [f"{row['n_' + outcome_column(o)]} {o}" for o in (BUDGET_SPENT, DIVERGED) if row["n_" + outcome_column(o)]]
    return ", ".join(parts) or "-"


def display_columns(rows: list[dict], varying: list[str]) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headers, cells and right-alignment flags of the human-readable table."""
    headers = ["condition", "seeds", "train acc", "test acc", "test chance band", "epochs run", "memorised",
               "collapsed", "median epochs to memorise", "median s to memorise", "other outcomes"]
    right = [False] + [True] * 9 + [False]
    cells = []
    for r in rows:
        band = ("-" if r["chance_low_mean"] is None or not chance_applies(r.get("labels"))
                else f"{100 * r['chance_low_mean']:.1f}-{100 * r['chance_high_mean']:.1f}%")
        cells.append([r["condition"], str(r["n_seeds"]),
                      _pct(r["train_acc_mean"], r["train_acc_std"]), _pct(r["test_acc_mean"], r["test_acc_std"]), band,
                      _plain(r["epochs_mean"], r["epochs_std"]), share(r, "memorized"), share(r, "collapsed"),
                      median_time(r), median_time(r, "seconds", 1), _others(r)])
    if any(r.get("memorized_bits_mean") is not None for r in rows):
        # the bits the models hold about their random labels (rote.analysis.capacity), where defined
        headers.insert(6, "memorised bits (per parameter)")
        right.insert(6, True)
        for r, c in zip(rows, cells):
            c.insert(6, "-" if r.get("memorized_bits_mean") is None else
                     f"{_plain(r['memorized_bits_mean'], r['memorized_bits_std'])} "
                     f"({r['bits_per_parameter_mean']:.3g})")
    return headers, cells, right


NOTE = ("accuracies, epochs run and memorised bits: mean ± std over seeds (sample std); memorised bits: what "
        "the models save, in bits, when coding their random labels over the best code that ignores the images "
        "(Morris et al. 2025; for partial and flipped labels only the changed ones are scored), per parameter "
        "in brackets; memorised, collapsed: k of n seeds "
        "with a 95% Wilson interval; median epochs (seconds of training) to memorise: the median of the "
        "cumulative incidence of memorisation over all seeds (Aalen-Johansen), collapsed and diverged runs "
        "counted as competing events (they can never memorise) and only runs whose budget ran out censored, "
        "with a 95% interval (log-log band), 'not reached' when the incidence stays below one half, '?' for an "
        "interval edge the data do not reach; test chance band: 2.5-97.5% of the "
        "test accuracy under random relabellings of each model's predictions, mean over seeds; uniform guessing "
        "gives 10%.")


def format_text(rows: list[dict], varying: list[str], title: str = "") -> str:
    headers, cells, right = display_columns(rows, varying)
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]

    def line(vals):
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(vals, widths, right)).rstrip()

    out = [title] if title else []
    out += [line(headers), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    if not cells:
        out.append("(no finished runs in the store yet)")
    out += ["", NOTE]
    return "\n".join(out) + "\n"


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|")


def format_markdown(rows: list[dict], varying: list[str], title: str = "") -> str:
    headers, cells, right = display_columns(rows, varying)
    out = [f"# {title}", ""] if title else []
    out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
    out.append("|" + "|".join("---:" if r else ":---" for r in right) + "|")
    out += ["| " + " | ".join(_md_cell(v) for v in c) + " |" for c in cells]
    out += ["", NOTE, ""]
    return "\n".join(out)


def format_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    else:
        buf.write("condition,n_seeds\n")
    return buf.getvalue()


def write_table(store, out_dir=None, where: Optional[dict] = None) -> tuple[str, list[Path]]:
    """Print-ready text table; writes summary.csv and summary.md to out_dir (default: the store).

    where: {setting: value} summarises only the matching runs (see results.load).
    """
    data = load(store, where)
    rows = summary_rows(data)
    out_dir = Path(out_dir) if out_dir is not None else data.store.root
    title = f"sweep '{data.name}': {data.n_runs} runs in {len(data.conditions)} conditions"
    text = format_text(rows, data.varying, title)
    paths = [out_dir / "summary.csv", out_dir / "summary.md"]
    write_atomic(paths[0], format_csv(rows).encode())
    write_atomic(paths[1], format_markdown(rows, data.varying, title).encode())
    det = detection_rows(data)
    if det:
        more = [out_dir / "detection_summary.csv", out_dir / "detection_summary.md"]
        write_atomic(more[0], format_csv(det).encode())
        write_atomic(more[1], format_detection_markdown(det, f"sweep '{data.name}': finding the changed labels")
                     .encode())
        paths += more
    if len(rows) == 2:
        text += "\n" + format_comparison(rows)
    if data.varying == ["n_train"]:
        scaling = format_scaling(data)
        if scaling:
            text += "\n" + scaling
    mem_rows, mem_summaries = memorization_rows(data)
    if mem_summaries:
        text += "\n" + format_memorization(mem_summaries)
    if mem_rows:
        paths.append(out_dir / "memorization.csv")
        write_atomic(paths[-1], format_csv([{k: r[k] for k in MEMORIZATION_COLUMNS} for r in mem_rows]).encode())
    return text, paths


PREDICT_AT = (20_000, 30_000, 60_000)


def format_scaling(data) -> str:
    """A sweep over N alone: epochs and optimiser steps to memorise against N as a power law (the runs that
    memorised; rote.reporting.scaling), with predictions for larger N; '' with fewer than two sizes."""
    from rote.reporting.scaling import fit_power_law

    pts = []
    for c in data.conditions:
        for r in c.runs:
            e = r.fit_epoch()[0]
            n_fit, bs = r.result.get("n_fit"), r.config.get("batch_size")
            if e is not None and n_fit and bs:
                pts.append((c.settings["n_train"], e, e * -(-int(n_fit) // int(bs))))
    if len({p[0] for p in pts}) < 2:
        return ""
    sizes = sorted({p[0] for p in pts})
    out = [f"time to memorise against N (power law, least squares in log-log over the {len(pts)} runs that "
           f"memorised at N = {', '.join(f'{n:,}' for n in sizes)}; 95% bootstrap intervals over runs):"]
    for col, what in ((1, "epochs"), (2, "optimiser steps")):
        fit = fit_power_law([p[0] for p in pts], [p[col] for p in pts])
        preds = "; ".join(f"N = {n:,}: {t:,.0f} ({lo:,.0f}-{hi:,.0f})" for n in PREDICT_AT
                          for t, lo, hi in [fit.predict(n)])
        out.append(f"  {what} ∝ N^{fit.slope:.2f} ({fit.slope_low:.2f} to {fit.slope_high:.2f}); predicted "
                   f"median {what}: {preds}")
    out.append("  (collapsed runs never memorise and are not in the fit; see the memorised and collapsed shares "
               "above)")
    return "\n".join(out) + "\n"


def format_comparison(rows: list[dict]) -> str:
    """Two conditions: the differences of their memorise and collapse rates, with an interval and a test."""
    from rote.reporting.compare import rate_difference

    a, b = rows
    out = [f"comparison, {b['condition']} against {a['condition']} (second minus first):"]
    for o, word in (("memorized", "memorised"), ("collapsed", "collapsed")):
        d = rate_difference(a[f"n_{outcome_column(o)}"], a["n_seeds"], b[f"n_{outcome_column(o)}"], b["n_seeds"])
        out.append("  " + d.words(word))
    out.append(f"  median epochs to memorise: {median_time(a)} against {median_time(b)}")
    return "\n".join(out) + "\n"


def format_memorization(summaries) -> str:
    """The memorisation section of the printed table: per condition, mean mem of changed and kept labels."""
    def mean(m, k):
        return "-" if m is None else f"{m:.3f} over {k:,}"

    out = ["memorisation (Feldman & Zhang 2020: share correct when trained on an example less when not; "
           "rows in memorization.csv):"]
    for s in summaries:
        if s.note:
            out.append(f"  {s.condition}: no estimates from {s.n_models} runs: {s.note}")
            continue
        out.append(f"  {s.condition}: mean mem {mean(s.mem_changed, s.n_changed)} changed labels, "
                   f"{mean(s.mem_kept, s.n_kept)} kept; from {s.n_models} models, each example held in by "
                   f"{s.n_in[0]}-{s.n_in[1]} and out by {s.n_out[0]}-{s.n_out[1]}")
    return "\n".join(out) + "\n"


DETECTION_NOTE = ("Each score ranks the training examples, most suspicious first (rote.analysis.detection); "
                  "AUROC: the chance that a changed label ranks above a kept one (0.5 = chance, undefined without "
                  "changed labels); precision@k: the share of changed labels among the k top-ranked examples, k = "
                  "the number of changed labels (chance k/n). Mean ± std over the seeds with a detection.csv; "
                  "conditions without changed labels (true labels) have nothing to find and are left out.")


def chance_applies(labels) -> bool:
    """Does a test accuracy's chance band say something for runs with these labels? Not for true labels, which
    a network can learn: there the band is what luck would give a network that had learned nothing.
    (None: a table whose labels do not vary; the band is shown.)"""
    return labels is None or str(labels) not in ("true", "True")


def detection_cells(det: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The detection table's cells; conditions with no changed label (true labels), where no score has
    anything to find, are left out rather than shown as rows of '-'."""
    headers = ["condition", "score", "seeds", "AUROC", "precision@k", "k", "chance precision"]
    cells = [[d["condition"], d["score"], str(d["n_runs"]), _plain(d["auroc_mean"], d["auroc_std"], 3),
              _plain(d["precision_at_k_mean"], d["precision_at_k_std"], 3), f"{d['k_mean']:.0f}",
              f"{d['chance_precision']:.3f}"] for d in det if d["auroc_mean"] is not None]
    return headers, cells


def format_detection_markdown(det: list[dict], title: str = "") -> str:
    headers, cells = detection_cells(det)
    out = [f"# {title}", ""] if title else []
    out.append("| " + " | ".join(headers) + " |")
    out.append("|:---|:---|" + "---:|" * (len(headers) - 2))
    out += ["| " + " | ".join(_md_cell(v) for v in c) + " |" for c in cells]
    out += ["", DETECTION_NOTE, ""]
    return "\n".join(out)
