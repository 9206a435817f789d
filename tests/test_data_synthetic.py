"""The synthetic dataset: deterministic, shaped like MedMNIST, and learnable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssnas_core.data import MULTILABEL_TASK, make_synthetic
from ssnas_core.errors import ConfigError


def test_deterministic_by_seed() -> None:
    a, b, c = make_synthetic(seed=3), make_synthetic(seed=3), make_synthetic(seed=4)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)


@pytest.mark.parametrize("n_classes,task", [(2, "binary-class"), (5, "multi-class")])
def test_defaults_and_shapes(n_classes: int, task: str) -> None:
    ds = make_synthetic(n_classes=n_classes, channels=3, size=16)
    assert ds.task == task and ds.n_classes == n_classes and ds.n_channels == 3 and ds.size == 16
    assert ds.train.images.shape == (256, 3, 16, 16) and ds.train.images.dtype == torch.uint8
    assert ds.val is not None and len(ds.val) == 64 and len(ds.test) == 64
    assert ds.train.labels.dtype == torch.int64 and ds.train.labels.shape == (256,)


def test_class_weights_give_exact_counts() -> None:
    ds = make_synthetic(n_train=110, n_classes=2, class_weights=[10, 1])
    assert ds.class_counts().tolist() == [100, 10]
    tiny = make_synthetic(n_train=3, n_val=0, n_test=3, n_classes=3, class_weights=[100, 1, 1])
    assert tiny.class_counts().tolist() == [1, 1, 1] and tiny.val is None


def test_multilabel() -> None:
    ds = make_synthetic(n_classes=4, multilabel=True)
    assert ds.task == MULTILABEL_TASK and ds.is_multilabel
    assert ds.train.labels.shape == (256, 4) and set(ds.train.labels.unique().tolist()) <= {0, 1}
    assert ds.class_counts().shape == (4,)


def test_learnable_by_nearest_class_mean() -> None:
    ds = make_synthetic(n_classes=4, seed=0)
    x_train = ds.train.images.flatten(1).float().numpy()
    y_train = ds.train.labels.numpy()
    means = np.stack([x_train[y_train == k].mean(0) for k in range(4)])
    x_test = ds.test.images.flatten(1).float().numpy()
    pred = np.argmin(((x_test[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == ds.test.labels.numpy()).mean() > 0.9


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="channels 1 or 3"):
        make_synthetic(channels=2)
    with pytest.raises(ConfigError, match="class_weights"):
        make_synthetic(class_weights=[1.0, -1.0])
