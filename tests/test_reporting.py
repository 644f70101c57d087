"""The reporting layer on a small real sweep store: the table's numbers, the figures, the HTML report."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rote.experiments.run import run
from rote.experiments.store import Store
from rote.experiments.sweep import parse_sweep
from rote.reporting.figures import FIGURES, plot_sweep
from rote.reporting.report import write_report
from rote.reporting.results import (condition_in_words, fit_epoch, kaplan_meier, load, median_while_all_running,
                                    summary_rows, wilson)
from rote.reporting.table import write_table

SWEEP = """\
name: tiny
description: "A tiny <test> sweep & its report"
base:
  model: "mlp:32"
  epochs: 2
  stop_at: none
  eval_every: 1
  device: cpu
grid:
  labels: [true, "partial:0.5", random]
  n_train: [100, 200]
seeds: 2
"""


def _build(root: Path, text: str, mnist, configs=None) -> Store:
    store = Store(root).create()
    (root / "sweep.yaml").write_text(text)
    for cfg in configs if configs is not None else parse_sweep(text).configs:
        key = cfg.key()
        tmp = store.temp_dir(key)
        run(cfg, tmp, dataset=mnist, log=lambda s: None)
        store.commit(key, tmp)
    store.write_index()
    return store


@pytest.fixture(scope="module")
def store(mnist, tmp_path_factory) -> Store:
    return _build(tmp_path_factory.mktemp("sweep") / "tiny", SWEEP, mnist)


@pytest.fixture(scope="module")
def seed_store(store, tmp_path_factory) -> Store:
    """A sweep over the seeds of one condition: the random-label runs of n_train=100, copied."""
    root = tmp_path_factory.mktemp("seeds") / "seeds"
    text = SWEEP.replace('[true, "partial:0.5", random]', "[random]").replace("[100, 200]", "[100]")
    (root / "runs").mkdir(parents=True)
    (root / "sweep.yaml").write_text(text)
    for r in store.records():
        if r["config"]["labels"] == "random" and r["config"]["n_train"] == 100:
            shutil.copytree(r["dir"], root / "runs" / r["key"])
    return Store(root)


def _results(store: Store) -> list[tuple[dict, dict]]:
    """(config, result) of every run, straight from the JSON files."""
    out = []
    for d in sorted(store.runs.iterdir()):
        if (d / "result.json").is_file():
            out.append((json.loads((d / "config.json").read_text())["config"],
                        json.loads((d / "result.json").read_text())))
    return out


def _mean_std(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _approx(a, b):
    return (a is None and b is None) or (a is not None and b is not None and a == pytest.approx(b, rel=1e-12))


def test_summary_rows_are_the_means_and_stds_of_the_result_files(store):
    results = _results(store)
    assert len(results) == 12
    rows = summary_rows(load(store))
    assert [(r["labels"], r["n_train"]) for r in rows] == [
        ("true", 100), ("true", 200), ("partial:0.5", 100), ("partial:0.5", 200),
        ("random", 100), ("random", 200)]  # grid order, only the varying fields
    for row in rows:
        words = {"true": "true labels", "partial:0.5": "P = 0.5", "random": "random labels"}[row["labels"]]
        assert row["condition"] == f"{words}, N = {row['n_train']}"
        mine = [res for cfg, res in results
                if cfg["labels"] == row["labels"] and cfg["n_train"] == row["n_train"]]
        assert row["n_seeds"] == len(mine) == 2
        for stat in ("train_acc", "test_acc", "epochs"):
            m, s = _mean_std([res[stat] for res in mine])
            assert _approx(row[f"{stat}_mean"], m) and _approx(row[f"{stat}_std"], s), stat
        # a 2-epoch run cannot fit 99.7% of its labels: the median time to memorise is not reached
        assert not [res for res in mine if res["outcome"] == "memorized"]
        assert row["median_epoch"] is None and row["median_seconds"] is None
        for o in ("memorized", "collapsed", "budget-spent", "diverged"):
            k = sum(res["outcome"] == o for res in mine)
            o = o.replace("-", "_")
            assert row[f"n_{o}"] == k and row[f"frac_{o}"] == k / len(mine)
            assert (row[f"frac_{o}_low"], row[f"frac_{o}_high"]) == wilson(k, len(mine))
        assert _approx(row["chance_low_mean"], statistics.fmean(res["chance"]["band"][0] for res in mine))
        assert _approx(row["chance_high_mean"], statistics.fmean(res["chance"]["band"][1] for res in mine))
        assert row["chance_uniform"] == pytest.approx(0.1)


def test_memorised_runs_and_outcome_fractions(store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    s = Store(copy)
    recs = [r for r in s.records() if r["config"]["labels"] == "random" and r["config"]["n_train"] == 200]
    edits = [dict(outcome="memorized", memorized_epoch=2, seconds_to_memorize=0.5),
             dict(outcome="collapsed", memorized_epoch=None, seconds_to_memorize=None)]
    for r, edit in zip(recs, edits):
        res = {**r["result"], **edit}
        (r["dir"] / "result.json").write_text(json.dumps(res))
    row = next(r for r in summary_rows(load(s)) if r["labels"] == "random" and r["n_train"] == 200)
    # cumulative incidence: the collapsed run competes (it never memorises), so F(2) = 1/2 and the median is 2;
    # the memorised share stays at one half
    assert row["median_epoch"] == 2 and row["memorised_by_end"] == pytest.approx(0.5)
    assert row["frac_memorized"] == row["frac_collapsed"] == 0.5 and row["frac_budget_spent"] == 0
    assert row["n_memorized"] == 1 and row["n_collapsed"] == 1
    text, _ = write_table(s, tmp_path / "t")
    assert "1/2 memorised (9-91%)" in text and "1/2 collapsed (9-91%)" in text


def test_fit_epoch_of_a_stop_at_none_run_comes_from_its_history(store, tmp_path):
    rec = next(iter(store.records()))
    d = tmp_path / "run"
    shutil.copytree(rec["dir"], d)
    (d / "result.json").write_text(json.dumps({**rec["result"], "outcome": "memorized", "memorized_epoch": None}))
    with open(d / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[1]["train_acc_full"] = "1.0"
    with open(d / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    epoch, seconds = fit_epoch({**rec, "dir": d, "result": json.loads((d / "result.json").read_text())})
    assert epoch == 2
    assert seconds == pytest.approx(float(rows[0]["seconds"]) + float(rows[1]["seconds"]))
    assert fit_epoch(rec) == (None, None)


def test_write_table_text_csv_and_markdown(store, tmp_path):
    text, paths = write_table(store, tmp_path / "out")
    assert [p.name for p in paths][:2] == ["summary.csv", "summary.md"]
    rows = summary_rows(load(store))
    with open(paths[0], newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) == 6
    assert set(rows[0]) == set(table[0])  # one column per statistic
    for got, want in zip(table, rows):
        assert float(got["test_acc_mean"]) == want["test_acc_mean"]
        assert got["median_epoch"] == ""  # empty, not "None"
    lines = text.splitlines()
    assert "6 conditions" in lines[0] and "12 runs" in lines[0]
    assert lines[1].split()[:2] == ["condition", "seeds"]
    assert lines[3].startswith("true labels, N = 100 ") and "not reached" in lines[3]
    first = rows[0]
    assert f"{100 * first['test_acc_mean']:.1f} ± {100 * first['test_acc_std']:.1f}%" in lines[3]
    md = paths[1].read_text()
    assert md.count("\n| ") == 1 + 6 and "P = 0.5, N = 200" in md and "partial:0.5" not in md
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_every_supported_figure_is_drawn_as_png_and_svg(store, seed_store, tmp_path):
    notes = []
    paths = plot_sweep(store, tmp_path / "figs", log=notes.append)
    drawn = {p.stem for p in paths}
    assert drawn == {"learning_curves", "time_to_fit", "test_error", "capacity", "clean_vs_corrupt",
                     "detection_auroc", "first_learned", "data_map", "examples_grid", "capacity_bits"}
    # no run of this store memorised (2 epochs), and it varies labels beside n_train
    assert sorted(n.split()[0] for n in notes) == ["incidence", "memorise_vs_n", "seed_outcomes"]
    for name in drawn:
        for ext in ("png", "svg"):
            p = tmp_path / "figs" / f"{name}.{ext}"
            assert p.is_file() and p.stat().st_size > 5000
        assert (tmp_path / "figs" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    notes = []
    paths = plot_sweep(seed_store, tmp_path / "seed", log=notes.append)
    both = {"learning_curves", "seed_outcomes", "detection_auroc", "first_learned", "data_map", "examples_grid"}
    assert not any(r["result"]["outcome"] == "memorized" for r in Store(seed_store.root).records())
    assert {p.stem for p in paths} == both
    assert {n.split()[0] for n in notes} == set(FIGURES) - both


def test_time_against_n_and_incidence_figures_on_memorised_runs(store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    s = Store(copy)
    for r in s.records():
        if r["config"]["labels"] != "random":
            shutil.rmtree(r["dir"])
            continue
        # every random-label run memorised, in 2 epochs at N = 100 and 3 at N = 200, one collapsed
        edit = (dict(outcome="collapsed") if r["config"]["seed"] == 1 and r["config"]["n_train"] == 200 else
                dict(outcome="memorized", memorized_epoch=r["config"]["n_train"] // 100 + 1, seconds_to_memorize=1.0))
        (r["dir"] / "result.json").write_text(json.dumps({**r["result"], **edit}))
    notes = []
    paths = plot_sweep(s, tmp_path / "figs", log=notes.append)
    drawn = {p.stem for p in paths}
    assert {"memorise_vs_n", "incidence"} <= drawn, notes
    data = load(s)
    rows = summary_rows(data)
    by_n = {r["n_train"]: r for r in rows}
    assert by_n[100]["median_epoch"] == 2 and by_n[100]["memorised_by_end"] == pytest.approx(1.0)
    assert by_n[200]["memorised_by_end"] == pytest.approx(0.5) and by_n[200]["n_collapsed"] == 1


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "srcset", "data", "action") and v]


def test_report_is_one_self_contained_escaped_html_file(store, tmp_path):
    out = write_report(store, tmp_path / "report.html")
    assert out == tmp_path / "report.html" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
    text = out.read_text()
    parser = _Refs()
    parser.feed(text)
    assert parser.refs and all(r.startswith("data:image/png;base64,") for r in parser.refs)
    assert len(parser.refs) == 10  # every figure the store supports
    assert all(f"<h3>{f.title}</h3>" in text for f in FIGURES.values()
               if f.name not in ("seed_outcomes", "incidence", "memorise_vs_n"))  # no run memorised here
    assert not parser.tags & {"script", "link", "iframe", "object", "embed"}
    low = text.lower()
    for bad in ('src="http', "src='http", 'href="http', "url(", "@import", "@font-face"):
        assert bad not in low
    # the summary table, the runs, the sweep file and the environment
    first = summary_rows(load(store))[0]
    assert f"{100 * first['test_acc_mean']:.1f} ± {100 * first['test_acc_std']:.1f}%" in text
    for r in store.records():
        assert r["key"] in text
    assert "A tiny &lt;test&gt; sweep &amp; its report" in text and "<test>" not in text
    assert "mlp:32" in text and "seeds: 2" in text and "torch" in text


def test_an_empty_store_reports_that_it_is_empty(tmp_path):
    s = Store(tmp_path / "empty").create()
    (s.root / "sweep.yaml").write_text(SWEEP)
    assert summary_rows(load(s)) == []
    text, _ = write_table(s, tmp_path / "t")
    assert "no finished runs" in text
    notes = []
    assert plot_sweep(s, tmp_path / "f", log=notes.append) == [] and notes
    assert "No finished runs" in write_report(s, tmp_path / "r.html").read_text()


# -- honest statistics ------------------------------------------------------------------


def test_kaplan_meier_by_hand():
    # times 3, 5, 5, 8+ (censored), 10: at 3, 1 of 5 at risk fails; at 5, 2 of 4; 8 leaves censored; at 10, 1 of 1
    km = kaplan_meier([3, 5, 5, 8, 10], [True, True, True, False, True])
    assert km.times == [3, 5, 10] and km.at_risk == [5, 4, 1] and km.events == [1, 2, 1]
    assert km.survival == pytest.approx([0.8, 0.4, 0.0])
    assert km.median == 5  # the first time S <= 0.5
    # log-log band: var log(-log S) = Greenwood / (log S)^2; Greenwood(3) = 1/20, Greenwood(5) = 1/20 + 2/8
    import math
    for t, s, gw in ((3, 0.8, 1 / 20), (5, 0.4, 1 / 20 + 2 / 8)):
        se = math.sqrt(gw) / abs(math.log(s))
        i = km.times.index(t)
        assert km.low[i] == pytest.approx(s ** math.exp(1.959964 * se), rel=1e-5)
        assert km.high[i] == pytest.approx(s ** math.exp(-1.959964 * se), rel=1e-5)
    assert km.high[1] == pytest.approx(0.7527, abs=1e-3) and km.low[0] == pytest.approx(0.2038, abs=1e-3)
    # Brookmeyer-Crowley: the lower edge of the band reaches 0.5 at 3, the upper edge at 10
    assert (km.median_low, km.median_high) == (3, 10)
    # fewer than half events: not reached
    km = kaplan_meier([4, 10, 10, 10], [True, False, False, False])
    assert km.survival == [0.75] and km.median is None
    assert kaplan_meier([], []).median is None


def test_wilson_interval():
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0) and wilson(0, 0) == (None, None)
    lo, hi = wilson(6, 10)
    assert round(100 * lo) == 31 and round(100 * hi) == 83


def test_median_runs_only_while_every_run_runs(store, tmp_path):
    a = {1: 2.0, 2: 1.0, 3: 0.5, 4: 0.1}
    b = {1: 2.2, 2: 1.4}  # stopped after epoch 2 (memorised or collapsed)
    c = {1: 2.4, 2: 2.0, 3: 2.3, 4: 2.3}
    assert median_while_all_running([a, b, c]) == ([1, 2], [2.2, 1.4])
    assert median_while_all_running([a, c]) == ([1, 2, 3, 4], [2.2, 1.5, 1.4, 1.2])
    # in the figure: cut one run's history after epoch 1; that condition's median line ends at epoch 1
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    s = Store(copy)
    rec = next(r for r in s.records() if r["config"]["labels"] == "random" and r["config"]["n_train"] == 100)
    lines = (rec["dir"] / "history.csv").read_text().splitlines()
    (rec["dir"] / "history.csv").write_text("\n".join(lines[:2]) + "\n")
    data = load(s)
    fig, _ = FIGURES["learning_curves"].draw(data)
    thick = {ln.get_label(): list(ln.get_xdata()) for ln in fig.axes[0].get_lines()
             if ln.get_linewidth() > 1.5 and not ln.get_label().startswith("_")}
    # the legend says where a median stops early
    assert thick["random labels, N = 100 (median of 2, to epoch 1)"] == [1]
    assert thick["random labels, N = 200 (median of 2)"] == [1, 2]


def test_kept_vs_changed_draws_every_run_and_a_median_only_while_all_run(store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    s = Store(copy)
    rec = next(r for r in s.records() if r["config"]["labels"] == "partial:0.5" and r["config"]["n_train"] == 100)
    lines = (rec["dir"] / "history.csv").read_text().splitlines()
    (rec["dir"] / "history.csv").write_text("\n".join(lines[:2]) + "\n")  # this run stopped after epoch 1
    fig, caption = FIGURES["clean_vs_corrupt"].draw(load(s))
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(panels) == {"P = 0.5, N = 100 (2 runs)", "P = 0.5, N = 200 (2 runs)"}
    for title, last in (("P = 0.5, N = 100 (2 runs)", 1), ("P = 0.5, N = 200 (2 runs)", 2)):
        ax = panels[title]
        runs = [ln for ln in ax.get_lines() if ln.get_linewidth() < 1 and len(ln.get_xdata()) > 0]
        medians = [ln for ln in ax.get_lines() if ln.get_linewidth() > 1.5 and len(ln.get_xdata()) > 1 - (last == 1)]
        assert len(runs) == 4  # two runs, kept and changed labels each
        assert sorted(max(ln.get_xdata()) for ln in runs) == sorted([1, 1, 2, 2] if last == 1 else [2, 2, 2, 2])
        assert {max(ln.get_xdata()) for ln in medians} == {last}  # no median of the survivors past epoch 1
    assert "ends at the bar" in caption


def test_where_keeps_only_the_matching_runs_in_tables_figures_and_their_errors(store, tmp_path, capsys):
    from rote.cli import main
    from rote.errors import ConfigError
    from rote.reporting.results import parse_where

    data = load(store, parse_where(["labels=random"]))
    assert [c.label for c in data.conditions] == ["N = 100", "N = 200"]  # labels no longer vary
    assert {r["config"]["labels"] for r in data.records} == {"random"} and data.n_runs == 4
    assert data.name.endswith("(labels=random)")
    one = load(store, parse_where(["labels=partial:0.5", "n_train=200"]))
    assert len(one.conditions) == 1 and [r["config"]["seed"] for r in one.conditions[0].runs] == [0, 1]
    with pytest.raises(ConfigError, match="labels = partial:0.5, random, true"):
        load(store, {"labels": "flip:0.1"})
    for bad, words in ((["labels"], "expected SETTING=VALUE"), (["colour=red"], "not a run setting")):
        with pytest.raises(ConfigError, match=words):
            parse_where(bad)
    # the command line: written under --out, the store's own summary untouched; errors are one line, exit 2
    before = (store.root / "summary.csv").read_bytes() if (store.root / "summary.csv").exists() else None
    capsys.readouterr()
    assert main(["table", str(store.root), "--where", "labels=random", "--out", str(tmp_path / "t")]) == 0
    with open(tmp_path / "t" / "summary.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert "(labels=random)': 4 runs in 2 conditions" in capsys.readouterr().out
    after = (store.root / "summary.csv").read_bytes() if (store.root / "summary.csv").exists() else None
    assert after == before
    for args, words in ((["--where", "labels=random"], "give --out a directory"),
                        (["--where", "labels=flip:0.1", "--out", str(tmp_path / "u")], "no finished run"),
                        (["--where", "colour=red", "--out", str(tmp_path / "u")], "not a run setting")):
        assert main(["plot", str(store.root), *args]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "u").exists()


def test_names_in_words():
    assert condition_in_words({"labels": "random"}) == "random labels"
    assert condition_in_words({"labels": "partial:0.2"}) == "P = 0.2"
    assert condition_in_words({"labels": "true", "inputs": "shuffled-pixels"}) == "true labels, shuffled pixels"
    assert condition_in_words({"labels": "true", "inputs": "none"}) == "true labels"
    assert condition_in_words({"inputs": "gaussian"}) == "Gaussian inputs"
    assert condition_in_words({"labels": "flip:0.4", "n_train": 3000}) == "P = 0.4 (flipped), N = 3,000"


# -- the per-example view ------------------------------------------------------------------


def test_detection_summary_is_the_mean_and_std_of_the_detection_files(store, tmp_path):
    from rote.reporting.results import detection_rows

    data = load(store)
    rows = detection_rows(data)
    for c in data.conditions:
        files = [list(csv.DictReader(open(r["dir"] / "detection.csv"))) for r in c.runs]
        for score in ("first_learned", "confidence", "aum"):
            row = next(d for d in rows if d["condition"] == c.label and d["score"] == score)
            au = [float(next(x for x in f if x["score"] == score)["auroc"]) for f in files]
            pk = [float(next(x for x in f if x["score"] == score)["precision_at_k"]) for f in files]
            finite = [a for a in au if a == a]
            assert row["n_runs"] == 2 and row["n_defined"] == len(finite)
            if c.settings["labels"] == "true":
                assert not finite and row["auroc_mean"] is None  # nothing changed, nothing to find
            else:
                assert _approx(row["auroc_mean"], statistics.fmean(au))
                assert _approx(row["auroc_std"], statistics.stdev(au))
                assert _approx(row["precision_at_k_mean"], statistics.fmean(pk))
    text, paths = write_table(store, tmp_path / "out")
    assert {p.name for p in paths} >= {"detection_summary.csv", "detection_summary.md"}
    with open(tmp_path / "out" / "detection_summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and float(table[-1]["auroc_mean"]) == rows[-1]["auroc_mean"]
    assert "random labels, N = 200" in (tmp_path / "out" / "detection_summary.md").read_text()


def test_per_example_figures_of_a_run_and_of_a_sweep(store, tmp_path):
    from rote.reporting.curves import plot_run
    from rote.reporting.figures import draw_figures

    rec = next(r for r in store.records() if r["config"]["labels"] == "partial:0.5")
    d = tmp_path / "run"
    shutil.copytree(rec["dir"], d)
    notes = []
    names = {p.name for p in plot_run(d, log=notes.append)}
    assert {"curves.png", "examples.png", "examples_grid.png"} <= names and not notes
    figs, notes = draw_figures(load(store), tmp_path / "figs", formats=("png",))
    drawn = {f.name for f in figs}
    assert {"detection_auroc", "first_learned", "data_map", "examples_grid"} <= drawn
    for f in figs:
        assert f.paths[0].stat().st_size > 5000
    # without the per-example files: left out, with a note
    (d / "scores.csv").unlink()
    notes = []
    assert {p.name for p in plot_run(d, log=notes.append)} == {"curves.png", "curves.svg"}
    assert notes and "record_examples" in notes[0]


# -- how the figures look: what a reader needs is drawn, nothing is stacked on one point ----------------


def test_auroc_at_one_level_is_one_row_per_score(seed_store):
    fig, caption = FIGURES["detection_auroc"].draw(load(seed_store))  # random labels only: one level, P = 1
    ax = fig.axes[0]
    scores = [t.get_text() for t in ax.get_yticklabels()]
    assert len(scores) == len(set(scores)) >= 5 and "first_learned" in scores
    assert "P = 1" in ax.get_xlabel() and "best score at the top" in caption


def test_learning_curves_draw_collapsed_runs_apart_and_say_so(store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    s = Store(copy)
    rec = next(r for r in s.records() if r["config"]["labels"] == "random" and r["config"]["n_train"] == 200)
    res = json.loads((rec["dir"] / "result.json").read_text())
    (rec["dir"] / "result.json").write_text(json.dumps({**res, "outcome": "collapsed"}))
    fig, caption = FIGURES["learning_curves"].draw(load(s))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "collapsed or diverged run (1), x at its end" in labels
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() not in ("-", "None") and len(ln.get_xdata())]
    assert len(dashed) == 1 and "dashed lines ending in a cross" in caption


def test_seed_outcomes_label_at_most_fifteen_seeds_and_show_when_runs_ended(seed_store):
    data = load(seed_store)
    fig, caption = FIGURES["seed_outcomes"].draw(data)
    ax, ax_ep = fig.axes[:2]
    c = data.conditions[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in c.seeds]  # few seeds: every one
    ends = sorted(p[1] for coll in ax_ep.collections for p in coll.get_offsets())
    assert ends == sorted(r["result"]["epochs"] for r in c.runs)  # stop_at none: each ran its whole budget
    assert "Final training accuracy" in caption


def test_data_map_shows_a_sample_and_says_so(store, monkeypatch):
    from rote.reporting import examples_figures as ex

    rec = next(r for r in store.records() if r["config"]["labels"] == "partial:0.5" and r["config"]["n_train"] == 200)
    scores = ex.read_scores(rec["dir"])
    monkeypatch.setattr(ex, "DATA_MAP_POINTS", 20)
    fig, (ax,) = ex.subplots()
    ex.draw_data_map(ax, scores)
    drawn = [len(coll.get_offsets()) for coll in ax.collections]
    assert drawn and max(drawn) <= 20
    assert any("20 shown" in t.get_text() for t in ax.get_legend().get_texts())


def test_medians_are_joined_on_a_numeric_axis_only_and_never_across_a_median_not_reached(tmp_path):
    from rote.experiments.record import Record
    from rote.reporting.figures import _draw_fit
    from rote.reporting.results import Condition
    from rote.reporting.style import plt

    def cond(x, outcomes):
        runs = [Record(key=f"{x}-{i}", dir=tmp_path, environment={},
                       config={"seed": i, "epochs": 50, "stop_at": 0.997},
                       result={"outcome": o, "epochs": e, "memorized_epoch": e if o == "memorized" else None})
                for i, (o, e) in enumerate(outcomes)]
        return Condition(index=0, settings={}, varying={}, runs=runs)

    fitted = [("memorized", 10), ("memorized", 12), ("memorized", 14)]
    dead = [("collapsed", 5), ("collapsed", 7), ("memorized", 30)]  # fewer than half memorised: no median
    items = [(1.0, cond(1, fitted)), (2.0, cond(2, fitted)), (3.0, cond(3, dead)), (4.0, cond(4, fitted))]

    def joined(connect):
        fig, ax = plt.subplots()
        _draw_fit(ax, [("", items)], lambda x, j, n: x, connect=connect)
        lines = [list(ln.get_xdata()) for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 1]
        plt.close(fig)
        return lines

    assert joined(True) == [[1.0, 2.0]]  # 2 -> 4 would cross x = 3, whose median was not reached
    assert joined(False) == []


# -- the rules every figure keeps (the manual's "Figures" section) ----------------------------------------------


def _drawn(data):
    import matplotlib.pyplot as plt

    from rote.reporting.figures import Skip

    for name, f in FIGURES.items():
        try:
            fig, _ = f.draw(data)
        except Skip:
            continue
        yield name, fig
        plt.close(fig)


def test_no_legend_or_label_hides_data_in_any_figure_of_a_small_store(store, seed_store, tmp_path):
    from rote.reporting.figure_rules import violations

    checked = []
    for s in (store, seed_store):
        for name, fig in _drawn(load(s)):
            assert violations(fig) == [], name
            checked.append(name)
    assert len(checked) >= 12


def test_the_rule_checker_sees_a_legend_over_data():
    import matplotlib.pyplot as plt

    from rote.reporting.figure_rules import violations

    fig, ax = plt.subplots()
    ax.plot(range(10), range(10), marker="o", label="a line")
    ax.legend(loc="center")  # over the middle points
    assert violations(fig) and "covers" in violations(fig)[0]
    ax.get_legend().remove()
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0))
    assert violations(fig) == []
    plt.close(fig)


def test_dead_runs_and_unreached_medians_have_no_time_in_time_to_fit(store, tmp_path):
    """A dead run is drawn in the strip above the plot, never at an epoch; a median not reached sits on the top
    edge, never at a number."""
    from rote.reporting.figures import DIED_AT, NOT_REACHED_AT, time_to_fit

    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    for r in Store(copy).records():  # every random-label run dead, the others memorised
        edit = (dict(outcome="collapsed") if r["config"]["labels"] == "random" else
                dict(outcome="memorized", memorized_epoch=2, seconds_to_memorize=1.0))
        (r["dir"] / "result.json").write_text(json.dumps({**r["result"], **edit}))
    from matplotlib.collections import PathCollection

    fig, _ = time_to_fit(load(copy))
    ax = fig.axes[0]
    marks = [c for c in ax.collections if isinstance(c, PathCollection)]
    strip = [c for c in marks if c.get_offset_transform() != ax.transData and len(c.get_offsets())]
    ys = sorted({float(y) for c in strip for _, y in c.get_offsets()})
    assert ys == [NOT_REACHED_AT, DIED_AT]  # the dead runs and the median not reached, on the edge only
    data_ys = [float(y) for c in marks if c.get_offset_transform() == ax.transData
               for _, y in c.get_offsets()]
    assert data_ys and all(y == 2 for y in data_ys)  # only the memorised runs have a time


def test_auroc_lines_never_join_memorised_to_dead_levels(store, tmp_path):
    from rote.reporting.figures import detection_auroc

    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    for r in Store(copy).records():
        edit = dict(outcome="collapsed") if r["config"]["labels"] == "random" else dict(outcome="memorized")
        (r["dir"] / "result.json").write_text(json.dumps({**r["result"], **edit}))
    fig, _ = detection_auroc(load(copy))
    ax = fig.axes[0]
    joined = [l for l in ax.get_lines() if len(l.get_xdata()) == 2 and l.get_linestyle() == "-"]
    assert not any(1.0 in list(l.get_xdata()) for l in joined)  # P = 1 (dead) joined to nothing
    assert any("all dead" in t.get_text() for t in ax.get_xticklabels())


def test_panels_that_compare_share_their_axes(store):
    from rote.reporting.figures import clean_vs_corrupt, data_map, first_learned

    for draw in (first_learned, data_map, clean_vs_corrupt):
        fig, _ = draw(load(store))
        axes = [a for a in fig.axes if a.get_visible() and a.axison]
        assert len(axes) >= 2 and len({a.get_xlim() for a in axes}) == 1, draw.__name__


def test_report_tables_show_no_chance_band_for_true_labels_and_no_empty_detection_rows(store, tmp_path):
    from rote.reporting.results import detection_rows
    from rote.reporting.table import detection_cells, display_columns

    data = load(store)
    rows = summary_rows(data)
    headers, cells, _ = display_columns(rows, data.varying)
    band = headers.index("test chance band")
    for r, c in zip(rows, cells):
        assert (c[band] == "-") == (r["labels"] == "true"), (r["labels"], c[band])
    _, det = detection_cells(detection_rows(data))
    assert det and not any("true" in c[0] for c in det) and all(c[3] != "-" for c in det)
    text = write_report(store, tmp_path / "r.html").read_text()
    assert "<h3>Outcomes and time</h3>" in text and "<h3>Accuracies</h3>" in text
