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
        logit_offset: (K,) post-hoc logit adjustment ``tau * log prior`` subtracted before the activation.

    Input: float32 (B, C, H, W) pixel values in [0, 255] (uint8 images cast to float).
    Output: (B, K) probabilities.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], multilabel: bool,
                 logit_offset: Sequence[float] | None = None) -> None:
        super().__init__()
        self.net = net
        self.multilabel = multilabel
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        # post-hoc logit adjustment (tau * log prior), saved in model_config.json, not in the weights
        offset = torch.tensor([] if logit_offset is None else list(logit_offset), dtype=torch.float32)
        self.register_buffer("logit_offset", offset, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net((x.float() / 255.0 - self.mean) / self.std).float()
        if self.logit_offset.numel():
            logits = logits - self.logit_offset
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)
