"""tools/redraw_docs.py names real studies, figures and settings, and the docs it feeds show its files."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from rote.reporting.figures import FIGURES
from rote.reporting.results import CONFIG_FIELDS

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("redraw_docs", ROOT / "tools" / "redraw_docs.py")
redraw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(redraw)


def test_every_listed_store_figure_and_filter_exists():
    studies = {p.stem for p in (ROOT / "rote" / "studies").glob("*.yaml")}
    for name, where, figures, table in redraw.DRAWN:
        assert name in studies, name
        assert set(where) <= set(CONFIG_FIELDS), where
        assert set(figures) <= set(FIGURES), figures
        assert all(t.endswith(".png") for t in figures.values())
        assert table is None or table.endswith("-summary.md")


def test_docs_show_only_study_images_that_exist():
    shown = set()
    for md in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        shown |= {m.split("/")[-1] for m in re.findall(r"\]\(((?:docs/)?[\w.-]+\.png)\)", md.read_text())}
    missing = [s for s in sorted(shown) if not (ROOT / "docs" / s).is_file()]
    assert not missing, f"images the docs show but docs/ lacks: {missing}"


def test_the_shipped_studies_figures_hide_no_data():
    """Every figure docs/ shows, drawn from the records in results/, keeps the figure rules."""
    import matplotlib.pyplot as plt

    import rote.reporting.capacity  # noqa: F401  (registers capacity_bits)
    from rote.reporting.figure_rules import violations
    from rote.reporting.figures import FIGURES, Skip
    from rote.reporting.results import load

    drawn = 0
    for name, where, figures, _ in redraw.DRAWN:
        store = redraw.ROOT / "results" / name
        if not (store / "runs").is_dir():
            continue
        data = load(store, where)
        for fig_name in figures:
            try:
                fig, _ = FIGURES[fig_name].draw(data)
            except Skip:
                continue
            assert violations(fig) == [], (name, fig_name)
            plt.close(fig)
            drawn += 1
    assert drawn >= 12
