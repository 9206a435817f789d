"""The fine-tune criterion for each ``--loss``: focal (+ logit adjustment), CE, class-balanced, LDAM-DRW."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ssnas_core.config import FinetuneConfig
from ssnas_core.errors import ConfigError
from ssnas_core.losses.focal import FocalLoss, SigmoidFocalLoss
from ssnas_core.losses.ldam import LDAMLoss, class_balanced_weights
from ssnas_core.losses.logit_adjusted import LogitAdjustment


def focal_alpha(kind: str, counts: np.ndarray) -> torch.Tensor | None:
    """Per-class focal weights: None, inverse frequency (mean 1) or class-balanced effective number."""
    if kind == "none":
        return None
    if kind == "inverse":
        w = 1.0 / counts.astype(np.float64)
        return torch.tensor(w / w.mean(), dtype=torch.float32)
    return class_balanced_weights(counts)


def make_criterion(cfg: FinetuneConfig, counts: np.ndarray, n_train: int, multilabel: bool
                   ) -> tuple[nn.Module, nn.Module]:
    """Return ``(criterion, adjust)``: the loss on (logits, labels) and the training-time logit transform.

    Args:
        cfg: fine-tune settings.
        counts: (C,) training images per class, or (L,) positives per label.
        n_train: training images (for multi-label positive rates).
        multilabel: per-label sigmoid forms.

    Raises:
        ConfigError: a class without training images, or LDAM on a multi-label task.
    """
    counts = np.asarray(counts)
    if (counts == 0).any():
        empty = np.flatnonzero(counts == 0).tolist()
        raise ConfigError(f"class(es) {empty} have no training images: the loss needs every class present; "
                          "lower --imbalance-factor or raise --limit-train")
    adjust: nn.Module = nn.Identity()
    gamma = 0.0 if cfg.loss == "ce" else cfg.gamma
    alpha = focal_alpha("cb" if cfg.loss == "cb-focal" else cfg.focal_alpha if cfg.loss != "ce" else "none", counts)
    if cfg.loss == "ldam-drw":
        if multilabel:
            raise ConfigError("--loss ldam-drw is for single-label tasks; use focal-la on multi-label data")
        return LDAMLoss(counts), adjust
    if multilabel:
        criterion: nn.Module = SigmoidFocalLoss(gamma, None if alpha is None else alpha / (1 + alpha))
        prior = torch.tensor(counts / n_train)
    else:
        criterion = FocalLoss(gamma, alpha)
        prior = torch.tensor(counts / counts.sum())
    if cfg.loss == "focal-la":
        adjust = LogitAdjustment(prior, cfg.tau, multilabel=multilabel)
    return criterion, adjust
