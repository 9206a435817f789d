"""Long-tail subsampling and stratified limits (RELIABILITY.md section 6, test 14)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssnas_core.data import limit_indices, longtail_counts, longtail_dataset, longtail_indices, make_synthetic
from ssnas_core.errors import ConfigError


def _labels(counts: list[int], seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(len(counts)), counts)
    return labels[np.random.default_rng(seed).permutation(len(labels))]


@st.composite
def feasible(draw: st.DrawFn) -> tuple[list[int], float]:
    """Class counts (in shuffled class order) for which the long tail of factor rho exists."""
    n_classes = draw(st.integers(2, 6))
    n_max = draw(st.integers(2, 400))
    rho = draw(st.floats(1.0, float(n_max), allow_nan=False))
    targets = [math.floor(n_max * rho ** (-r / (n_classes - 1)) * (1 + 1e-12)) for r in range(n_classes)]
    slack = draw(st.lists(st.integers(0, 50), min_size=n_classes, max_size=n_classes))
    counts = [n_max] + [min(n_max, t + s) for t, s in zip(targets[1:], slack[1:], strict=True)]
    order = draw(st.permutations(range(n_classes)))
    return [counts[i] for i in order], rho


@settings(max_examples=60, deadline=None)
@given(feasible(), st.integers(0, 2**31 - 1))
def test_longtail_properties(case: tuple[list[int], float], seed: int) -> None:
    counts, rho = case
    targets = longtail_counts(counts, rho)
    ranked = targets[np.argsort(-np.asarray(counts), kind="stable")]
    assert np.all(np.diff(ranked) <= 0), "counts must not increase with rank"
    n_max, n_min = int(targets.max()), int(targets.min())
    assert n_max == max(counts)
    if rho > 1:
        assert n_min <= n_max / rho * (1 + 1e-9) and n_max / rho < n_min + 1, "max/min must equal rho up to floor"
    assert np.all(targets >= 1) and np.all(targets <= np.asarray(counts))

    labels = _labels(counts)
    idx = longtail_indices(labels, rho, seed)
    assert np.array_equal(idx, np.unique(idx)) and idx.min() >= 0 and idx.max() < len(labels)
    assert np.bincount(labels[idx], minlength=len(counts)).tolist() == targets.tolist()
    assert np.array_equal(idx, longtail_indices(labels, rho, seed))
    if np.any((targets > 0) & (targets < np.asarray(counts))):
        others = [longtail_indices(labels, rho, seed + k) for k in range(1, 21)]
        assert any(not np.array_equal(idx, o) for o in others), "another seed must give another subset"


def test_pneumonia_like_counts() -> None:
    counts = [1214, 3494]
    assert longtail_counts(counts, 10).tolist() == [349, 3494]
    labels = _labels(counts)
    idx = longtail_indices(labels, 10, seed=0)
    assert np.bincount(labels[idx]).tolist() == [349, 3494]
    assert np.all(np.isin(np.flatnonzero(labels == 1), idx)), "the largest class stays untouched"


def test_factor_one_keeps_everything() -> None:
    labels = _labels([5, 30, 2])
    assert np.array_equal(longtail_indices(labels, 1.0, seed=3), np.arange(37))
    assert longtail_counts([5, 30, 2], 1).tolist() == [5, 30, 2]


def test_ranks_by_count_not_index() -> None:
    assert longtail_counts([10, 100, 50], 10).tolist() == [10, 100, 31]


@pytest.mark.parametrize("rho", [0.1, 0.999, -2.0, float("nan"), float("inf"), "ten"])
def test_invalid_factor_names_convention(rho: float) -> None:
    with pytest.raises(ConfigError, match="largest/smallest class count, e.g. 10; not 0.1") as info:
        longtail_counts([100, 50], rho)
    assert isinstance(info.value, ValueError)


def test_target_rounding_to_zero() -> None:
    with pytest.raises(ConfigError, match=r"class 1 \(b\) at rank 1 of 2 would keep .* = 0 images"):
        longtail_counts([9, 3], 10, class_names=["a", "b"])


def test_target_beyond_available() -> None:
    with pytest.raises(ConfigError, match="class 0 at rank 1 of 2 wants 1747 images but only 1214 are available"):
        longtail_counts([1214, 3494], 2)


def test_empty_class_fails() -> None:
    labels = np.array([0, 0, 0, 2, 2, 2])
    with pytest.raises(ConfigError, match="class\\(es\\) 1 have no training images"):
        longtail_indices(labels, 1.5, seed=0)


def test_multilabel_refused() -> None:
    labels = np.ones((10, 3), dtype=np.int64)
    with pytest.raises(ConfigError, match="only applies to single-label tasks"):
        longtail_indices(labels, 10, seed=0)
    ds = make_synthetic(n_train=16, n_val=4, n_test=4, n_classes=3, multilabel=True)
    with pytest.raises(ConfigError, match="only applies to single-label tasks"):
        longtail_dataset(ds, 10, seed=0)


def test_longtail_dataset_touches_train_only() -> None:
    ds = make_synthetic(n_train=200, n_val=20, n_test=20, n_classes=4)
    lt = longtail_dataset(ds, 5, seed=1)
    assert lt.val is ds.val and lt.test is ds.test
    counts = lt.class_counts()
    assert counts.max() == 50 and counts.min() == 10
    assert lt.class_counts("val").tolist() == ds.class_counts("val").tolist()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=6), st.data())
def test_limit_indices_stratified(counts: list[int], data: st.DataObject) -> None:
    labels = _labels(counts, seed=1)
    n = data.draw(st.integers(len(counts), len(labels)))
    idx = limit_indices(labels, n, seed=0)
    assert len(idx) == n and np.array_equal(idx, np.unique(idx))
    kept = np.bincount(labels[idx], minlength=len(counts))
    assert np.all(kept >= 1) and np.all(kept <= counts)
    quota = n * np.asarray(counts) / len(labels)
    assert np.all(np.abs(kept - quota) < 1 + 1e-9) or np.any(quota < 1)
    assert np.array_equal(idx, limit_indices(labels, n, seed=0))


def test_limit_indices_errors() -> None:
    labels = _labels([3, 4, 5])
    with pytest.raises(ConfigError, match="between 3"):
        limit_indices(labels, 2, seed=0)
    with pytest.raises(ConfigError, match="and 12"):
        limit_indices(labels, 13, seed=0)
    assert len(limit_indices(np.ones((10, 4), np.int64), 5, seed=0)) == 5


def test_a_class_without_training_images_is_named_not_counted_away() -> None:
    """The last class empty in train used to read as 'needs at least 2 classes, found 1'."""
    labels = np.array([0] * 30 + [1] * 10)
    with pytest.raises(ConfigError, match="class\\(es\\) effusion have no training images"):
        longtail_indices(labels, 10, seed=0, n_classes=3, class_names=("normal", "pneumonia", "effusion"))
