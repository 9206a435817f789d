"""The supernet: stem, ``n_cells`` search cells, global pooling; alphas as parameters."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn

from ssnas_core.search_space.cells import SearchCell, n_edges
from ssnas_core.search_space.genotype import Genotype, derive_genotype, fallback_nodes
from ssnas_core.search_space.primitives import global_mean, primitives_for
from ssnas_core.search_space.stem import cell_channels, make_stem


class Supernet(nn.Module):
    """DARTS supernet whose forward returns pooled features ``(B, feature_dim)``.

    Args:
        c_in: image channels (1 or 3).
        c: initial channels C.
        n_cells: cells (3 in the paper), reductions at 1/3 and 2/3 of the depth.
        n_nodes: intermediate nodes per cell.
        primitives: candidate operations (default: the relaxation's own set, ``primitives_for``:
            FairDARTS' 7 without ``none`` for sigmoid, DARTS' 8 for softmax).
        relaxation: ``sigmoid`` (FairDARTS) or ``softmax`` (DARTS).
        image_size: input height/width, for the stem.
    """

    def __init__(self, c_in: int, c: int = 16, n_cells: int = 3, n_nodes: int = 4,
                 primitives: Sequence[str] | None = None, relaxation: str = "sigmoid", image_size: int = 28) -> None:
        super().__init__()
        if relaxation not in ("sigmoid", "softmax"):
            raise ValueError(f"relaxation {relaxation!r}: use sigmoid or softmax")
        self.primitives = tuple(primitives) if primitives is not None else primitives_for(relaxation)
        self.relaxation = relaxation
        self.n_nodes = n_nodes
        self.stem = make_stem(c_in, 3 * c, image_size)
        layout = cell_channels(c, n_cells, n_nodes)
        self.cells = nn.ModuleList(
            SearchCell(n_nodes, c_pp, c_p, c_cur, red, red_prev, self.primitives)
            for c_pp, c_p, c_cur, red, red_prev in layout
        )
        self.feature_dim = n_nodes * layout[-1][2]
        shape = (n_edges(n_nodes), len(self.primitives))
        # DARTS/FairDARTS initialisation: 1e-3 * N(0, 1).
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(shape))

    def alphas(self) -> list[nn.Parameter]:
        """The architecture parameters."""
        return [self.alpha_normal, self.alpha_reduce]

    def named_alphas(self) -> Iterator[tuple[str, nn.Parameter]]:
        yield "normal", self.alpha_normal
        yield "reduce", self.alpha_reduce

    def weights(self) -> Iterator[nn.Parameter]:
        """The network parameters (everything but the alphas)."""
        ids = {id(a) for a in self.alphas()}
        return (p for p in self.parameters() if id(p) not in ids)

    def relax(self, alpha: torch.Tensor) -> torch.Tensor:
        """(n_edges, n_ops) alpha -> relaxed weights: independent sigmoids or a softmax per edge."""
        return torch.sigmoid(alpha) if self.relaxation == "sigmoid" else torch.softmax(alpha, dim=-1)

    def arch_weights(self) -> dict[str, torch.Tensor]:
        """Relaxed weights per cell type, detached: ``{"normal": (E, O), "reduce": (E, O)}``."""
        return {name: self.relax(a).detach() for name, a in self.named_alphas()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, c_in, H, W) float -> (B, feature_dim)."""
        w_normal, w_reduce = self.relax(self.alpha_normal), self.relax(self.alpha_reduce)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return global_mean(s1)

    def fallback_nodes(self, threshold: float = 0.85) -> dict[str, int]:
        """Per cell type, the nodes whose genes come from the fallback rule (0 everywhere: converged)."""
        return {k: fallback_nodes(v.float().cpu().numpy(), self.n_nodes, self.relaxation, threshold, self.primitives)
                for k, v in self.arch_weights().items()}

    def genotype(self, threshold: float = 0.85) -> Genotype:
        """The discrete architecture by the rule of ``genotype.derive_cell``."""
        w = {k: v.float().cpu().numpy() for k, v in self.arch_weights().items()}
        return derive_genotype(w["normal"], w["reduce"], self.n_nodes, self.relaxation, threshold, self.primitives)
