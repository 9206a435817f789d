"""Metrics on (y_true, y_score), in NumPy only (the engines run without scikit-learn).

``medmnist_auc`` / ``medmnist_acc`` follow MedMNIST v2's ``Evaluator``
(medmnist/evaluator.py ``getAUC``/``getACC``) for each task type:

* binary-class: AUC of the last column's score; ACC of ``score[:, -1] > 0.5``;
* multi-class / ordinal-regression: mean one-vs-rest AUC over classes; ACC of the argmax;
* multi-label: mean per-label AUC; mean per-label ACC at threshold 0.5.

AUC is the Mann-Whitney statistic with average ranks for ties (identical to
scikit-learn's trapezoidal ``roc_auc_score``); average precision is
scikit-learn's step-wise definition. Tests pin both to scikit-learn and to
``medmnist.Evaluator``.
"""

from __future__ import annotations

import numpy as np

MULTILABEL = "multi-label, binary-class"


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_x)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of one binary problem; NaN when only one class is present."""
    y = np.asarray(y_true).astype(bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _ranks(np.asarray(score, dtype=np.float64).ravel())
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the step-wise precision-recall curve); NaN without positives."""
    y = np.asarray(y_true).astype(bool).ravel()
    if not y.any():
        return float("nan")
    s = np.asarray(score, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    ends = np.concatenate([np.flatnonzero(np.diff(s)), [len(s) - 1]])  # last index of each distinct score
    tp = np.cumsum(y)[ends]
    fp = (ends + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def medmnist_auc(y_true: np.ndarray, y_score: np.ndarray, task: str) -> float:
    """AUC as MedMNIST's Evaluator defines it for ``task``."""
    y_true, y_score = np.asarray(y_true).squeeze(), np.asarray(y_score).squeeze()
    if task == MULTILABEL:
        return float(np.mean([binary_auc(y_true[:, i], y_score[:, i]) for i in range(y_score.shape[1])]))
    if task == "binary-class":
        return binary_auc(y_true, y_score[:, -1] if y_score.ndim == 2 else y_score)
    return float(np.mean([binary_auc(y_true == i, y_score[:, i]) for i in range(y_score.shape[1])]))


def medmnist_acc(y_true: np.ndarray, y_score: np.ndarray, task: str, threshold: float = 0.5) -> float:
    """ACC as MedMNIST's Evaluator defines it for ``task``."""
    y_true, y_score = np.asarray(y_true).squeeze(), np.asarray(y_score).squeeze()
    if task == MULTILABEL:
        return float(np.mean((y_score > threshold) == y_true.astype(bool)))
    if task == "binary-class":
        score = y_score[:, -1] if y_score.ndim == 2 else y_score
        return float(np.mean((score > threshold) == y_true.astype(bool)))
    return float(np.mean(np.argmax(y_score, axis=-1) == y_true))


def predictions(y_score: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """Predicted class per image (single-label), as MedMNIST's ACC counts it; 0/1 per label (multi-label)."""
    if task == MULTILABEL:
        return (y_score > threshold).astype(np.int64)
    if task == "binary-class" and y_score.ndim == 2:
        return (y_score[:, -1] > threshold).astype(np.int64)
    return np.argmax(y_score, axis=-1)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts; rows are true classes, columns predictions."""
    return np.bincount(n_classes * np.asarray(y_true) + np.asarray(y_pred),
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def shot_groups(train_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Class groups by training-set size.

    ``many``/``medium``/``few``: more than 100 / 20 to 100 / fewer than 20 training images
    (Liu et al., OLTR, 2019). ``head``/``middle``/``tail``: classes ranked by count split
    in terciles (the largest and smallest ceil(C/3) classes; the rest is the middle),
    informative also at small imbalance factors.
    """
    counts = np.asarray(train_counts)
    order = np.argsort(-counts, kind="mergesort")
    k = int(np.ceil(len(counts) / 3))
    return {
        "many": np.flatnonzero(counts > 100), "medium": np.flatnonzero((counts >= 20) & (counts <= 100)),
        "few": np.flatnonzero(counts < 20),
        "head": order[:k], "middle": order[k:len(counts) - k], "tail": order[len(counts) - k:] if k else order[:0],
    }


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray, task: str,
                           train_counts: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of the fine-tune contract for one split.

    Args:
        y_true: (N,) class indices, or (N, L) 0/1 for multi-label.
        y_score: (N, C) class probabilities, or (N, L) per-label probabilities.
        task: MedMNIST task string.
        train_counts: (C,) training images per class, for the shot/tercile groups.

    Returns:
        ``acc``, ``auc``, ``error`` and, for single-label tasks, ``balanced_acc``, ``macro_f1``,
        ``error/<class index>``, ``<group>_shot_acc`` / ``<group>_acc``; for multi-label,
        ``auc/<label>``, ``ap/<label>`` and ``map``.
    """
    out = {"acc": medmnist_acc(y_true, y_score, task), "auc": medmnist_auc(y_true, y_score, task)}
    out["error"] = 1.0 - out["acc"]
    if task == MULTILABEL:
        for i in range(y_score.shape[1]):
            out[f"auc/{i}"] = binary_auc(y_true[:, i], y_score[:, i])
            out[f"ap/{i}"] = average_precision(y_true[:, i], y_score[:, i])
        out["map"] = float(np.nanmean([out[f"ap/{i}"] for i in range(y_score.shape[1])]))
        return out
    y_true = np.asarray(y_true).ravel()
    n_classes = y_score.shape[1] if y_score.ndim == 2 else 2
    cm = confusion_matrix(y_true, predictions(y_score, task), n_classes)
    support = cm.sum(1)
    recall = np.divide(np.diag(cm), support, out=np.full(n_classes, np.nan), where=support > 0)
    precision = np.divide(np.diag(cm), cm.sum(0), out=np.zeros(n_classes), where=cm.sum(0) > 0)
    f1 = np.divide(2 * precision * np.nan_to_num(recall), precision + np.nan_to_num(recall),
                   out=np.zeros(n_classes), where=(precision + np.nan_to_num(recall)) > 0)
    out["balanced_acc"] = float(np.nanmean(recall))
    out["macro_f1"] = float(np.mean(f1[support > 0]))
    for c in range(n_classes):
        out[f"error/{c}"] = float(1.0 - recall[c])
    if train_counts is not None:
        for name, members in shot_groups(train_counts).items():
            members = members[support[members] > 0]
            if len(members):
                key = f"{name}_shot_acc" if name in ("many", "medium", "few") else f"{name}_acc"
                out[key] = float(np.mean(recall[members]))
    return out
