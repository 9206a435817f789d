"""The search objective: the self-supervised (or supervised) loss of the supernet on two views."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssnas_core.losses.barlow_twins import BarlowTwinsLoss
from ssnas_core.losses.nt_xent import NTXentLoss


class SearchObjective(nn.Module):
    """Supernet + head + loss, composed.

    ``barlow-twins`` and ``simclr`` project both views and compare them; ``ce``
    classifies the first view with a linear head (supervised FairDARTS/DARTS;
    per-label BCE for multi-label tasks). Both views go through the supernet
    as one batch of 2B images: half the kernel launches of two passes, with
    batch-norm statistics shared by the views.

    Args:
        supernet: maps (B, C, H, W) to (B, F).
        head: projector (SSL) or linear classifier (``ce``).
        ssl: ``barlow-twins``, ``simclr`` or ``ce``.
        lambd: Barlow Twins lambda.
        temperature: NT-Xent temperature.
        multilabel: labels are (B, L) 0/1 (``ce`` only).
    """

    def __init__(self, supernet: nn.Module, head: nn.Module, ssl: str, lambd: float = 0.0051,
                 temperature: float = 0.5, multilabel: bool = False) -> None:
        super().__init__()
        self.supernet = supernet
        self.head = head
        self.ssl = ssl
        self.multilabel = multilabel
        self.loss: nn.Module | None
        if ssl == "barlow-twins":
            self.loss = BarlowTwinsLoss(lambd)
        elif ssl == "simclr":
            self.loss = NTXentLoss(temperature)
        elif ssl == "ce":
            self.loss = None
        else:
            raise ValueError(f"unknown search loss {ssl!r}: use barlow-twins, simclr or ce")

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """v1, v2: (B, C, H, W) views; y: (B,) or (B, L) labels (used by ``ce`` only) -> scalar loss."""
        if self.loss is None:
            logits = self.head(self.supernet(v1)).float()
            if self.multilabel:
                return F.binary_cross_entropy_with_logits(logits, y.float())
            return F.cross_entropy(logits, y)
        z = self.head(self.supernet(torch.cat([v1, v2]))).float()
        z1, z2 = z.chunk(2)
        return self.loss(z1, z2)
