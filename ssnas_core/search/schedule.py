"""Learning-rate schedule as a pure function of the epoch (resume-safe, testable)."""

from __future__ import annotations

import math


def cosine_lr(epoch: int, epochs: int, lr: float, lr_min: float) -> float:
    """Cosine annealing from ``lr`` at epoch 0 towards ``lr_min`` at ``epochs`` (torch's CosineAnnealingLR)."""
    if not 0 <= epoch <= epochs:
        raise ValueError(f"epoch {epoch} outside 0..{epochs}")
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A seed for one (run seed, epoch, stream): data order and augmentation depend only on these."""
    return (seed * 1_000_003 + epoch * 7_919 + stream * 104_729) % (2**63 - 1)
