"""Plots of a search: architecture-weight heatmaps, cell diagrams and trajectories.

Matplotlib is imported inside each function and drives the Agg canvas directly
(no pyplot, so no global figure state, no screen and nothing left to close);
each function writes one PNG and returns its path.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    """A new figure bound to an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path | str) -> Path:
    """Write ``fig`` as PNG to ``path`` (parents created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", bbox_inches="tight")
    fig.clear()
    return out


def plot_alpha_heatmap(
    weights: np.ndarray,
    ops: Sequence[str],
    edge_labels: Sequence[str],
    title: str,
    path: Path | str,
) -> Path:
    """Draw relaxed architecture weights as an annotated heatmap.

    Args:
        weights: Relaxed weights, shape (n_edges, n_ops) (softmax or sigmoid).
        ops: Operation names, one per column.
        edge_labels: Edge names, one per row (e.g. ``"0->2"``).
        title: Figure title.
        path: Where to write the PNG.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: The shape of ``weights`` does not match the labels.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape != (len(edge_labels), len(ops)):
        raise ValueError(
            f"weights have shape {w.shape}, expected (n_edges, n_ops) = "
            f"({len(edge_labels)}, {len(ops)}) from edge_labels and ops"
        )
    n_edges, n_ops = w.shape
    fig = _figure(1.6 + 0.85 * n_ops, 1.2 + 0.42 * n_edges)
    ax = fig.add_subplot()
    finite = w[np.isfinite(w)]
    vmin = float(min(0.0, finite.min())) if finite.size else 0.0
    vmax = float(max(1.0, finite.max())) if finite.size else 1.0
    image = ax.imshow(w, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(n_ops), labels=list(ops), rotation=45, ha="right")
    ax.set_yticks(range(n_edges), labels=list(edge_labels))
    ax.set_xlabel("operation")
    ax.set_ylabel("edge")
    middle = (vmin + vmax) / 2
    for i in range(n_edges):
        for j in range(n_ops):
            color = "black" if w[i, j] > middle else "white"
            ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax, label="weight")
    ax.set_title(title)
    return _save(fig, path)


def _node_positions(n_nodes: int) -> dict[int, tuple[float, float]]:
    """Left-to-right layout: inputs top and bottom left, nodes on a line, output right."""
    pos = {0: (0.0, 2.2), 1: (0.0, -2.2)}
    for i in range(n_nodes + 1):  # the last one is the output c_{k}
        pos[i + 2] = (2.0 * (i + 1), 0.0)
    return pos


def _rad(a: tuple[float, float], b: tuple[float, float], height: float) -> float:
    """The arc3 ``rad`` bending a horizontal arrow from ``a`` to ``b`` by ``height`` (up > 0)."""
    return -2.0 * height / (b[0] - a[0])


def _arrow(
    ax: Axes,
    a: tuple[float, float],
    b: tuple[float, float],
    rad: float,
    label: str | None,
    at: float = 0.5,
) -> None:
    """Draw an arc3 arrow from ``a`` to ``b``, labelled at fraction ``at`` of the way."""
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(
        FancyArrowPatch(
            a,
            b,
            connectionstyle=f"arc3,rad={rad}",
            arrowstyle="-|>",
            mutation_scale=12,
            shrinkA=16,
            shrinkB=16,
            linestyle="-" if label else "--",
            color="black" if label else "dimgray",
        )
    )
    if label:
        # arc3 is a quadratic Bezier with control point mid + rad * (dy, -dx); the
        # axes aspect is equal, so data coordinates give the same curve as display ones
        dx, dy = b[0] - a[0], b[1] - a[1]
        cx, cy = (a[0] + b[0]) / 2 + rad * dy, (a[1] + b[1]) / 2 - rad * dx
        u = 1.0 - at
        x = u * u * a[0] + 2 * u * at * cx + at * at * b[0]
        y = u * u * a[1] + 2 * u * at * cy + at * at * b[1]
        ax.text(
            x,
            y,
            label,
            fontsize=7,
            ha="center",
            va="center",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
        )


