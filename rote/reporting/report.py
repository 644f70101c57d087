"""One self-contained HTML report of a sweep: readable offline, mailed as one file.

Title and description, the summary table, every figure (PNG embedded as
base64) with a one-line caption, the runs, the environment they ran in and the
sweep file itself. No external CSS, scripts, fonts or images; every piece of
text is escaped. Written atomically, so a reader never sees half a report.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from collections import Counter
from pathlib import Path
from typing import Optional

from rote.atomic import write_atomic
from rote.experiments.scratch import REPORT_SCRATCH, scratch
from rote.reporting.figures import FIGURES, draw_figures
from rote.reporting.results import CONFIG_FIELDS, OUTCOMES, SweepData, fit_epoch, fmt_value, load, summary_rows
from rote.reporting.results import detection_rows
from rote.training.metrics import outcome_word
from rote.reporting.table import (DETECTION_NOTE, NOTE, chance_applies, detection_cells,
                                  display_columns)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1150px; margin: 2em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.6em 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #333; max-width: 60em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #666; font-size: 0.85em; }
code { font-size: 0.95em; }
.o-memorized { color: #1f7a30; } .o-collapsed { color: #b01c1c; } .o-budget-spent { color: #b35900; }
.o-diverged { color: #6a2f8c; }
"""

