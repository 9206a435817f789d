"""LDAM loss with deferred re-weighting (Cao et al., NeurIPS 2019), a baseline, on a normalised head.

Label-distribution-aware margins ``m_c = C / n_c^(1/4)`` scaled so the largest is
``max_m`` are subtracted from the true-class cosine, and the cosines are scaled by
``s``; DRW switches on class-balanced weights (effective number, Cui et al. 2019)
for the last fifth of training, as the paper's 160 of 200 epochs.

As in the reference (kaidic/LDAM-DRW, ``models/resnet_cifar.py`` ``NormedLinear`` and
``losses.py`` ``LDAMLoss``), the classifier is a normalised (cosine) linear layer:
features and class weights are L2-normalised, so a logit is a cosine in [-1, 1]
before the scale. Here the head applies the scale itself (``NormedLinear(scale=s)``),
so the network's outputs are the logits the loss saw and softmax gives the
probabilities it trained; ``LDAMLoss`` then subtracts ``s * m_y`` from the true
class, which is the reference's ``s * (cos_y - m_y)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LDAM_SCALE = 30.0  # s in kaidic/LDAM-DRW losses.py


def class_balanced_weights(counts: np.ndarray, beta: float = 0.9999) -> torch.Tensor:
    """Cui et al. 2019: ``(1 - beta) / (1 - beta^n_c)``, normalised to mean 1."""
    effective = (1.0 - np.power(beta, counts)) / (1.0 - beta)
    w = 1.0 / effective
    return torch.tensor(w / w.mean(), dtype=torch.float32)


class NormedLinear(nn.Module):
    """``scale * cos(feature, class weight)``: a linear layer on L2-normalised features and weights, no bias.

    Args:
        dim_in: feature dimension.
        n_classes: outputs.
        scale: factor on the cosines (LDAM's ``s``); logits lie in ``[-scale, scale]``.
    """

    def __init__(self, dim_in: int, n_classes: int, scale: float = LDAM_SCALE) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim_in))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.scale = float(scale)

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim_in) -> (B, n_classes) cosines in [-1, 1]."""
        return F.linear(F.normalize(x.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.cosine(x)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, scale={self.scale:g}"


HEAD_ATTRS = ("head", "fc", "linear")  # where ssnas' derived network and the baselines keep their classifier


def classifier(model: nn.Module) -> tuple[str, nn.Linear | NormedLinear]:
    """``(attribute, layer)`` of ``model``'s final linear classifier (``head``, ``fc`` or ``linear``; a
    ``NormedLinear`` counts).

    Raises:
        TypeError: the model has no such linear classifier.
    """
    for attr in HEAD_ATTRS:
        layer = getattr(model, attr, None)
        if isinstance(layer, (nn.Linear, NormedLinear)):
            return attr, layer
    raise TypeError(f"{type(model).__name__} has no linear classifier named {' or '.join(HEAD_ATTRS)}")


def use_normed_head(model: nn.Module, scale: float = LDAM_SCALE) -> nn.Module:
    """Replace ``model``'s final ``nn.Linear`` (``head``, ``fc`` or ``linear``) by a ``NormedLinear``; returns model.

    Raises:
        TypeError: the model has no such linear classifier.
    """
    attr, layer = classifier(model)
    if not isinstance(layer, NormedLinear):
        setattr(model, attr, NormedLinear(layer.in_features, layer.out_features, scale))
    return model


def normed_head_scale(model: nn.Module) -> float | None:
    """The scale of ``model``'s ``NormedLinear`` classifier, or None when it has a plain one (or none)."""
    try:
        layer = classifier(model)[1]
    except TypeError:
        return None
    return layer.scale if isinstance(layer, NormedLinear) else None


class LDAMLoss(nn.Module):
    """LDAM-DRW for single-label tasks, on the logits of a ``NormedLinear(scale=s)`` head.

    Args:
        counts: (C,) training images per class (all > 0).
        max_m: the largest margin (0.5 in the reference).
        s: the head's scale (30 in the reference).
        drw_from: fraction of training after which class-balanced weights apply.
    """

    def __init__(self, counts: np.ndarray, max_m: float = 0.5, s: float = LDAM_SCALE, drw_from: float = 0.8) -> None:
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
        """logits: ``s * cos`` (B, C) from a ``NormedLinear``; target: (B,) -> scalar."""
        shifted = logits.float() - self.s * F.one_hot(target, logits.shape[1]) * self.margins
        return F.cross_entropy(shifted, target, weight=self.cb_weights if self.reweight else None)
