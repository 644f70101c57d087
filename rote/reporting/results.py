"""The results of a sweep, read from its store: conditions, per-run numbers, statistics over seeds.

A *condition* is a run's full config without its seed; the runs of a condition
differ only in seed. A condition is named by the settings that vary across the
sweep (the grid fields with more than one value, and any other setting that
differs between the stored records), e.g. ``labels=partial:0.4, n_train=3000``.

Reads only the store (its records through rote.experiments.record, and
``sweep.yaml``), so tables and figures can be redrawn at any time, also
while a sweep is still running: they cover the runs finished so far.

Statistics over seeds are the mean and the sample standard deviation (ddof=1,
as pandas computes it; None for a single run) for the final numbers every run
has. Time to memorise is not: a run whose budget ran out says only that its time is
longer than the epochs it ran, and a run that collapsed (or diverged) will never
memorise, so averaging the runs that memorised would favour the fast ones. It is
the cumulative incidence of memorisation (Aalen-Johansen, see
rote.reporting.survival), collapse and divergence counted as competing events
and only runs alive at the end of their budget censored, with its median ("not
reached" when fewer than half the runs are estimated to memorise) and a 95%
interval; outcome shares are k of n with a 95% Wilson interval (``wilson``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np

from rote.config import IDENTITY_FIELDS, RunConfig
from rote.errors import ConfigError
from rote.experiments.record import (  # noqa: F401  (reporting reads runs through these)
    OUTCOMES, SCORES_CSV, Record, fit_epoch, read_detection, read_history, read_membership)
from rote.experiments.store import Store
from rote.experiments.sweep import load_sweep
from rote.reporting.survival import CENSORED, MEMORISED, Incidence, aalen_johansen, outcome_kind

CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))
# per-run values summarised as mean and std over seeds
STATS = ("train_acc", "test_acc", "epochs", "memorized_bits", "bits_per_parameter")
Z95 = 1.959963984540054  # the 97.5% point of the standard normal


# -- names in words ------------------------------------------------------------

_INPUT_WORDS = {"none": "original inputs", "shuffled-pixels": "shuffled pixels", "random-pixels": "random pixels",
                "gaussian": "Gaussian inputs"}
_LABEL_WORDS = {"true": "true labels", "random": "random labels", "permute": "permuted labels"}


def labels_in_words(labels) -> str:
    """'random' -> 'random labels', 'partial:0.2' -> 'P = 0.2', 'flip:0.2' -> 'P = 0.2 (flipped)'."""
    s = fmt_value(labels)
    if s in _LABEL_WORDS:
        return _LABEL_WORDS[s]
    kind, _, p = s.partition(":")
    if kind == "partial":
        return f"P = {p}"
    if kind == "flip":
        return f"P = {p} (flipped)"
    return f"labels {s}"


def setting_in_words(k: str, v) -> str:
    if k == "labels":
        return labels_in_words(v)
    if k == "inputs":
        return _INPUT_WORDS.get(fmt_value(v), f"inputs {fmt_value(v)}")
    if k == "n_train":
        return f"N = {int(v):,}" if isinstance(v, (int, float)) else f"N = {v}"
    if k == "model":
        return f"model {v}"
    return f"{k.replace('_', ' ')} = {fmt_value(v)}"


def condition_in_words(varying: dict) -> str:
    """A condition's varying settings as words: 'true labels, shuffled pixels', 'random labels', 'P = 0.2'.

    Original inputs go unsaid beside a label setting ('true labels', not 'true labels, original inputs').
    """
    parts = []
    for k, v in varying.items():
        if k == "inputs" and fmt_value(v) == "none" and "labels" in varying:
            continue
        parts.append(setting_in_words(k, v))
    return ", ".join(parts) if parts else "all runs"


# -- statistics: Kaplan-Meier, Wilson ------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[Optional[float], Optional[float]]:
    """95% Wilson score interval of a proportion k/n; (None, None) for n = 0."""
    if n <= 0:
        return None, None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class KM:
    """A Kaplan-Meier estimate of the survival function S(t) = P(T > t).

    times: the distinct event times, ascending; survival: S just after each;
    at_risk, events: the n_i and d_i there; low, high: the pointwise 95%
    log-log (Kalbfleisch-Prentice) band from Greenwood's variance. median: the
    first time S <= 0.5 (None: not reached); median_low, median_high: its 95%
    interval (Brookmeyer-Crowley on that band: the first times the band's
    lower and upper edge reach 0.5; None where they never do).
    """

    n: int
    n_events: int
    times: list
    survival: list
    at_risk: list
    events: list
    low: list
    high: list
    median: Optional[float]
    median_low: Optional[float]
    median_high: Optional[float]


def kaplan_meier(times, observed, z: float = Z95) -> KM:
    """Kaplan-Meier of durations `times`, `observed[i]` False where time i is censored (only known to be longer)."""
    t = np.asarray(times, dtype=np.float64)
    ev = np.asarray(observed, dtype=bool)
    if t.shape != ev.shape or t.ndim != 1:
        raise ValueError("times and observed must be two 1-D arrays of one length")
    uniq = np.unique(t[ev])
    at_risk = np.array([(t >= u).sum() for u in uniq], dtype=np.int64)  # censored at u still at risk at u
    events = np.array([(t[ev] == u).sum() for u in uniq], dtype=np.int64)
    surv = np.cumprod(1.0 - events / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        gw = np.cumsum(events / (at_risk * (at_risk - events)))  # Greenwood: sum d / (n (n - d)); inf once S = 0
        se = np.sqrt(gw) / np.abs(np.log(surv))  # the standard error of log(-log S)
        low = np.where(surv > 0, surv ** np.exp(z * se), 0.0)
        high = np.where(surv > 0, surv ** np.exp(-z * se), 0.0)
    low = np.where(surv >= 1.0, 1.0, np.nan_to_num(low, nan=0.0))
    high = np.where(surv >= 1.0, 1.0, np.nan_to_num(high, nan=0.0))

    def first(curve):
        hit = np.flatnonzero(curve <= 0.5 + 1e-12)
        return float(uniq[hit[0]]) if hit.size else None

    return KM(n=int(t.size), n_events=int(ev.sum()), times=uniq.tolist(), survival=surv.tolist(),
              at_risk=at_risk.tolist(), events=events.tolist(), low=low.tolist(), high=high.tolist(),
              median=first(surv), median_low=first(low), median_high=first(high))


def time_to_memorise(runs, seconds: bool = False) -> tuple[list, list]:
    """(times, observed) of runs for kaplan_meier: epochs (or seconds of training) to memorise.

    A run that did not memorise (budget spent, collapsed, diverged) is censored at the
    epochs it ran (its training seconds).
    """
    times, observed = [], []
    for r in runs:
        e, s = fit_epoch(r)
        if e is not None and (not seconds or s is not None):
            times.append(float(s if seconds else e))
            observed.append(True)
        else:
            t = r.value("train_seconds") if seconds else r.epochs_or_budget
            if t is None:
                continue
            times.append(float(t))
            observed.append(False)
    return times, observed


def memorisation_events(runs, seconds: bool = False) -> tuple[list, list]:
    """(times, kinds) of runs for survival.aalen_johansen: epochs (or seconds of training) to memorise.

    A memorised run is the event at its epoch; a collapsed or diverged run a competing event at the epoch it
    stopped (it can never memorise); any other run censored at the epochs it ran (its training seconds).
    """
    times, kinds = [], []
    for r in runs:
        e, s = fit_epoch(r)
        res = r["result"]
        if e is not None and (not seconds or s is not None):
            times.append(float(s if seconds else e))
            kinds.append(MEMORISED)
            continue
        t = res.get("train_seconds") if seconds else (res.get("epochs") or r["config"].get("epochs"))
        if t is None:
            continue
        times.append(float(t))
        kinds.append(outcome_kind(res.get("outcome") or "") if e is None else CENSORED)
    return times, kinds


def incidence(runs, seconds: bool = False) -> Incidence:
    """The cumulative incidence of memorisation of these runs (collapse competing, budget censored)."""
    return aalen_johansen(*memorisation_events(runs, seconds))


def median_while_all_running(series: list) -> tuple[list, list]:
    """The median over runs of per-epoch values, at the epochs where every run has a value.

    series: one {epoch: value} per run. The median stops at the first epoch some run
    no longer reaches (it stopped: memorised, collapsed): past it a median of the
    survivors would be a curve no run had.
    """
    if not series:
        return [], []
    out_e, out_m = [], []
    for e in sorted(set().union(*series)):
        if any(e not in s or s[e] is None for s in series):
            break
        out_e.append(e)
        out_m.append(float(np.median([s[e] for s in series])))
    return out_e, out_m


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
        return condition_in_words(self.varying)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]


@dataclass
class SweepData:
    store: Store
    sweep: Any  # rote.experiments.sweep.Sweep or None
    records: list
    conditions: list  # [Condition] in the order the sweep lists them
    varying: list  # field names that tell conditions apart
    name: str

    @property
    def n_runs(self) -> int:
        return len(self.records)

    def history(self, record: Record) -> dict:
        """A record's history.csv as columns, read once (Record.history)."""
        return record.history