def e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _pct(v, digits=2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def _table(headers, rows, right=None) -> str:
    right = right or [False] * len(headers)
    out = ['<div class="scroll"><table>', "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers)
           + "</tr></thead>", "<tbody>"]
    for r in rows:
        cells = []
        for v, num in zip(r, right):
            if isinstance(v, tuple):  # (text, css class)
                cells.append(f'<td class="{e(v[1])}">{e(v[0])}</td>')
            else:
                cells.append(f'<td class="num">{e(v)}</td>' if num else f"<td>{e(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _environment(data: SweepData) -> str:
    keys = [("rote", "rote"), ("torch", "torch"), ("numpy", "numpy"), ("python", "python"),
            ("device", "device"), ("gpu", "GPU"), ("threads", "CPU threads"), ("platform", "platform"),
            ("git_commit", "git commit"), ("git_dirty", "uncommitted changes")]
    rows = []
    for k, name in keys:
        seen = Counter(fmt_value(r["environment"].get(k)) for r in data.records if r["environment"].get(k) is not None)
        if not seen:
            continue
        if len(seen) == 1:
            rows.append((name, next(iter(seen))))
        else:
            rows.append((name, "; ".join(f"{v} ({n} runs)" for v, n in seen.most_common())))
    if not rows:
        return "<p>No environment recorded.</p>"
    return _table(["", "value"], rows)


def _shared_settings(data: SweepData) -> str:
    if not data.records:
        return ""
    first = data.records[0]["config"]
    shared = [(k, fmt_value(first.get(k))) for k in CONFIG_FIELDS
              if k != "seed" and k not in data.varying
              and all(r["config"].get(k) == first.get(k) for r in data.records)]
    return _table(["setting", "value"], shared)


def _runs_table(data: SweepData) -> str:
    rows = []
    for c in data.conditions:
        for r in c.runs:
            band = r.chance_band
            outcome = r.outcome or "?"
            epoch = fit_epoch(r)[0]
            rows.append((c.label, r.seed, (outcome_word(outcome), f"o-{outcome}"), r.epochs_run or "-",
                         "-" if epoch is None else epoch,
                         _pct(r.train_acc), _pct(r.test_acc),
                         "-" if None in band or not chance_applies(r["config"].get("labels")) else
                         f"{100 * band[0]:.1f}-{100 * band[1]:.1f}%",
                         r.result.get("verdict", "-") if chance_applies(r["config"].get("labels")) else "-", r.key))
    return _table(["condition", "seed", "outcome", "epochs", "memorised at", "train acc", "test acc",
                   "test chance band", "test vs chance", "key"], rows,
                  right=[False, True, False, True, True, True, True, True, False, False])


# the summary's columns in two tables, so that neither needs scrolling sideways
OUTCOME_COLUMNS = ("condition", "seeds", "memorised", "collapsed", "other outcomes", "median epochs to memorise",
                   "median s to memorise", "epochs run")


def _summary(data: SweepData) -> str:
    headers, cells, right = display_columns(summary_rows(data), data.varying)
    out = ""
    for title, keep in (("Outcomes and time", lambda h: h in OUTCOME_COLUMNS),
                        ("Accuracies", lambda h: h == "condition" or h not in OUTCOME_COLUMNS)):
        cols = [i for i, h in enumerate(headers) if keep(h)]
        out += f"<h3>{title}</h3>" + _table([headers[i] for i in cols], [[c[i] for i in cols] for c in cells],
                                            [right[i] for i in cols])
    out += f'<p class="note">{e(NOTE)}</p>'
    det = detection_rows(data)
    h, c = detection_cells(det) if det else ([], [])
    if c:
        out += ("<h3>Finding the changed labels</h3>" + _table(h, c, [False, False] + [True] * (len(h) - 2))
                + f'<p class="note">{e(DETECTION_NOTE)}</p>')
    return out


def render(data: SweepData, figures, notes) -> str:
    sweep = data.sweep
    title = f"rote sweep report: {data.name}"
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    outcomes = Counter(r.outcome for r in data.records)
    totals = ", ".join(f"{outcomes[o]} {outcome_word(o)}" for o in OUTCOMES if outcomes[o])
    seeds = sorted({r.seed for r in data.records})
    planned = len(sweep.configs) if sweep is not None else None
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{e(title)}</h1>",
    ]
    if sweep is not None and sweep.description:
        parts.append(f"<p>{e(sweep.description)}</p>")
    parts.append(
        f'<p class="meta">{e(data.n_runs)} finished runs'
        + (f" of {e(planned)} planned" if planned is not None else "")
        + f" in {e(len(data.conditions))} conditions, seeds {e(', '.join(map(str, seeds)) or '-')}"
        + (f"; outcomes: {e(totals)}" if totals else "")
        + f".<br>Store: <code>{e(data.store.root.resolve())}</code>; report written {e(when)}.</p>")
    if planned is not None and data.n_runs < planned:
        parts.append(f'<p class="note">The sweep is not complete: {e(planned - data.n_runs)} runs are missing, '
                     "and every number here covers the finished runs only.</p>")

    parts.append("<h2>Summary</h2>")
    if data.records:
        parts.append(_summary(data))
    else:
        parts.append("<p>No finished runs in the store yet.</p>")

    parts.append("<h2>Figures</h2>")
    for f in figures:
        png = next(p for p in f.paths if Path(p).suffix == ".png")
        raw = Path(png).read_bytes()
        b64 = base64.b64encode(raw).decode("ascii")
        # shown at 120 pixels per figure inch (saved at 200 dpi: sharp on high-density screens too)
        width = int.from_bytes(raw[16:20], "big") * 3 // 5 if raw[12:16] == b"IHDR" else None
        size = f' width="{width}"' if width else ""
        title = FIGURES[f.name].title
        parts.append(f'<figure id="fig-{e(f.name)}"><h3>{e(title)}</h3>'
                     f'<img src="data:image/png;base64,{b64}"{size} alt="{e(title)}">'
                     f"<figcaption>{e(f.caption)}</figcaption></figure>")
    if notes:
        parts.append('<p class="note">Not drawn:</p><ul class="note">'
                     + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")

    parts.append("<h2>Runs</h2>")
    parts.append(_runs_table(data) if data.records else "<p>None yet.</p>")
    parts.append("<h2>Settings shared by all runs</h2>")
    parts.append(_shared_settings(data) or "<p>-</p>")
    parts.append("<h2>Environment</h2>")
    parts.append(_environment(data))
    parts.append("<h2>Sweep file</h2>")
    if sweep is not None:
        parts.append(f"<pre>{e(sweep.source)}</pre>")
    else:
        src = data.store.root / "sweep.yaml"
        parts.append(f"<pre>{e(src.read_text(errors='replace'))}</pre>" if src.is_file() else "<p>No sweep.yaml in the store.</p>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_report(store, out_path: Optional[Path] = None, where: Optional[dict] = None) -> Path:
    """Write the sweep's report as one self-contained HTML file (default: SWEEP_DIR/report.html).

    where: {setting: value} reports only the matching runs (see results.load).
    """
    data = load(store, where)
    out = Path(out_path) if out_path is not None else data.store.root / "report.html"
    if out.is_dir():
        out = out / "report.html"
    # scratch beside the report, named by this process: what a report killed mid-way leaves, the next
    # report removes
    out.parent.mkdir(parents=True, exist_ok=True)
    with scratch(REPORT_SCRATCH, out.parent) as tmp:
        figures, notes = draw_figures(data, tmp, formats=("png",))
        text = render(data, figures, notes)
    write_atomic(out, text.encode("utf-8"))
    return out
