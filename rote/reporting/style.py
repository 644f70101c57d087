"""One look for every figure: readable at paper size, saved as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",
}


def subplots(ncols: int = 1, width: float = 3.6, height: float = 2.9):
    """A figure with one row of ncols axes, each width x height inches: (fig, [ax, ...])."""
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save(fig, path_png: Path, formats=("png", "svg")) -> list[Path]:
    """Save next to each other as .png and .svg (written to temp names, then renamed)."""
    import os

    out = []
    import warnings

    with plt.rc_context(RC):
        with warnings.catch_warnings():  # image grids (subgridspecs) are laid out by hand; tight_layout says so
            warnings.simplefilter("ignore", UserWarning)
            fig.tight_layout()
        # a legend placed beside the axes is left out of the layout (the axes keep their size)
        # but must be inside the saved picture: bbox_inches="tight" only counts artists in the layout
        for ax in fig.axes:
            leg = ax.get_legend()
            if leg is not None and not leg.get_in_layout():
                leg.set_in_layout(True)
        for fmt in formats:
            path = Path(path_png).with_suffix("." + fmt)
            tmp = path.with_name(f".{path.stem}.tmp.{fmt}")
            fig.savefig(tmp, format=fmt, bbox_inches="tight")
            os.replace(tmp, path)
            out.append(path)
    plt.close(fig)
    return out


# -- shared look of the sweep figures --------------------------------------------

OUTCOME_COLORS = {"memorized": "#2a9d3f", "collapsed": "#d62728", "budget-spent": "#ff7f0e", "diverged": "#7b3fa0"}
OUTCOME_MARKERS = {"memorized": "o", "collapsed": "X", "budget-spent": "s", "diverged": "D"}


def condition_color(i: int) -> str:
    """The colour of the i-th condition or series (tab10, then tab20's light shades)."""
    cmap = plt.get_cmap("tab10" if i < 10 else "tab20")
    return matplotlib.colors.to_hex(cmap(i % 10) if i < 10 else cmap((2 * (i - 10) + 1) % 20))


def legend(ax, *, sources=(), outside: bool | None = None, inside_max: int = 3, **kw):
    """A legend inside the axes for up to inside_max entries, beside them (right) for more.

    sources: further axes whose entries join this legend (each label once), e.g. the left
    panel of a figure whose one legend stands right of its right panel.
    """
    handles, labels = [], []
    for a in (*sources, ax):
        for h, lab in zip(*a.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if not handles:
        return None
    if outside is None:
        outside = len(handles) > inside_max
    if outside:
        leg = ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kw)
        leg.set_in_layout(False)  # tight_layout keeps the axes' size; save's bbox_inches="tight" adds the legend
        return leg
    return ax.legend(handles, labels, **{"loc": "best", **kw})


def legend_below(fig, axes, ncol: int = 3, **kw):
    """One legend for the whole figure, below its panels, with every axes' entries once: it can hide nothing."""
    handles, labels = [], []
    for a in axes:
        for h, lab in zip(*a.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    if not handles:
        return None
    return fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(ncol, len(handles)),
                      frameon=False, **{"fontsize": 7.5, **kw})