def _freeze(v):
    return tuple(v) if isinstance(v, list) else v


def _group_key(settings: dict) -> tuple:
    return tuple(sorted((k, repr(_freeze(v))) for k, v in settings.items()))


def _sort_key(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, fmt_value(v))


def parse_where(items) -> dict:
    """['optimizer=adam', 'n_train=3000'] -> {'optimizer': 'adam', 'n_train': '3000'}; ConfigError if malformed."""
    where: dict = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise ConfigError(f"--where {item!r}: expected SETTING=VALUE, e.g. --where optimizer=adam")
        if key not in CONFIG_FIELDS:
            raise ConfigError(f"--where {item!r}: {key!r} is not a run setting; the settings are listed in "
                              f"docs/settings.md (e.g. labels, n_train, optimizer, model)")
        values = where.setdefault(key, [])
        if value.strip() not in values:  # one setting given twice: the runs with any of its values
            values.append(value.strip())
    return where


def select(records: list, where: dict, place) -> list:
    """The records whose settings match every SETTING=VALUE of where (values compared as the table prints them)."""
    for key, want in where.items():
        wants = [want] if isinstance(want, str) else [str(w) for w in want]
        have = {_freeze(r["config"].get(key)) for r in records}
        records = [r for r in records if fmt_value(r["config"].get(key)) in wants]
        if not records:
            values = ", ".join(fmt_value(v) for v in sorted(have, key=_sort_key))
            raise ConfigError(f"no finished run in {place} has {key}={' or '.join(wants)}"
                              + (f"; the runs there have {key} = {values}" if have else ""))
    return records


