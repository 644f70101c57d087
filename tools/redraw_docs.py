"""Redraw every study figure and table that docs/ shows from the records kept in results/.

    python tools/redraw_docs.py            # all stores that are present
    python tools/redraw_docs.py --check    # list what would be drawn, and from which store

One version of rote draws them all: each image and table in docs/ that a study
produced is listed below with the store (and, for one arm of a comparison, the
runs) it comes from. A store that is absent is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (store under results/, --where filter, {figure name: file under docs/}, table file under docs/tables/ or None)
DRAWN = [
    ("memorize-n", {}, {"memorise_vs_n": "memorize-n-memorise_vs_n.png", "incidence": "memorize-n-incidence.png"},
     "memorize-n-summary.md"),
    ("memorize-n-keras1", {}, {"memorise_vs_n": "memorize-n-keras1-memorise_vs_n.png"}, "memorize-n-keras1-summary.md"),
    ("keras1-vs-pytorch", {}, {"incidence": "keras1-vs-pytorch-incidence.png"}, "keras1-vs-pytorch-summary.md"),
    # rote's default maths on the seed protocol: the seed experiment over twenty seeds
    ("keras1-vs-pytorch", {"optimizer": "adam"},
     {"seed_outcomes": "seed-outcomes.png", "learning_curves": "seed-learning_curves.png"}, "seed-summary.md"),
    ("zhang-mnist", {}, {"learning_curves": "zhang-mnist-learning_curves.png", "time_to_fit": "zhang-mnist-time_to_fit.png"},
     "zhang-mnist-summary.md"),
    ("corruption", {}, {"test_error": "corruption-test_error.png", "time_to_fit": "corruption-time_to_fit.png",
                        "clean_vs_corrupt": "corruption-clean_vs_corrupt.png",
                        "detection_auroc": "corruption-detection_auroc.png",
                        "first_learned": "corruption-first_learned.png",
                        "examples_grid": "corruption-examples_grid.png", "data_map": "corruption-data_map.png"},
     "corruption-summary.md"),
    ("memorization", {}, {}, "memorization-summary.md"),
    ("capacity", {}, {"capacity_bits": "capacity-capacity_bits.png"}, None),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="list what would be drawn; draw nothing")
    args = ap.parse_args(argv)

    from rote.experiments.store import Store
    from rote.reporting.capacity import capacity_rows, format_markdown
    from rote.reporting.figures import plot_sweep
    from rote.reporting.results import load
    from rote.reporting.table import write_table

    docs = ROOT / "docs"
    for name, where, figures, table in DRAWN:
        store = ROOT / "results" / name
        what = name + ("" if not where else " (" + ", ".join(f"{k}={v}" for k, v in where.items()) + ")")
        if not (store / "runs").is_dir() or not Store(store).done_keys():
            print(f"skipped {what}: no finished runs in {store}")
            continue
        if args.check:
            print(f"{what}: {', '.join(figures.values()) or 'no figure'}; table {table or '-'}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            drawn = {p.stem: p for p in plot_sweep(store, tmp / "figures", log=None, where=where) if p.suffix == ".png"}
            for fig, target in figures.items():
                if fig in drawn:
                    shutil.copy(drawn[fig], docs / target)
                    print(f"{what}: {fig} -> docs/{target}")
                else:
                    print(f"{what}: {fig} not drawn (the store cannot support it yet)")
            if table:
                write_table(store, tmp / "table", where=where)
                stem = table.removesuffix("-summary.md")
                for made, target in (("summary.md", table), ("detection_summary.md", f"{stem}-detection.md"),
                                     ("memorization.csv", f"{stem}.csv.gz")):
                    if (tmp / "table" / made).is_file():
                        data = (tmp / "table" / made).read_bytes()
                        # gzip without a time stamp: the same records give the same bytes
                        (docs / "tables" / target).write_bytes(gzip.compress(data, mtime=0) if target.endswith(".gz")
                                                               else data)
                        print(f"{what}: {made} -> docs/tables/{target}")
        if name == "capacity":
            (docs / "tables" / "capacity-summary.md").write_text(format_markdown(capacity_rows(load(store))))
            print(f"{what}: capacity table -> docs/tables/capacity-summary.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
