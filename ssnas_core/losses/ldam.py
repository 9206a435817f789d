"""LDAM loss with deferred re-weighting (Cao et al., NeurIPS 2019), a baseline.

Label-distribution-aware margins ``m_c = C / n_c^(1/4)`` scaled so the largest is
``max_m`` are subtracted from the true-class logit, logits are scaled by ``s``;
DRW switches on class-balanced weights (effective number, Cui et al. 2019) for the
last fifth of training, as the paper's 160 of 200 epochs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def class_balanced_weights(counts: np.ndarray, beta: float = 0.9999) -> torch.Tensor:
    """Cui et al. 2019: ``(1 - beta) / (1 - beta^n_c)``, normalised to mean 1."""
    effective = (1.0 - np.power(beta, counts)) / (1.0 - beta)
    w = 1.0 / effective
    return torch.tensor(w / w.mean(), dtype=torch.float32)


class LDAMLoss(nn.Module):
    """LDAM-DRW for single-label tasks.

    Args:
        counts: (C,) training images per class (all > 0).
        max_m: the largest margin.
        s: logit scale.
        drw_from: fraction of training after which class-balanced weights apply.
    """

    def __init__(self, counts: np.ndarray, max_m: float = 0.5, s: float = 30.0, drw_from: float = 0.8) -> None:
        super().__init__()
        m = 1.0 / np.power(np.asarray(counts, dtype=np.float64), 0.25)
        self.register_buffer("margins", torch.tensor(m * (max_m / m.max()), dtype=torch.float32))
        self.register_buffer("cb_weights", class_balanced_weights(np.asarray(counts)))
        self.s = s
        self.drw_from = drw_from
        self.reweight = False

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Deferred re-weighting: on from ``drw_from * epochs``."""
        self.reweight = epoch >= int(self.drw_from * epochs)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        shifted = logits.float() - F.one_hot(target, logits.shape[1]) * self.margins
        return F.cross_entropy(self.s * shifted, target, weight=self.cb_weights if self.reweight else None)
