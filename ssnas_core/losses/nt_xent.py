"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., 2020, eq. 1).

SSNAS (Kaplan & Giryes, 2020) searches with this loss and a softmax relaxation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NTXentLoss(nn.Module):
    """NT-Xent over the 2B embeddings of two views; each view's positive is its twin.

    Args:
        temperature: tau of the softmax over cosine similarities.
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"NT-Xent temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """z1, z2: (B, D) -> scalar loss averaged over the 2B anchors."""
        b = z1.shape[0]
        if b < 2:
            raise ValueError("NT-Xent needs a batch of at least 2 (negatives come from the batch)")
        # Similarities in float32 even under autocast (which would run the matmul in bf16); index tensors
        # are made on the embeddings' device, so no host-to-device copy happens inside a step.
        with torch.autocast(z1.device.type, enabled=False):
            z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
            sim = z @ z.T / self.temperature
            sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
            target = torch.arange(2 * b, device=z.device).add_(b).remainder_(2 * b)
            return F.cross_entropy(sim, target)
