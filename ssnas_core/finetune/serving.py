"""The model as registered: raw pixels in, probabilities out, so a downloaded model needs no ssnas preprocessing."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ServingModel(nn.Module):
    """Wraps a classifier with the evaluation transform and the output activation.

    Args:
        net: maps normalised (B, C, H, W) images to logits (B, K).
        mean, std: per-channel normalisation of pixels scaled to [0, 1].
        multilabel: per-label sigmoid instead of softmax.

    Input: float32 (B, C, H, W) pixel values in [0, 255] (uint8 images cast to float).
    Output: (B, K) probabilities.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], multilabel: bool) -> None:
        super().__init__()
        self.net = net
        self.multilabel = multilabel
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net((x.float() / 255.0 - self.mean) / self.std).float()
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)