def plot_cell(genotype_cell: Sequence[tuple[str, int, int]], n_nodes: int, title: str, path: Path | str) -> Path:
    """Draw one cell as a left-to-right DAG (no graphviz needed).

    Nodes are numbered 0 = c_{k-2}, 1 = c_{k-1} and 2.. n_nodes+1 for the
    intermediate nodes (drawn as 0..n_nodes-1); every intermediate node feeds
    the output c_{k} (concatenation, dashed arrows).

    Args:
        genotype_cell: Genes ``(op_name, from_node, to_node)``.
        n_nodes: Number of intermediate nodes.
        title: Figure title.
        path: Where to write the PNG.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: A gene's nodes are out of range or not ``from < to``.
    """
    if n_nodes < 1:
        raise ValueError(f"n_nodes is {n_nodes}, expected at least 1")
    for op, src, dst in genotype_cell:
        if not (0 <= src < dst and 2 <= dst <= n_nodes + 1):
            raise ValueError(
                f"gene ({op!r}, {src}, {dst}) is invalid: expected 0 <= from < to and "
                f"2 <= to <= {n_nodes + 1} for {n_nodes} intermediate nodes"
            )
    pos = _node_positions(n_nodes)
    names = {0: "c_{k-2}", 1: "c_{k-1}", n_nodes + 2: "c_{k}"}
    names.update({i + 2: str(i) for i in range(n_nodes)})
    fig = _figure(1.0 + 1.8 * (n_nodes + 1), 5.0)
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    ax.axis("off")
    seen: dict[tuple[int, int], int] = defaultdict(int)
    for op, src, dst in genotype_cell:
        # inputs: straight fans; node to node: adjacent straight, longer ones arc above
        height = 0.0 if src < 2 or dst - src == 1 else 0.6
        rad = _rad(pos[src], pos[dst], height) if height else 0.0
        rad += 0.3 * seen[(src, dst)]  # a repeated edge bends away from the first
        seen[(src, dst)] += 1
        _arrow(ax, pos[src], pos[dst], rad, op, at=0.62 if src < 2 else 0.5)
    out = pos[n_nodes + 2]
    for i in range(n_nodes):  # concatenation into c_{k}: dashed arcs below the line
        height = -0.35 * (n_nodes - i - 1)
        _arrow(ax, pos[i + 2], out, _rad(pos[i + 2], out, height), None)
    for node, (x, y) in pos.items():
        is_io = node < 2 or node == n_nodes + 2
        ax.text(
            x,
            y,
            f"${names[node]}$" if is_io else names[node],
            ha="center",
            va="center",
            fontsize=10,
            zorder=3,
            bbox={"boxstyle": "round,pad=0.4", "ec": "black", "fc": "lightsteelblue" if is_io else "lightyellow"},
        )
    xs = [p[0] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(-2.6, 2.6)
    ax.set_title(title)
    return _save(fig, path)


def plot_alpha_trajectory(rows: Sequence[tuple[int, str, str, str, float]], path: Path | str) -> Path:
    """Small multiples of architecture weights over epochs.

    One subplot per (cell type, edge), one line per op, one legend for all.

    Args:
        rows: ``(epoch, cell, edge, op, weight)`` records, in any order (the
            columns of ``alphas/trajectory.csv``).
        path: Where to write the PNG.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: ``rows`` is empty.
    """
    if not rows:
        raise ValueError("no trajectory rows to plot; expected (epoch, cell, edge, op, weight)")
    series: dict[tuple[str, str], dict[str, list[tuple[int, float]]]] = {}
    ops: list[str] = []
    for epoch, cell, edge, op, weight in rows:
        series.setdefault((str(cell), str(edge)), {}).setdefault(str(op), []).append((int(epoch), float(weight)))
        if str(op) not in ops:
            ops.append(str(op))
    panels = list(series)  # cell types keep first-seen order, edges within them too
    n_cols = min(len(panels), 7)
    n_rows = -(-len(panels) // n_cols)
    fig = _figure(2.3 * n_cols, 1.9 * n_rows + 0.6)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False)
    colors = {op: f"C{i % 10}" for i, op in enumerate(ops)}
    for ax, key in zip(axes.flat, panels, strict=False):
        for op, points in series[key].items():
            points.sort()
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                color=colors[op],
                label=op,
                linewidth=1.2,
                marker="." if len(points) < 20 else None,
            )
        ax.set_title(f"{key[0]} {key[1]}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("weight", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[op], label=op) for op in ops]
    fig.legend(
        handles=handles, loc="outside upper center", ncol=min(len(ops), 8, 2 * n_cols), fontsize=8, frameon=False
    )
    return _save(fig, path)


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], title: str, path: Path | str) -> Path:
    """Row-normalised confusion matrix with counts; rows are true classes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cm = np.asarray(cm)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(class_names)
    fig = Figure(figsize=(2.5 + 0.6 * n, 2.0 + 0.6 * n))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [str(c)[:16] for c in class_names], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(c)[:16] for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i, j]}\n{rates[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_per_class_error(methods: Sequence[str], classes: Sequence[str], errors: np.ndarray, title: str,
                         path: Path | str) -> Path:
    """Grouped bars: per-class test error (rows: methods, columns: classes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    errors = np.asarray(errors, dtype=float)
    fig = Figure(figsize=(max(6.0, 1.2 * len(classes) * max(1, len(methods)) / 2), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(classes))
    for i, method in enumerate(methods):
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, errors[i], width, label=method)
    ax.set_xticks(x, [str(c)[:20] for c in classes], rotation=30, ha="right")
    ax.set_ylabel("test error of the class")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
