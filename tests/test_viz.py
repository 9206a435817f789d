"""Plots: each function writes a non-empty PNG and validates its input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from ssnas_core.viz import plot_alpha_heatmap, plot_alpha_trajectory, plot_cell  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OPS = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
]
EDGES = [f"{j}->{i}" for i in range(2, 6) for j in range(i)]  # 14 edges of a 4-node cell


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_alpha_heatmap_14x8(tmp_path: Path) -> None:
    weights = np.random.default_rng(0).dirichlet(np.ones(8), size=14)
    out = plot_alpha_heatmap(weights, OPS, EDGES, "normal cell, epoch 3", tmp_path / "a" / "h.png")
    assert out == tmp_path / "a" / "h.png" and _is_png(out)


def test_alpha_heatmap_rejects_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\(14, 8\)"):
        plot_alpha_heatmap(np.zeros((8, 14)), OPS, EDGES, "t", tmp_path / "h.png")


def test_cell_diagram_4_nodes(tmp_path: Path) -> None:
    cell = [
        ("sep_conv_3x3", 0, 2),
        ("skip_connect", 1, 2),
        ("sep_conv_3x3", 0, 3),
        ("dil_conv_3x3", 2, 3),
        ("max_pool_3x3", 1, 4),
        ("sep_conv_5x5", 3, 4),
        ("skip_connect", 0, 5),
        ("avg_pool_3x3", 2, 5),
    ]
    out = plot_cell(cell, 4, "normal", tmp_path / "cell.png")
    assert _is_png(out)


def test_cell_rejects_bad_gene(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid"):
        plot_cell([("skip_connect", 3, 2)], 4, "bad", tmp_path / "cell.png")
    with pytest.raises(ValueError, match="invalid"):
        plot_cell([("skip_connect", 0, 6)], 4, "bad", tmp_path / "cell.png")


def test_alpha_trajectory(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [
        (epoch, cell, edge, op, float(w))
        for epoch in range(5)
        for cell in ("normal", "reduce")
        for edge in EDGES[:5]
        for op, w in zip(OPS, rng.dirichlet(np.ones(8)), strict=True)
    ]
    out = plot_alpha_trajectory(rows[::-1], tmp_path / "traj.png")  # order must not matter
    assert _is_png(out)
    with pytest.raises(ValueError, match="no trajectory rows"):
        plot_alpha_trajectory([], tmp_path / "empty.png")


def test_import_does_not_load_matplotlib() -> None:
    import subprocess
    import sys

    code = "import sys, ssnas_core.viz; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.stdout.strip() == "False"
