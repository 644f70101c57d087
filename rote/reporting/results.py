"""The results of a sweep, read from its store: conditions, per-run numbers, statistics over seeds.

A *condition* is a run's full config without its seed; the runs of a condition
differ only in seed. A condition is named by the settings that vary across the
sweep (the grid fields with more than one value, and any other setting that
differs between the stored records), e.g. ``labels=partial:0.4, n_train=3000``.

Reads only the store (``runs/*/config.json``, ``result.json``, ``history.csv``
and ``sweep.yaml``), so tables and figures can be redrawn at any time, also
while a sweep is still running: they cover the runs finished so far.

Statistics over seeds are the mean and the sample standard deviation (ddof=1,
as pandas computes it; None for a single run). ``memorized_epoch`` and
``seconds_to_memorize`` are over the runs that memorised only.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from rote.config import RunConfig, fit_threshold
from rote.errors import ConfigError
from rote.experiments.store import Store
from rote.experiments.sweep import load_sweep

OUTCOMES = ("memorized", "collapsed", "unfinished", "diverged")
CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))
# per-run values summarised as mean and std over seeds
STATS = ("train_acc", "test_acc", "epochs", "memorized_epoch", "seconds_to_memorize")


# -- the store as conditions ---------------------------------------------------


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
    name: str
    _histories: dict = field(default_factory=dict, repr=False)

    @property
    def n_runs(self) -> int:
        return len(self.records)

    def history(self, record: dict) -> dict:
        """read_history of a record, read once per SweepData."""
        if record["key"] not in self._histories:
            self._histories[record["key"]] = read_history(record["dir"])
        return self._histories[record["key"]]


def _freeze(v):
    return tuple(v) if isinstance(v, list) else v


def _group_key(settings: dict) -> tuple:
    return tuple(sorted((k, repr(_freeze(v))) for k, v in settings.items()))


def _sort_key(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, fmt_value(v))


def load(store) -> SweepData:
    """Group the records of a store (a Store or its directory) into conditions, in the sweep's order."""
    store = store if isinstance(store, Store) else Store(Path(store))
    try:
        sweep = load_sweep(store.root / "sweep.yaml")
    except ConfigError:  # absent or unreadable: conditions by value
        sweep = None
    records = list(store.records())
    # the sweep's own fields and order of conditions (cases x grid), normalised through RunConfig
    # (YAML reads `labels: true` as a boolean; the configs hold the string)
    sweep_fields: list[str] = []
    position: dict = {}
    if sweep is not None:
        for part in [*sweep.cases, sweep.grid]:
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


# -- per-run values -------------------------------------------------------------


def read_history(run_dir: Path) -> dict[str, list]:
    """A run's history.csv as columns of floats (None where a cell is empty); {} if it has none.

    The one reader of history.csv in reporting.
    """
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return {}
    cols: dict[str, list] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                cols.setdefault(k, []).append(_number(v))
    return cols


def _number(v):
    """A history cell: a float, None when empty, the text itself for a text column (a note)."""
    if v in ("", None):
        return None
    try:
        return float(v)
    except ValueError:
        return v


def fit_epoch(record: dict) -> tuple[Optional[int], Optional[float]]:
    """(epoch, seconds of training) at which a run memorised its training part; (None, None) if it did not.

    From result.json; a ``--stop-at none`` run has no memorized_epoch there even
    when it ended memorised, so for such a run that evaluated its whole training
    part every epoch it is the first epoch that reached ``fit_threshold``.
    """
    res = record["result"]
    if res.get("memorized_epoch") is not None:
        return int(res["memorized_epoch"]), res.get("seconds_to_memorize")
    if res.get("outcome") != "memorized":
        return None, None
    threshold = fit_threshold(record["config"].get("stop_at"))
    h = read_history(record["dir"])
    elapsed = 0.0
    for i, acc in enumerate(h.get("train_acc_full", [])):
        elapsed += h["seconds"][i] or 0.0
        if acc is None:
            return None, None  # not evaluated every epoch: the first epoch is unknown
        if acc >= threshold:
            return int(h["epoch"][i]), elapsed
    return None, None


def _num(v) -> Optional[float]:
    if v is None or isinstance(v, bool):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def mean_std(values) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample std of the finite numbers among values; (None, None) if none, std None for one."""
    xs = [x for x in (_num(v) for v in values) if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def run_values(record: dict) -> dict:
    res = record["result"]
    epoch, seconds = fit_epoch(record)
    chance = res.get("chance") or {}
    band = chance.get("band") or [None, None]
    return {"train_acc": res.get("train_acc"), "test_acc": res.get("test_acc"), "epochs": res.get("epochs"),
            "memorized_epoch": epoch, "seconds_to_memorize": seconds, "chance_low": band[0],
            "chance_high": band[1], "chance_uniform": chance.get("uniform"),
            "labels_changed_fraction": res.get("labels_changed_fraction"), "outcome": res.get("outcome")}


# -- statistics over seeds -------------------------------------------------------


def summary_rows(data: SweepData) -> list[dict]:
    """One dict per condition, in the order the sweep file lists them (cases x grid).

    Keys: each varying setting (its value), ``condition`` (its label), ``n_seeds``,
    ``seeds``; ``<stat>_mean`` and ``<stat>_std`` for each of STATS; ``n_memorized``;
    ``frac_<outcome>`` for each of OUTCOMES; ``chance_uniform``,
    ``chance_low_mean``, ``chance_high_mean`` (the test chance band, mean over
    seeds); ``labels_changed_fraction_mean``. Accuracies are fractions; a
    statistic with no value is None.
    """
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
