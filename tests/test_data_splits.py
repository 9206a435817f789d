"""The stratified bi-level split of the search set."""

from __future__ import annotations

import numpy as np
import pytest

from ssnas_core.data import bilevel_split
from ssnas_core.errors import ConfigError, DatasetError


def test_stratified_disjoint_and_complete() -> None:
    labels = np.repeat(np.arange(4), [100, 30, 7, 2])
    labels = labels[np.random.default_rng(0).permutation(len(labels))]
    w_idx, a_idx = bilevel_split(labels, seed=0)
    assert np.intersect1d(w_idx, a_idx).size == 0
    assert np.array_equal(np.sort(np.concatenate([w_idx, a_idx])), np.arange(len(labels)))
    assert np.array_equal(w_idx, np.sort(w_idx)) and w_idx.dtype == np.int64
    for half in (w_idx, a_idx):
        counts = np.bincount(labels[half], minlength=4)
        assert np.all(counts >= 1), "every class appears in both halves"
    assert np.bincount(labels[w_idx]).tolist() == [50, 15, 4, 1]


def test_deterministic_by_seed() -> None:
    labels = np.arange(200) % 3
    first = bilevel_split(labels, seed=5)
    again = bilevel_split(labels, seed=5)
    other = bilevel_split(labels, seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_fraction_and_column_labels() -> None:
    labels = (np.arange(100) % 2)[:, None]
    w_idx, a_idx = bilevel_split(labels, seed=0, fraction=0.8)
    assert len(w_idx) == 80 and len(a_idx) == 20
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        bilevel_split(labels, seed=0, fraction=1.0)


def test_class_with_one_image_fails() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2])
    with pytest.raises(DatasetError, match="class 1 has 1 image"):
        bilevel_split(labels, seed=0)


def test_multilabel_random_split() -> None:
    labels = np.random.default_rng(0).integers(0, 2, (50, 5))
    w_idx, a_idx = bilevel_split(labels, seed=0)
    assert len(w_idx) == 25 and np.intersect1d(w_idx, a_idx).size == 0
