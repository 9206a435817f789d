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
