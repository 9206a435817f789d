"""FairDARTS zero-one loss (Chu et al., ECCV 2020, eq. 6; SEED.txt).

``L_01 = -1/N sum_i (sigmoid(alpha_i) - 0.5)^2`` over all N architecture
weights: minimising it pushes every sigmoid weight towards 0 or 1.
"""

from __future__ import annotations

from typing import Sequence

import torch


def zero_one_loss(alphas: Sequence[torch.Tensor]) -> torch.Tensor:
    """alphas: the raw architecture parameters (any shapes) -> scalar loss in [-0.25, 0]."""
    sig = torch.cat([torch.sigmoid(a).flatten() for a in alphas])
    return -(sig - 0.5).pow(2).mean()


def zero_one_grad(alphas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The gradient of ``zero_one_loss`` in closed form, per alpha tensor (no autograd graph).

    ``d L_01 / d alpha_i = -2/N (sigmoid(alpha_i) - 0.5) sigmoid(alpha_i) (1 - sigmoid(alpha_i))``, so the
    architecture step adds it to the SSL gradient of the same backward instead of running a second one.
    """
    n = sum(a.numel() for a in alphas)
    out = []
    for a in alphas:
        sig = torch.sigmoid(a.detach())
        out.append((sig - 0.5) * sig * (1 - sig) * (-2.0 / n))
    return out