def where_in_words(where: dict) -> str:
    """{'optimizer': ['adam', 'sgd'], 'n_train': '3000'} -> 'optimizer=adam|sgd, n_train=3000'."""
    return ", ".join(f"{k}={v if isinstance(v, str) else '|'.join(map(str, v))}" for k, v in where.items())


def load(store, where: Optional[dict] = None) -> SweepData:
    """Group the records of a store (a Store or its directory) into conditions, in the sweep's order.

    where: {setting: value} keeps only the runs with those settings (e.g. one arm of a comparison).
    """
    store = store if isinstance(store, Store) else Store(Path(store))
    try:
        sweep = load_sweep(store.root / "sweep.yaml")
    except ConfigError:  # absent or unreadable: conditions by value
        sweep = None
    records = select(list(store.records()), where or {}, store.root)
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
    extra = [k for k in CONFIG_FIELDS if k != "seed" and k not in sweep_fields and k not in IDENTITY_FIELDS
             and len(present.get(k, ())) > 1]
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
        c.runs.sort(key=lambda r: r.seed)
    name = sweep.name if sweep is not None else store.root.name
    if where:  # the name says which runs were kept, wherever it is printed
        name += " (" + where_in_words(where) + ")"
    return SweepData(store=store, sweep=sweep, records=records, conditions=conditions, varying=varying, name=name)


# -- per-run values -------------------------------------------------------------


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


