"""Fine-tune outputs as files: per-class table, predictions, MedMNIST's standard result CSV, confusion matrix."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from ssnas_core.evaluation.metrics import MULTILABEL, confusion_matrix, predictions


def write_outputs(folder: Path, flag: str, size: int, split: str, y_true: np.ndarray, y_score: np.ndarray,
                  task: str, class_names: Sequence[str], train_counts: np.ndarray, metrics: dict[str, float],
                  run_id: str, plots: bool) -> list[Path]:
    """Write the test-set artifacts; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    # MedMNIST's standard evaluation file: {flag}{_size}_{split}_[AUC]x_[ACC]y@{run}.csv, rows "index,score...".
    size_flag = "" if size == 28 else f"_{size}"
    std = folder / f"{flag}{size_flag}_{split}_[AUC]{metrics['auc']:.3f}_[ACC]{metrics['acc']:.3f}@{run_id}.csv"
    with open(std, "w", newline="") as fh:
        w = csv.writer(fh)
        for i, row in enumerate(y_score):
            w.writerow([i, *[f"{v:.6g}" for v in row]])
    written.append(std)
    pred = predictions(y_score, task)
    preds = folder / "predictions.csv"
    with open(preds, "w", newline="") as fh:
        w = csv.writer(fh)
        labels = np.asarray(y_true).reshape(len(y_score), -1)
        w.writerow(["index", *[f"true_{i}" for i in range(labels.shape[1])],
                    *[f"pred_{i}" for i in range(np.asarray(pred).reshape(len(y_score), -1).shape[1])],
                    *[f"score_{k}" for k in range(y_score.shape[1])]])
        for i in range(len(y_score)):
            w.writerow([i, *labels[i].tolist(), *np.atleast_1d(pred[i]).tolist(),
                        *[f"{v:.6g}" for v in y_score[i]]])
    written.append(preds)
    table = folder / "per_class.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        if task == MULTILABEL:
            counts = _label_counts(y_true, pred)
            w.writerow(["label", "name", "train_positives", "auc", "average_precision", "tp", "fn", "fp", "tn"])
            for i, name in enumerate(class_names):
                w.writerow([i, name, int(train_counts[i]), metrics.get(f"auc/{i}"), metrics.get(f"ap/{i}"),
                            *counts[i].tolist()])
        else:
            w.writerow(["class", "name", "train_images", "test_images", "error"])
            support = np.bincount(np.asarray(y_true).ravel(), minlength=len(class_names))
            for i, name in enumerate(class_names):
                w.writerow([i, name, int(train_counts[i]), int(support[i]), metrics.get(f"error/{i}")])
    written.append(table)
    if plots and task == MULTILABEL:  # no confusion matrix for independent labels: what each label misses
        from ssnas_core import viz

        tp, fn, fp, tn = _label_counts(y_true, pred).T.astype(float)
        errors = np.stack([fn / np.maximum(tp + fn, 1), fp / np.maximum(fp + tn, 1)])
        written.append(viz.plot_per_class_error(["missed (1 - recall)", "false alarm (FPR)"], list(class_names),
                                                errors, f"{flag} {split}: error per label at threshold 0.5",
                                                folder / "per_class_error.png"))
    elif plots:
        from ssnas_core import viz

        cm = confusion_matrix(np.asarray(y_true).ravel(), pred, len(class_names))
        written.append(viz.plot_confusion_matrix(cm, class_names, f"{flag} {split} confusion matrix",
                                                 folder / "confusion_matrix.png"))
        errors = np.array([[metrics.get(f"error/{i}", np.nan) for i in range(len(class_names))]])
        written.append(viz.plot_per_class_error([run_id[:8]], list(class_names), errors,
                                                f"{flag} {split}: error per class", folder / "per_class_error.png"))
    return written


def _label_counts(y_true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(L, 4) per-label counts ``tp, fn, fp, tn`` of multi-label predictions."""
    y, p = np.asarray(y_true).astype(bool), np.asarray(pred).astype(bool)
    return np.stack([(y & p).sum(0), (y & ~p).sum(0), (~y & p).sum(0), (~y & ~p).sum(0)], 1)
