"""Logit adjustment (Menon et al., ICLR 2021, eq. 10; SEED.txt).

Training uses ``f_y(x) + tau * log pi_y`` inside the loss, which asks for a
larger margin on rare classes; inference uses the plain logits. For per-label
sigmoid outputs the prior enters as log-odds, ``tau * log(pi / (1 - pi))``.
"""

from __future__ import annotations

import torch
from torch import nn


class LogitAdjustment(nn.Module):
    """Adds ``tau * log prior`` to logits in training mode; identity in eval mode.

    Args:
        prior: (C,) class frequencies summing to 1, or (L,) positive rates for multi-label.
        tau: adjustment strength; 0 changes nothing.
        multilabel: use the log-odds form for independent sigmoid labels.

    Raises:
        ValueError: when a prior is 0 (or 1 for multi-label): log 0 = -inf would make the loss infinite.
    """

    def __init__(self, prior: torch.Tensor, tau: float = 1.0, multilabel: bool = False) -> None:
        super().__init__()
        prior = prior.double()
        if bool((prior <= 0).any()) or (multilabel and bool((prior >= 1).any())):
            raise ValueError(f"logit adjustment needs every class prior in (0, 1), got {prior.tolist()}: "
                             "a class without training images cannot be adjusted; remove it or use --tau 0")
        offset = torch.log(prior / (1 - prior)) if multilabel else torch.log(prior)
        self.tau = tau
        self.register_buffer("offset", (tau * offset).float())

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + self.offset if self.training and self.tau != 0 else logits
