"""The derived (discrete) network: same stem and depth as the supernet, genotype cells, linear head."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ssnas_core.search_space.cells import FixedCell
from ssnas_core.search_space.genotype import Genotype
from ssnas_core.search_space.primitives import global_mean
from ssnas_core.search_space.stem import cell_channels, make_stem


class DerivedNetwork(nn.Module):
    """The searched architecture as a plain network.

    Parameter names match the supernet's (``stem.*``, ``cells.<i>.edges.<e>.ops.<op>.*``),
    so ``inherit_from`` can copy the searched weights of the chosen operations.

    Args:
        genotype: the architecture.
        c_in: image channels.
        c: initial channels (the supernet's width).
        n_cells: cells (the supernet's depth).
        image_size: input size, for the stem.
        n_classes: outputs of the linear head; None returns features.
    """

    def __init__(self, genotype: Genotype, c_in: int, c: int = 16, n_cells: int = 3, image_size: int = 28,
                 n_classes: int | None = None) -> None:
        super().__init__()
        self.genotype = genotype.validate()
        self.width, self.n_cells = c, n_cells
        n_nodes = genotype.n_nodes
        self.stem = make_stem(c_in, 3 * c, image_size)
        layout = cell_channels(c, n_cells, n_nodes)
        self.cells = nn.ModuleList(
            FixedCell(genotype.reduce if red else genotype.normal, n_nodes, c_pp, c_p, c_cur, red, red_prev)
            for c_pp, c_p, c_cur, red, red_prev in layout
        )
        self.feature_dim = n_nodes * layout[-1][2]
        self.head = nn.Linear(self.feature_dim, n_classes) if n_classes else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, c_in, H, W) -> (B, feature_dim)."""
        s = self.stem(x)
        # Each state is read by the next two cells, whose preprocessing starts with ReLU: one ReLU per state
        # (FixedCell.on_relu), not one per reader. The last cell's output is pooled as it is.
        r0 = r1 = torch.relu(s)
        for i, cell in enumerate(self.cells):
            s = cell.on_relu(r0, r1)
            if i + 1 < len(self.cells):
                r0, r1 = r1, torch.relu(s)
        return global_mean(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, c_in, H, W) -> logits (B, n_classes), or features when there is no head."""
        f = self.features(x)
        return self.head(f) if self.head is not None else f

    def inherit_from(self, supernet_state: Mapping[str, torch.Tensor]) -> list[str]:
        """Copy every tensor whose name and shape match the supernet's; returns the copied names."""
        own = self.state_dict()
        copied = [k for k, v in supernet_state.items() if k in own and own[k].shape == v.shape]
        self.load_state_dict({**own, **{k: supernet_state[k] for k in copied}})
        return copied


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
