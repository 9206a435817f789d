"""Barlow Twins loss (Zbontar et al., 2021, eq. 1; SEED.txt).

``L_BT = sum_i (1 - C_ii)^2 + lambda * sum_i sum_{j != i} C_ij^2`` where ``C`` is
the cross-correlation of the two views' embeddings, each normalised along the
batch (zero mean, unit variance, as the reference implementation does with a
non-affine BatchNorm).
"""

from __future__ import annotations

import torch
from torch import nn


def off_diagonal(c: torch.Tensor) -> torch.Tensor:
    """All off-diagonal elements of a square matrix (D, D) as a flat (D*D - D,) tensor."""
    d = c.shape[0]
    return c.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(B, D), (B, D) -> (D, D) cross-correlation of batch-normalised embeddings."""
    z1n = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)
    z2n = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + eps)
    return z1n.T @ z2n / z1.shape[0]


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss on two views' embeddings.

    Args:
        lambd: weight of the off-diagonal (redundancy reduction) term; the paper uses 5.1e-3.

    Example:
        >>> loss = BarlowTwinsLoss(0.0051)(z1, z2)   # z1, z2: (B, D)
    """

    def __init__(self, lambd: float = 0.0051) -> None:
        super().__init__()
        if lambd < 0:
            raise ValueError(f"Barlow Twins lambda must be >= 0, got {lambd}")
        self.lambd = lambd

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The on-diagonal (invariance) and off-diagonal (redundancy) terms, unweighted."""
        if z1.ndim != 2 or z1.shape != z2.shape:
            raise ValueError(f"Barlow Twins needs two (B, D) embeddings of one shape, got {tuple(z1.shape)} "
                             f"and {tuple(z2.shape)}")
        if z1.shape[0] < 2:
            raise ValueError("Barlow Twins needs a batch of at least 2: batch statistics of 1 image are undefined")
        # In float32 even under autocast: a bf16 matmul over the batch rounds C_ij to 3 digits, and the loss
        # sums D^2 of them (autocast would cast the float32 inputs back down to bf16 for the matmul).
        with torch.autocast(z1.device.type, enabled=False):
            c = cross_correlation(z1.float(), z2.float())
        on_diag = (torch.diagonal(c) - 1).pow(2).sum()
        off_diag = off_diagonal(c).pow(2).sum()
        return on_diag, off_diag

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        on_diag, off_diag = self.terms(z1, z2)
        return on_diag + self.lambd * off_diag
