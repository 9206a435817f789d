"""Heads on top of pooled features: the SSL projector and a linear classifier."""

from __future__ import annotations

from typing import Sequence

from torch import nn


class Projector(nn.Sequential):
    """Barlow Twins projector (Zbontar et al. 2021, section 2): Linear-BN-ReLU blocks, then a plain Linear.

    Args:
        dim_in: feature dimension.
        sizes: hidden and output sizes, e.g. (512, 512).
    """

    def __init__(self, dim_in: int, sizes: Sequence[int]) -> None:
        dims = [dim_in, *sizes]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-2], dims[1:-1]):
            layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-2], dims[-1], bias=False))
        super().__init__(*layers)
