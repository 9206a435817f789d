"""Per-epoch search artifacts: alpha trajectory CSV, heatmaps, genotype snapshots and cell diagrams.

Files are written under the run's work dir and handed to the tracker. Plots
need matplotlib and are made only when the tracker keeps artifacts, so a
torch-only install can still search with tracking off.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from ssnas_core.search.engine import EpochReport
from ssnas_core.search_space.cells import edge_index
from ssnas_core.search_space.genotype import Genotype
from ssnas_core.tracking.base import Tracker

SUMMARY = "search_summary.json"


def search_summary(report: EpochReport) -> dict[str, Any]:
    """How far the search got, beside its genotype: epochs run, fallback nodes and decided fraction per cell.

    ``ssnas finetune`` reads it next to ``genotype.json`` (also when given ``--genotype`` alone) and tags
    the fine-tune with it, so a result always says whether its architecture was searched to convergence.
    """
    cells = [k.split("/", 1)[1] for k in report.extra if k.startswith("fallback_nodes/")]
    return {"epochs": report.epoch + 1,
            "fallback_nodes": {c: int(report.extra[f"fallback_nodes/{c}"]) for c in cells},
            "decided_fraction": {c: round(float(report.extra[f"decided/{c}"]), 4) for c in cells}}


def edge_labels(n_nodes: int) -> list[str]:
    """``"<from>-<to>"`` per edge, the name used in ``alpha/<cell>/<edge>/<op>`` metrics."""
    return [f"{src}-{dst}" for src, dst in edge_index(n_nodes)]


def alpha_metrics(arch_weights: dict[str, object], primitives: Sequence[str], n_nodes: int) -> dict[str, float]:
    """One metric per relaxed architecture weight: ``alpha/<normal|reduce>/<edge>/<op>``."""
    labels = edge_labels(n_nodes)
    out: dict[str, float] = {}
    for cell, w in arch_weights.items():
        for e, label in enumerate(labels):
            for o, op in enumerate(primitives):
                out[f"alpha/{cell}/{label}/{op}"] = float(w[e][o])  # type: ignore[index]
    return out


# The trajectory figure has one panel per edge; redraw it every few epochs and at the end.
TRAJECTORY_PLOT_EVERY = 10


class SearchArtifacts:
    """Writes and logs the search's artifacts (see DESIGN.md, MLflow contract)."""

    def __init__(self, run_dir: Path, tracker: Tracker, primitives: Sequence[str], n_nodes: int) -> None:
        self.run_dir = run_dir
        self.tracker = tracker
        self.primitives = tuple(primitives)
        self.n_nodes = n_nodes
        self.plots = tracker.wants_artifacts

    def _path(self, rel: str) -> Path:
        path = self.run_dir / "artifacts" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _log(self, path: Path) -> None:
        rel = path.relative_to(self.run_dir / "artifacts").parent.as_posix()
        self.tracker.log_artifact(path, None if rel == "." else rel)

    def trajectory_rows(self, history: Sequence[dict[str, torch.Tensor]]) -> list[tuple[int, str, str, str, float]]:
        labels = edge_labels(self.n_nodes)
        return [(epoch, cell, labels[e], op, float(w[e, o]))
                for epoch, weights in enumerate(history) for cell, w in weights.items()
                for e in range(len(labels)) for o, op in enumerate(self.primitives)]

    def epoch(self, report: EpochReport, history: Sequence[dict[str, torch.Tensor]], final: bool = False) -> None:
        """Snapshot the genotype and the alpha trajectory after one epoch."""
        snap = self._path(f"genotypes/epoch_{report.epoch:03d}.json")
        snap.write_text(report.genotype.to_json())
        rows = self.trajectory_rows(history)
        traj = self._path("alphas/trajectory.csv")
        with open(traj, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["epoch", "cell", "edge", "op", "weight"])
            writer.writerows(rows)
        summary = self._path(SUMMARY)
        summary.write_text(json.dumps(search_summary(report), indent=2))
        written = [snap, traj, summary]
        if self.plots:
            from ssnas_core import viz

            for cell, genes in (("normal", report.genotype.normal), ("reduce", report.genotype.reduce)):
                written.append(viz.plot_cell(genes, self.n_nodes, f"{cell} cell, epoch {report.epoch}",
                                             self._path(f"genotypes/epoch_{report.epoch:03d}_{cell}.png")))
                heatmap = viz.plot_alpha_heatmap(
                    report.arch_weights[cell], self.primitives, edge_labels(self.n_nodes),
                    f"{cell} cell relaxed weights, epoch {report.epoch}", self._path(f"alphas/{cell}.png"))
                written.append(heatmap)
                log_image = getattr(self.tracker, "log_image", None)
                if log_image is not None:  # with a step: the UI's image slider walks through the epochs
                    log_image(heatmap, f"alphas_{cell}", report.epoch)
            if final or report.epoch % TRAJECTORY_PLOT_EVERY == 0:
                written.append(viz.plot_alpha_trajectory(rows, self._path("alphas/trajectory.png")))
        for path in written:
            self._log(path)

    def final(self, genotype: Genotype, supernet_state: dict[str, torch.Tensor]) -> None:
        """The final genotype and the searched supernet weights (a plain state_dict)."""
        geno = self._path("genotype.json")
        geno.write_text(genotype.to_json())
        weights = self._path("supernet.pt")
        torch.save(supernet_state, weights)
        self._log(geno)
        self._log(weights)
