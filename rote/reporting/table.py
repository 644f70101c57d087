"""The summary table of a sweep: one row per condition, mean and spread over seeds.

A *condition* is a run's full config without its seed; the runs of a condition
differ only in seed. A condition is named by the settings that vary across the
sweep (the grid fields with more than one value, and any other setting that
differs between the stored records), e.g. ``labels=partial:0.4, n_train=3000``.

Reads only the store (``runs/*/config.json``, ``result.json``, ``history.csv``
and ``sweep.yaml``), so it can be rewritten at any time, also while a sweep is
still running: it covers the runs finished so far.

Statistics over seeds are the mean and the sample standard deviation (ddof=1,
as pandas computes it; empty for a single run). ``memorized_epoch`` and
``seconds_to_memorize`` are over the runs that memorised only.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from rote.config import RunConfig
from rote.errors import ConfigError
from rote.atomic import write_atomic
from rote.experiments.store import Store

OUTCOMES = ("memorized", "collapsed", "unfinished", "diverged")
CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))

# statistic name -> (where it comes from, restricted to memorised runs?)
STATS = ("train_acc", "test_acc", "epochs", "memorized_epoch", "seconds_to_memorize")


# -- the store as conditions ---------------------------------------------------


def as_store(store) -> Store:
    return store if isinstance(store, Store) else Store(Path(store))


def load_sweep(store):
    """The sweep the store was made from (its sweep.yaml), or None if absent or unreadable."""
    from rote.experiments.sweep import parse_sweep

    path = as_store(store).root / "sweep.yaml"
    if not path.is_file():
        return None
    try:
        return parse_sweep(path.read_text(), str(path))
    except ConfigError:
        return None


def fmt_value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


@dataclass
class Condition:
    index: int
    settings: dict  # the whole config but the seed
    varying: dict  # the settings that name it: field -> value
    runs: list = field(default_factory=list)  # store records, by seed

    @property
    def label(self) -> str:
        if not self.varying:
            return "all runs"
        return ", ".join(f"{k}={fmt_value(v)}" for k, v in self.varying.items())

    @property
    def seeds(self) -> list[int]:
        return [r["config"]["seed"] for r in self.runs]


@dataclass
class SweepData:
    store: Store
    sweep: Any  # rote.experiments.sweep.Sweep or None
    records: list
    conditions: list  # [Condition] in the order the sweep lists them
    varying: list  # field names that tell conditions apart
    name: str = ""

    @property
    def n_runs(self) -> int:
        return len(self.records)


def _freeze(v):
    return tuple(v) if isinstance(v, list) else v


def _group_key(settings: dict) -> tuple:
    return tuple(sorted((k, repr(_freeze(v))) for k, v in settings.items()))


def _sort_key(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, fmt_value(v))


def load(store) -> SweepData:
    """Group the store's records into conditions, ordered as the sweep's grid lists them."""
    store = as_store(store)
    sweep = load_sweep(store)
    records = list(store.records())
    # the sweep's own fields and order of conditions (cases x grid), normalised through RunConfig
    # (YAML reads `labels: true` as a boolean; the configs hold the string)
    sweep_fields: list[str] = []
    position: dict = {}
    if sweep is not None:
        for part in [*(getattr(sweep, "cases", None) or []), sweep.grid]:
            for k in part:
                k = k.replace("-", "_")
                if k in CONFIG_FIELDS and k not in sweep_fields:
                    sweep_fields.append(k)
        for cfg in sweep.configs:
            position.setdefault(_group_key({k: v for k, v in cfg.to_dict().items() if k != "seed"}),
                                len(position))
    present = {k: {_freeze(r["config"].get(k)) for r in records} for k in CONFIG_FIELDS if k != "seed"}
    extra = [k for k in CONFIG_FIELDS if k != "seed" and k not in sweep_fields and len(present.get(k, ())) > 1]
    varying = [k for k in sweep_fields if len(present.get(k, ())) > 1] + extra
    if not varying and records:
        # a sweep over seeds only: name its one condition by the sweep's fields (e.g. labels=permute)
        varying = [k for k in sweep_fields if k in present]
    groups: dict[tuple, Condition] = {}
    for r in records:
        settings = {k: v for k, v in r["config"].items() if k != "seed"}
        gkey = _group_key(settings)
        if gkey not in groups:
            groups[gkey] = Condition(index=0, settings=settings, varying={k: settings.get(k) for k in varying})
        groups[gkey].runs.append(r)

    def ckey(item):
        gkey, c = item
        pos = position.get(gkey)
        # the sweep's order; runs of settings it does not list (an older sweep file) after, by value
        return (0, pos, []) if pos is not None else (1, 0, [_sort_key(_freeze(c.settings.get(k))) for k in varying])

    conditions = [c for _, c in sorted(groups.items(), key=ckey)]
    for i, c in enumerate(conditions):
        c.index = i
        c.runs.sort(key=lambda r: r["config"]["seed"])
    name = sweep.name if sweep is not None else store.root.name
    return SweepData(store=store, sweep=sweep, records=records, conditions=conditions, varying=varying, name=name)


# -- per-run numbers ------------------------------------------------------------


def fit_epoch(record: dict) -> tuple[Optional[int], Optional[float]]:
    """(epoch, seconds of training) at which a run memorised its training part; (None, None) if it did not.

    From result.json; a ``--stop-at none`` run has no memorized_epoch there even
    when it ended memorised, so for such a run that evaluated its whole training
    part every epoch it is the first epoch that reached the threshold.
    """
    res = record["result"]
    if res.get("memorized_epoch") is not None:
        return int(res["memorized_epoch"]), res.get("seconds_to_memorize")
    if res.get("outcome") != "memorized" or record["config"].get("stop_at") is not None:
        return None, None
    from rote.reporting.curves import read_history
    from rote.config import MEMORIZED_AT

    path = Path(record["dir"]) / "history.csv"
    if not path.is_file():
        return None, None
    h = read_history(path)
    elapsed = 0.0
    for i, acc in enumerate(h.get("train_acc_full", [])):
        elapsed += h["seconds"][i] or 0.0
        if acc is None:
            return None, None  # not evaluated every epoch: the first epoch is unknown
        if acc >= MEMORIZED_AT:
            return int(h["epoch"][i]), elapsed
    return None, None


def _num(v) -> Optional[float]:
    if v is None or isinstance(v, bool):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def mean_std(values) -> tuple[Optional[float], Optional[float]]:
    xs = [x for x in (_num(v) for v in values) if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def run_values(record: dict) -> dict:
    res = record["result"]
    epoch, seconds = fit_epoch(record)
    band = (res.get("chance") or {}).get("band") or [None, None]
    return {"train_acc": res.get("train_acc"), "test_acc": res.get("test_acc"), "epochs": res.get("epochs"),
            "memorized_epoch": epoch, "seconds_to_memorize": seconds if epoch is not None else None,
            "chance_low": band[0], "chance_high": band[1],
            "chance_uniform": (res.get("chance") or {}).get("uniform"),
            "labels_changed_fraction": res.get("labels_changed_fraction"), "outcome": res.get("outcome")}


# -- the table ----------------------------------------------------------------------


def _rows(data: SweepData) -> list[dict]:
    rows = []
    for c in data.conditions:
        vals = [run_values(r) for r in c.runs]
        n = len(vals)
        row: dict = dict(c.varying)
        row["condition"] = c.label
        row["n_seeds"] = n
        row["seeds"] = " ".join(str(s) for s in c.seeds)
        for stat in STATS:
            row[f"{stat}_mean"], row[f"{stat}_std"] = mean_std(v[stat] for v in vals)
        row["n_memorized"] = sum(v["outcome"] == "memorized" for v in vals)
        for o in OUTCOMES:
            row[f"frac_{o}"] = sum(v["outcome"] == o for v in vals) / n
        row["chance_uniform"] = mean_std(v["chance_uniform"] for v in vals)[0]
        row["chance_low_mean"] = mean_std(v["chance_low"] for v in vals)[0]
        row["chance_high_mean"] = mean_std(v["chance_high"] for v in vals)[0]
        row["labels_changed_fraction_mean"] = mean_std(v["labels_changed_fraction"] for v in vals)[0]
        rows.append(row)
    return rows


def summary_rows(store) -> list[dict]:
    """One dict per condition, in the order the sweep file lists them (cases x grid).

    Keys: each varying setting (its value), ``condition`` (its label), ``n_seeds``,
    ``seeds``; ``<stat>_mean`` and ``<stat>_std`` for train_acc, test_acc, epochs,
    memorized_epoch and seconds_to_memorize (the last two over memorised runs
    only); ``n_memorized``; ``frac_memorized``, ``frac_collapsed``,
    ``frac_unfinished``, ``frac_diverged``; ``chance_uniform``,
    ``chance_low_mean``, ``chance_high_mean`` (the test chance band, mean over
    seeds); ``labels_changed_fraction_mean``. Accuracies are fractions; a
    statistic with no value is None.
    """
    return _rows(load(store))


def _pct(m, s) -> str:
    if m is None:
        return "-"
    return f"{100 * m:.1f}%" if s is None else f"{100 * m:.1f} ± {100 * s:.1f}%"


def _plain(m, s, digits=1) -> str:
    if m is None:
        return "-"
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def _outcomes(row) -> str:
    n = row["n_seeds"]
    parts = [(round(row[f"frac_{o}"] * n), o) for o in OUTCOMES if row[f"frac_{o}"] > 0]
    if len(parts) == 1:
        return f"{parts[0][0]}/{n} {parts[0][1]}"
    return ", ".join(f"{k} {o}" for k, o in parts)


def display_columns(rows: list[dict], varying: list[str]) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headers, cells and right-alignment flags of the human-readable table."""
    headers = [*varying, "seeds", "train acc", "test acc", "test chance band", "epochs", "memorised at epoch",
               "s to memorise", "outcomes"]
    right = [False] * len(varying) + [True] * 7 + [False]
    cells = []
    for r in rows:
        band = ("-" if r["chance_low_mean"] is None
                else f"{100 * r['chance_low_mean']:.1f}-{100 * r['chance_high_mean']:.1f}%")
        cells.append([*(fmt_value(r[k]) for k in varying), str(r["n_seeds"]),
                      _pct(r["train_acc_mean"], r["train_acc_std"]), _pct(r["test_acc_mean"], r["test_acc_std"]), band,
                      _plain(r["epochs_mean"], r["epochs_std"]),
                      _plain(r["memorized_epoch_mean"], r["memorized_epoch_std"]),
                      _plain(r["seconds_to_memorize_mean"], r["seconds_to_memorize_std"])
                      if r["seconds_to_memorize_mean"] is not None else "-",
                      _outcomes(r)])
    return headers, cells, right


NOTE = ("mean ± std over seeds (sample std); 'memorised at epoch' and 's to memorise' (seconds of training) "
        "over the runs that memorised only; test chance band: 2.5-97.5% of the test accuracy under random "
        "relabellings of each model's predictions, mean over seeds; uniform guessing gives 10%.")


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


def write_shared(path: Path, data: bytes) -> None:
    """Write atomically, readable by others as a new file would be (the temp file starts out 0600)."""
    import os

    write_atomic(path, data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_table(store, out_dir=None) -> tuple[str, list[Path]]:
    """Print-ready text table; writes summary.csv and summary.md to out_dir (default: the store)."""
    data = load(store)
    rows = _rows(data)
    out_dir = Path(out_dir) if out_dir is not None else data.store.root
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"sweep '{data.name}': {data.n_runs} runs in {len(data.conditions)} conditions"
    text = format_text(rows, data.varying, title)
    paths = [out_dir / "summary.csv", out_dir / "summary.md"]
    write_shared(paths[0], format_csv(rows).encode())
    write_shared(paths[1], format_markdown(rows, data.varying, title).encode())
    return text, paths