def run_values(record: Record) -> dict:
    epoch, seconds = fit_epoch(record)
    low, high = record.chance_band
    return {"train_acc": record.train_acc, "test_acc": record.test_acc, "epochs": record.epochs_run,
            "memorized_epoch": epoch, "seconds_to_memorize": seconds, "chance_low": low,
            "chance_high": high, "chance_uniform": record.chance_uniform,
            "labels_changed_fraction": record.value("labels_changed_fraction"), "outcome": record.outcome,
            "memorized_bits": record.value("memorized_bits"), "bits_per_parameter": record.value("bits_per_parameter")}


# -- statistics over seeds -------------------------------------------------------


def outcome_column(outcome: str) -> str:
    """An outcome as part of a column name: 'budget-spent' -> 'budget_spent' (n_budget_spent)."""
    return outcome.replace("-", "_")


def summary_rows(data: SweepData) -> list[dict]:
    """One dict per condition, in the order the sweep file lists them (cases x grid).

    Keys: each varying setting (its value), ``condition`` (its label in words), ``n_seeds``,
    ``seeds``; ``<stat>_mean`` and ``<stat>_std`` for each of STATS; for each of OUTCOMES
    ``n_<outcome>`` (k of n_seeds; outcome_column spells the outcome), ``frac_<outcome>`` and its 95% Wilson interval
    ``frac_<outcome>_low``/``_high``; ``median_epoch`` with ``_low``/``_high`` (the median epochs to
    memorise from the cumulative incidence of memorisation and its 95% interval, None when not reached;
    collapsed and diverged runs are competing events, runs whose budget ran out censored),
    ``memorised_by_end`` (that incidence at the last event: the estimated share that memorises within
    the budget) and ``median_seconds`` (likewise in seconds of training); ``chance_uniform``,
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
        for o in OUTCOMES:
            k, col = sum(v["outcome"] == o for v in vals), outcome_column(o)
            row[f"n_{col}"] = k
            row[f"frac_{col}"] = k / n
            row[f"frac_{col}_low"], row[f"frac_{col}_high"] = wilson(k, n)
        # time to memorise: cumulative incidence, collapse competing, budget censored
        inc = incidence(c.runs)
        row["median_epoch"], row["median_epoch_low"], row["median_epoch_high"] = (
            inc.median, inc.median_low, inc.median_high)
        row["memorised_by_end"] = inc.final if inc.n else None
        inc = incidence(c.runs, seconds=True)
        row["median_seconds"], row["median_seconds_low"], row["median_seconds_high"] = (
            inc.median, inc.median_low, inc.median_high)
        row["chance_uniform"] = mean_std(v["chance_uniform"] for v in vals)[0]
        row["chance_low_mean"] = mean_std(v["chance_low"] for v in vals)[0]
        row["chance_high_mean"] = mean_std(v["chance_high"] for v in vals)[0]
        row["labels_changed_fraction_mean"] = mean_std(v["labels_changed_fraction"] for v in vals)[0]
        rows.append(row)
    return rows


# -- per-example detection across a sweep -----------------------------------------

def detection_rows(data: SweepData) -> list[dict]:
    """One dict per (condition, score) with detection.csv files: how well each score finds the changed labels.

    Keys: ``condition`` (in words), ``labels`` (the setting), ``score``, ``n_runs`` (runs with a
    detection.csv), ``n_defined`` (of them, runs where AUROC is defined: some labels changed and some
    kept), ``auroc_mean``/``_std`` and ``precision_at_k_mean``/``_std`` over those seeds (sample std),
    ``k_mean`` (changed labels per run) and ``chance_precision`` (k / n, mean over seeds). A condition
    without changed labels (true labels) has NaN AUROC in every run, so None here.
    """
    rows = []
    for c in data.conditions:
        per_score: dict[str, list] = {}
        for r in c.runs:
            for d in r.detection():
                per_score.setdefault(d["score"], []).append(d)
        for score, ds in per_score.items():
            row = {"condition": c.label, "labels": c.settings.get("labels"), "score": score, "n_runs": len(ds),
                   "n_defined": sum(math.isfinite(d["auroc"]) for d in ds)}
            row["auroc_mean"], row["auroc_std"] = mean_std(d["auroc"] for d in ds)
            row["precision_at_k_mean"], row["precision_at_k_std"] = mean_std(d["precision_at_k"] for d in ds)
            row["k_mean"] = statistics.fmean(d["k"] for d in ds)
            row["chance_precision"] = statistics.fmean(d["k"] / d["n"] for d in ds if d["n"])
            rows.append(row)
    return rows


# -- Feldman & Zhang's memorisation across the runs of a condition ---------------------

MEMORIZATION_COLUMNS = ("condition", "index", "label", "true_label", "changed", "mem", "se", "n_in", "n_out")


@dataclass
class MemorizationSummary:
    condition: str
    n_models: int  # runs with a membership.npz behind the estimates
    n_examples: int
    mem_changed: Optional[float]  # mean mem over the examples whose label was changed (finite estimates only)
    n_changed: int  # ... how many examples with a finite estimate that mean is over
    mem_kept: Optional[float]  # the same for the examples whose label was kept
    n_kept: int
    n_in: tuple  # (fewest, most) models that held an example in
    n_out: tuple  # (fewest, most) models that held an example out
    note: str = ""  # why a condition has no estimates (its runs do not share labels or images)


def memorization_rows(data: SweepData) -> tuple[list[dict], list[MemorizationSummary]]:
    """Feldman & Zhang's (2020) memorisation score of every training example, per condition whose runs
    wrote membership.npz (runs on a subset): rows with MEMORIZATION_COLUMNS, and a summary per condition.

    The K runs of a condition differ only in seed, so in their subsets, initialisation and order;
    mem_i is the share of the runs that trained on i that get its given label right, less the share of
    those that did not (rote.analysis.memorization.memorization, with its binomial standard error se).
    The estimate needs one label set across the K runs (setting label_seed): a condition whose runs
    disagree on a label, or on the images of the training part, gets a note instead of rows.
    """
    from rote.analysis.memorization import memorization

    rows, summaries = [], []
    for c in data.conditions:
        ms = [m for m in (r.membership() for r in c.runs) if m is not None]
        if not ms:
            continue
        first = ms[0]
        if any(m["index"].shape != first["index"].shape or (m["index"] != first["index"]).any() for m in ms):
            summaries.append(MemorizationSummary(c.label, len(ms), 0, None, 0, None, 0, (0, 0), (0, 0),
                                                 "its runs hold different training parts (n_train, val_split)"))
            continue
        if any((m["label"] != first["label"]).any() for m in ms):
            summaries.append(MemorizationSummary(c.label, len(ms), 0, None, 0, None, 0, (0, 0), (0, 0),
                                                 "its runs do not share their labels; fix them with label_seed"))
            continue
        masks = np.stack([m["in_subset"] for m in ms])  # (K, N)
        correct = np.stack([m["correct"] for m in ms])  # (K, N)
        mem, se = memorization(masks, correct)
        n_in = masks.sum(axis=0)
        n_out = len(ms) - n_in
        for i in range(len(mem)):
            rows.append({"condition": c.label, "index": int(first["index"][i]), "label": int(first["label"][i]),
                         "true_label": int(first["true_label"][i]), "changed": bool(first["changed"][i]),
                         "mem": float(mem[i]), "se": float(se[i]), "n_in": int(n_in[i]), "n_out": int(n_out[i])})
        finite = np.isfinite(mem)
        ch = first["changed"].astype(bool)

        def mean(sel):
            return (float(mem[sel].mean()) if sel.any() else None), int(sel.sum())

        (m_ch, k_ch), (m_kept, k_kept) = mean(finite & ch), mean(finite & ~ch)
        summaries.append(MemorizationSummary(c.label, len(ms), len(mem), m_ch, k_ch, m_kept, k_kept,
                                             (int(n_in.min()), int(n_in.max())),
                                             (int(n_out.min()), int(n_out.max()))))
    return rows, summaries


def representative_runs(data: SweepData, seed: int = 0) -> list[tuple[Condition, dict]]:
    """One run per condition for per-example pictures: the one with `seed` (else its lowest seed) that has
    a scores.csv; conditions with none are left out."""
    out = []
    for c in data.conditions:
        have = [r for r in c.runs if r.has(SCORES_CSV)]
        if have:
            out.append((c, next((r for r in have if r.seed == seed), have[0])))
    return out
