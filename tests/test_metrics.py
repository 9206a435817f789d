"""Metrics: parity with medmnist.Evaluator and scikit-learn; imbalance-aware groups."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

from ssnas_core.evaluation.metrics import (
    average_precision,
    binary_auc,
    classification_metrics,
    medmnist_acc,
    medmnist_auc,
    shot_groups,
)

TASKS = {
    "pneumoniamnist": ("binary-class", 2),
    "dermamnist": ("multi-class", 7),
    "chestmnist": ("multi-label, binary-class", 14),
}


def _fake(task: str, n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if task.startswith("multi-label"):
        y = (rng.random((n, k)) < 0.3).astype(np.uint8)
        score = np.clip(y * 0.3 + rng.random((n, k)) * 0.7, 0, 1)
        return y, score
    y = rng.integers(0, k, size=(n, 1)).astype(np.uint8)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y[:, 0]]
    score = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, np.round(score, 2)  # rounding makes ties, which AUC must handle like scikit-learn


@pytest.mark.parametrize("flag", sorted(TASKS))
def test_acc_and_auc_equal_medmnist_evaluator(flag, tmp_path) -> None:
    from medmnist import Evaluator

    task, k = TASKS[flag]
    y, score = _fake(task, 300, k, np.random.default_rng(0))
    empty = np.zeros((0, 28, 28), np.uint8)
    np.savez(tmp_path / f"{flag}.npz", test_labels=y, test_images=empty, train_labels=y[:0], val_labels=y[:0])
    expected = Evaluator(flag, "test", root=str(tmp_path)).evaluate(score)
    assert medmnist_auc(y, score, task) == pytest.approx(expected.AUC, abs=1e-12)
    assert medmnist_acc(y, score, task) == pytest.approx(expected.ACC, abs=1e-12)


def test_auc_and_ap_equal_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)
    assert binary_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert np.isnan(binary_auc(np.ones(5), np.arange(5.0)))


def test_balanced_accuracy_macro_f1_and_per_class_error() -> None:
    rng = np.random.default_rng(2)
    y, score = _fake("multi-class", 400, 5, rng)
    m = classification_metrics(y, score, "multi-class", train_counts=np.array([500, 150, 60, 30, 10]))
    pred = score.argmax(1)
    assert m["balanced_acc"] == pytest.approx(balanced_accuracy_score(y[:, 0], pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y[:, 0], pred, average="macro"))
    recall_4 = np.mean(pred[y[:, 0] == 4] == 4)
    assert m["error/4"] == pytest.approx(1 - recall_4)
    assert m["few_shot_acc"] == pytest.approx(recall_4)  # class 4 is the only one with < 20 images
    assert {"many_shot_acc", "medium_shot_acc", "head_acc", "middle_acc", "tail_acc"} <= set(m)


def test_shot_groups_follow_the_thresholds_and_terciles() -> None:
    g = shot_groups(np.array([3494, 349]))
    assert list(g["many"]) == [0, 1] and list(g["head"]) == [0] and list(g["tail"]) == [1]
    assert len(g["middle"]) == 0 and len(g["few"]) == 0
    g = shot_groups(np.array([5, 200, 50, 19, 101, 20]))
    assert sorted(g["many"]) == [1, 4] and sorted(g["medium"]) == [2, 5] and sorted(g["few"]) == [0, 3]
    assert sorted(g["head"]) == [1, 4] and sorted(g["tail"]) == [0, 3]


def test_multilabel_metrics_have_per_label_auc_and_ap() -> None:
    y, score = _fake("multi-label, binary-class", 200, 4, np.random.default_rng(3))
    m = classification_metrics(y, score, "multi-label, binary-class")
    assert m["auc/2"] == pytest.approx(roc_auc_score(y[:, 2], score[:, 2]))
    assert m["ap/1"] == pytest.approx(average_precision_score(y[:, 1], score[:, 1]))
    assert "balanced_acc" not in m
