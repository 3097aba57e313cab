"""Drawing a :class:`~ghn_core.graph.graph.Graph` with matplotlib (imported only when drawing)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .vocab import OP_NAMES

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["draw_graph"]


def _color_index(op: int) -> int:
    """tab20 pairs similar shades (2i, 2i+1): give consecutive node types different hues."""
    return (2 * op) % 20 + (2 * op // 20) % 2


def draw_graph(graph: "Graph", path: str | Path, *, virtual: bool = False, title: str | None = None,
               dpi: int = 120, max_size: float = 40.0) -> Path:
    """Save a picture of ``graph`` to ``path`` (format from the suffix: .png, .pdf, .svg ...).

    Nodes sit in columns by forward level (input at the left), coloured by node type, with a
    legend of the types present. Real edges are drawn in grey; ``virtual=True`` adds the virtual
    edges, faint, with opacity falling off as 1/distance.
    """
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    path = Path(path)
    level, _ = graph.levels()
    n = graph.num_nodes
    y = np.zeros(n)
    for lv in np.unique(level):           # spread each column around 0
        members = np.flatnonzero(level == lv)
        y[members] = np.arange(members.size) - (members.size - 1) / 2
    x = level.astype(float)
    width = min(max_size, 2.0 + 0.25 * (level.max() + 1))
    height = min(max_size, 2.0 + 0.4 * (np.abs(y).max() * 2 + 1))
    fig = Figure(figsize=(width + 2.5, height))
    ax = fig.add_subplot()
    pos = np.stack([x, y], axis=1)
    real = graph.edge_dist == 1
    if virtual and (~real).any():
        ve = graph.edge_index[:, ~real]
        alpha = 0.3 / graph.edge_dist[~real]
        colors = np.zeros((ve.shape[1], 4))
        colors[:, 2] = 0.6
        colors[:, 3] = alpha
        ax.add_collection(LineCollection(pos[ve.T], colors=colors, linewidths=0.3, zorder=1))
    ax.add_collection(LineCollection(pos[graph.edge_index[:, real].T], colors="0.55", linewidths=0.6, zorder=2))
    cmap = colormaps["tab20"]
    for op in np.unique(graph.node_op):
        members = graph.node_op == op
        ax.scatter(x[members], y[members], s=28, color=cmap(_color_index(int(op))), label=OP_NAMES[op],
                   edgecolors="black", linewidths=0.3, zorder=3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    ax.set_xlabel("level (longest path from the input)")
    ax.set_yticks([])
    ax.set_title(title or f"{n} nodes, {int(real.sum())} edges")
    ax.autoscale()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
