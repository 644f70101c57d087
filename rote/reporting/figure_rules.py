"""Rules every figure keeps, checked on the drawn figure itself (display coordinates, as matplotlib lays it out).

- Nothing hides data: no legend and no text label covers a plotted data point (a marker, a vertex of a
  line, the end of an error bar) of any axes.

``violations(fig)`` lists what breaks the rule, one line each; tests draw every registered figure from a
small store and from the shipped studies' records and require none.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.lines import Line2D


def data_points(ax) -> np.ndarray:
    """The display coordinates (n, 2) of every data point drawn in ax: markers, line vertices, scatter offsets.

    Lines without markers count by their vertices (a step or a fit line is data where it bends); shaded bands
    (fill_between) and reference lines drawn across the whole axes (axhline, axvline, spans) are not points.
    """
    pts = []
    for line in ax.get_lines():
        if not line.get_visible() or _is_reference(line, ax):
            continue
        xy = np.asarray(line.get_xydata(), dtype=float)
        if not xy.size:
            continue
        xy = line.get_transform().transform(xy)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if line.get_drawstyle().startswith("steps") and len(xy) > 1:
            xy = _steps(xy, line.get_drawstyle())
        pts.append(xy)
        if line.get_linestyle() not in ("None", "", " ") and len(xy) > 1:
            pts.append(_along(xy))
    for coll in ax.collections:
        if not coll.get_visible():
            continue
        if isinstance(coll, PolyCollection):  # a band's outline: its edges are data (a low and a high)
            for path in coll.get_paths():
                v = coll.get_transform().transform(np.asarray(path.vertices, dtype=float))
                v = v[np.isfinite(v).all(axis=1)]
                if len(v):
                    pts.append(v)
            continue
        if isinstance(coll, PathCollection):
            off = np.asarray(coll.get_offsets(), dtype=float)
            if off.size:
                pts.append(coll.get_offset_transform().transform(off))
        elif hasattr(coll, "get_segments"):  # error bars, vlines: their ends
            for seg in coll.get_segments():
                seg = np.asarray(seg, dtype=float)
                if seg.size:
                    pts.append(coll.get_transform().transform(seg))
    if not pts:
        return np.zeros((0, 2))
    out = np.concatenate(pts)
    return out[np.isfinite(out).all(axis=1)]


def _steps(xy: np.ndarray, style: str) -> np.ndarray:
    """The corners of a step line: steps-post holds each y until the next x; steps-pre jumps first."""
    out = [xy[0]]
    for a, b in zip(xy[:-1], xy[1:]):
        out.append((b[0], a[1]) if style in ("steps-post", "steps") and style != "steps-pre" else (a[0], b[1]))
        out.append(b)
    return np.asarray(out)


def _along(xy: np.ndarray, every: float = 3.0) -> np.ndarray:
    """Points every few pixels along a polyline: a line that runs under a legend is hidden there too."""
    out = []
    for a, b in zip(xy[:-1], xy[1:]):
        n = int(np.hypot(*(b - a)) // every)
        if n > 0:
            s = np.linspace(0.0, 1.0, n + 1)[1:-1, None]
            out.append(a + s * (b - a))
    return np.concatenate(out) if out else np.zeros((0, 2))


def _is_reference(line: Line2D, ax) -> bool:
    """axhline/axvline (and the like): a line whose transform mixes axes and data coordinates."""
    return line.get_transform() != ax.transData and line.get_transform().contains_branch(ax.transAxes)


def _inside(box, pts: np.ndarray, pad: float = 1.0) -> np.ndarray:
    return ((pts[:, 0] > box.x0 + pad) & (pts[:, 0] < box.x1 - pad)
            & (pts[:, 1] > box.y0 + pad) & (pts[:, 1] < box.y1 - pad))


def violations(fig) -> list[str]:
    """What in fig hides data, one line each; [] when nothing does."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    covers = []  # (what, box)
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is not None and leg.get_visible():
            covers.append((f"the legend of '{ax.get_title()}'", leg.get_window_extent(renderer)))
        for t in ax.texts:
            if t.get_visible() and t.get_text().strip():
                covers.append((f"the label '{t.get_text()[:30]}' in '{ax.get_title()}'", t.get_window_extent(renderer)))
    for leg in fig.legends:
        covers.append(("the figure's legend", leg.get_window_extent(renderer)))
    out = []
    for ax in fig.axes:
        pts = data_points(ax)
        if not len(pts):
            continue
        clip = ax.get_window_extent(renderer)
        pts = pts[(pts[:, 0] >= clip.x0 - 1) & (pts[:, 0] <= clip.x1 + 1)
                  & (pts[:, 1] >= clip.y0 - 1) & (pts[:, 1] <= clip.y1 + 1)]  # points drawn, not clipped away
        for what, box in covers:
            n = int(_inside(box, pts).sum())
            if n:
                out.append(f"{what} covers {n} data point{'s' * (n != 1)} of '{ax.get_title() or 'an axes'}'")
    return out
