"""Post-hoc logit adjustment (Menon et al., ICLR 2021, section 4.1): ``f(x) - tau * log(prior)`` at prediction.

The trained network is left as it is; only its predictions move. With ``tau = 1`` and a
calibrated softmax this is the balanced-error Bayes rule. ``--tau-posthoc auto`` fits tau on
the validation split: every tau of ``GRID`` (-2 to 2, step 0.05; negative values undo an
over-correction, e.g. of focal loss trained on adjusted logits) is scored with the val
metric, and the best wins, the smallest ``|tau|`` on ties. A ranking metric (AUC, AP, mAP)
cannot choose: an offset per class or label does not change how one class's scores rank
(for two classes, nor how the images rank at all), so every tau would tie. ``fit_metric``
scores those fits with balanced accuracy instead (single-label), or mean per-label
accuracy (multi-label).

Multi-label tasks use the per-label log-odds ``log(pi / (1 - pi))``. A rare label's log-odds
are large (-6.2 at a prior of 0.002), so a tau that maximises a balanced metric would predict
it present for most images; ``fit_tau`` therefore considers only taus that keep every label's
val accuracy at least that of predicting the label absent everywhere; when none does, tau is 0.
"""

from __future__ import annotations

import numpy as np
import torch

from ssnas_core.evaluation.metrics import MULTILABEL, classification_metrics

GRID = np.round(np.arange(-40, 41) * 0.05, 2)


def prior_term(prior: np.ndarray, multilabel: bool) -> np.ndarray:
    """``log(prior)``, or the per-label log-odds ``log(pi / (1 - pi))``: what tau multiplies.

    Raises:
        ValueError: a prior of 0 (or 1 for a label), whose log is infinite.
    """
    prior = np.asarray(prior, dtype=np.float64)
    if (prior <= 0).any() or (multilabel and (prior >= 1).any()):
        raise ValueError(f"post-hoc adjustment needs every prior in (0, 1), got {prior.tolist()}")
    return np.log(prior / (1 - prior)) if multilabel else np.log(prior)


def scores(logits: np.ndarray, offset: np.ndarray, multilabel: bool) -> np.ndarray:
    """Probabilities of ``logits - offset``: per-label sigmoid or softmax."""
    z = torch.as_tensor(logits, dtype=torch.float64) - torch.as_tensor(offset, dtype=torch.float64)
    return (torch.sigmoid(z) if multilabel else torch.softmax(z, dim=1)).numpy()


def keeps_label_accuracy(y_true: np.ndarray, y_score: np.ndarray) -> bool:
    """Every label's accuracy (threshold 0.5) is at least that of predicting the label absent everywhere."""
    y = np.asarray(y_true).astype(bool)
    acc = ((y_score > 0.5) == y).mean(0)
    return bool((acc >= 1.0 - y.mean(0) - 1e-12).all())


RANKING = ("auc", "ap", "map")  # and the per-label forms auc/<i>, ap/<i>: blind to a per-class offset


def fit_metric(metric: str, task: str) -> str:
    """The metric a tau fit is scored with: ``metric``, unless it only ranks (then a threshold metric)."""
    if metric.split("/")[0] in RANKING:
        return "acc" if task == MULTILABEL else "balanced_acc"
    return metric


def fit_tau(y_true: np.ndarray, logits: np.ndarray, term: np.ndarray, task: str, metric: str,
            train_counts: np.ndarray | None = None, grid: np.ndarray = GRID) -> tuple[float, float]:
    """The tau of ``grid`` whose adjusted val predictions score best on ``fit_metric(metric)``; returns ``(tau,
    value)``, the value on that metric."""
    multilabel = task == MULTILABEL
    metric = fit_metric(metric, task)
    best: tuple[float, float] | None = None
    for tau in sorted({0.0, *(float(t) for t in grid)}, key=lambda t: (abs(t), t)):
        y_score = scores(logits, tau * term, multilabel)
        if multilabel and not keeps_label_accuracy(y_true, y_score):
            continue
        value = classification_metrics(y_true, y_score, task, train_counts)[metric]
        value = value if np.isfinite(value) else -np.inf
        if best is None or value > best[1]:
            best = (tau, float(value))
    if best is None:  # no tau keeps every label's accuracy: leave the predictions as they are
        return 0.0, float(classification_metrics(y_true, scores(logits, 0 * term, multilabel), task,
                                                 train_counts)[metric])
    return best
