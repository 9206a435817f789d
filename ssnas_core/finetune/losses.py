"""The fine-tune criterion for each ``--loss``: CE / focal (each + logit adjustment), class-balanced focal, LDAM-DRW."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ssnas_core.config import FinetuneConfig
from ssnas_core.errors import ConfigError
from ssnas_core.losses.focal import ClassBalancedSigmoidFocalLoss, FocalLoss, SigmoidFocalLoss
from ssnas_core.losses.ldam import HEAD_ATTRS, LDAM_SCALE, LDAMLoss, class_balanced_weights, classifier, use_normed_head
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

    ``ce-la`` and ``focal-la`` train on ``f(x) + tau * log prior`` (``--tau``; per-label log-odds and
    ``--finetune.tau-multilabel`` on multi-label tasks). ``ldam-drw`` expects the normalised head that
    ``prepare_head`` puts on the model.

    Args:
        cfg: fine-tune settings.
        counts: (C,) training images per class, or (L,) positives per label.
        n_train: training images (for multi-label positive rates).
        multilabel: per-label sigmoid forms.

    Raises:
        ConfigError: a class without training images, or a single-label loss on a multi-label task.
    """
    counts = np.asarray(counts)
    if (counts == 0).any():
        empty = np.flatnonzero(counts == 0).tolist()
        raise ConfigError(f"class(es) {empty} have no training images: the loss needs every class present; "
                          "lower --imbalance-factor or raise --limit-train")
    adjust: nn.Module = nn.Identity()
    if multilabel and cfg.loss in ("ldam-drw", "cb-focal", "cb-focal-softmax"):
        raise ConfigError(f"--loss {cfg.loss} is for single-label tasks; use focal-la or ce-la on multi-label data")
    if cfg.loss == "ldam-drw":
        return LDAMLoss(counts), adjust
    if cfg.loss == "cb-focal":
        return ClassBalancedSigmoidFocalLoss(class_balanced_weights(counts), cfg.gamma), adjust
    gamma = 0.0 if cfg.loss in ("ce", "ce-la") else cfg.gamma
    kind = "cb" if cfg.loss == "cb-focal-softmax" else "none" if cfg.loss in ("ce", "ce-la") else cfg.focal_alpha
    alpha = focal_alpha(kind, counts)
    if multilabel:
        criterion: nn.Module = SigmoidFocalLoss(gamma, None if alpha is None else alpha / (1 + alpha))
    else:
        criterion = FocalLoss(gamma, alpha)
    if cfg.loss in ("ce-la", "focal-la"):
        adjust = LogitAdjustment(torch.tensor(class_prior(counts, n_train, multilabel)),
                                 cfg.tau_multilabel if multilabel else cfg.tau, multilabel=multilabel)
    return criterion, adjust


def class_prior(counts: np.ndarray, n_train: int, multilabel: bool) -> np.ndarray:
    """Training class frequencies (summing to 1), or per-label positive rates for multi-label tasks."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts / n_train if multilabel else counts / counts.sum()


def prepare_head(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """``model`` with the classifier its loss needs: a normalised (cosine) head for ldam-drw; for cb-focal (one
    sigmoid per class) the head's bias starts at ``-log(C - 1)``, each class's prior probability 1/C as in the
    reference (richardaecn/class-balanced-loss, ``src/model_base.py``, ``_fully_connected`` for the sigmoid and
    focal loss types; Cui et al. section 5: pi = 0.1 on CIFAR-10), so the first steps are not spent pushing C - 1
    sigmoids of every image down from 0.5. Otherwise ``model`` is unchanged."""
    if cfg.loss == "ldam-drw":
        return use_normed_head(model, LDAM_SCALE)
    if cfg.loss == "cb-focal":
        try:
            head = classifier(model)[1]
        except TypeError:
            head = None
        if not isinstance(head, nn.Linear) or head.bias is None:
            raise ConfigError(f"--loss cb-focal needs a linear classifier with a bias ({' or '.join(HEAD_ATTRS)}); "
                              f"{type(model).__name__} has none")
        with torch.no_grad():
            head.bias.fill_(-float(np.log(max(head.out_features - 1, 1))))
    return model
