"""Long-tailed and size-limited training sets, by exponential subsampling per class.

The imbalance factor is rho = n_max / n_min >= 1 (largest over smallest class
count, "an imbalance factor of 10"), not LDAM-DRW's ``imb_factor = 0.01``
(min/max). Classes are ranked by their current counts, largest first, ties by
class index; the class of rank r of C keeps

    n_r = floor(n_max * rho ** (-r / (C - 1)))

images, where n_max is the largest class count, so rank 0 keeps all its
images and the realised max/min equals rho up to the floor. Only the training
split is subsampled; val and test stay untouched. Randomness comes from a
local ``np.random.Generator`` seeded by the caller, never the global seed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from ssnas_core.data.dataset import ImageDataset
from ssnas_core.errors import ConfigError

CONVENTION = "the imbalance factor is the largest/smallest class count, e.g. 10; not 0.1"


def apportion(n: int, weights: np.ndarray) -> np.ndarray:
    """Split ``n`` items over classes in proportion to ``weights`` (largest remainder).

    Every class gets at least one item when ``n >= len(weights)``; no class gets more
    than ``ceil(n * w / sum(w))`` (or 1).

    Args:
        n: total number of items.
        weights: shape (C,), positive.

    Returns:
        int64 array of shape (C,) summing to ``n``.
    """
    quota = n * weights / weights.sum()
    counts = np.floor(quota).astype(np.int64)
    if n >= len(weights):
        counts = np.maximum(counts, 1)
    while counts.sum() < n:  # give to the class furthest below its quota
        counts[int(np.argmax(quota - counts))] += 1
    while counts.sum() > n:  # only after the minimum of 1: take from the class furthest above its quota
        excess = np.where(counts > 1, counts - quota, -np.inf)
        counts[int(np.argmax(excess))] -= 1
    return np.asarray(counts, dtype=np.int64)


def _check_factor(imbalance_factor: float) -> float:
    try:
        rho = float(imbalance_factor)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"imbalance factor {imbalance_factor!r} is not a number; {CONVENTION}") from exc
    if not math.isfinite(rho) or rho < 1:
        raise ConfigError(
            f"imbalance factor {imbalance_factor!r} is invalid: expected a finite number >= 1 ({CONVENTION}); "
            "use 1 to keep the training set as it is"
        )
    return rho


def _class_name(k: int, class_names: Sequence[str] | None) -> str:
    return f"class {k} ({class_names[k]})" if class_names is not None and k < len(class_names) else f"class {k}"


def longtail_counts(
    counts: Sequence[int] | np.ndarray, imbalance_factor: float, class_names: Sequence[str] | None = None
) -> np.ndarray:
    """Target images per class for an exponential long tail.

    Args:
        counts: images available per class, shape (C,).
        imbalance_factor: rho = n_max / n_min >= 1; 1 keeps every count as it is.
        class_names: optional names, only used in error messages.

    Returns:
        int64 array of shape (C,): images to keep per class (in class order), non-increasing
        by rank, with ``floor(n_max / rho) == min``.

    Raises:
        ConfigError: rho < 1, NaN or infinite; fewer than 2 classes; a class whose target
            rounds to 0; a class whose target exceeds the images it has.
    """
    rho = _check_factor(imbalance_factor)
    available = np.asarray(counts)
    if available.ndim != 1 or len(available) == 0 or not np.issubdtype(available.dtype, np.integer):
        raise ConfigError(f"class counts {counts!r}: expected a 1-D sequence of integers, one per class")
    if np.any(available < 0):
        raise ConfigError(f"class counts {available.tolist()}: expected non-negative counts")
    available = available.astype(np.int64)
    if rho == 1.0:
        return available.copy()
    n_classes = len(available)
    if n_classes < 2:
        raise ConfigError(f"imbalance factor {rho:g} needs at least 2 classes, found {n_classes}; use 1")
    empty = [str(class_names[k]) if class_names is not None and k < len(class_names) else str(k)
             for k in np.flatnonzero(available == 0).tolist()]
    if empty:
        raise ConfigError(f"class(es) {', '.join(empty)} have no training images before long-tailing: every "
                          "class needs images; fix the dataset or use --imbalance-factor 1")
    order = np.argsort(-available, kind="stable")  # order[r] = class of rank r
    n_max = int(available[order[0]])
    targets = np.zeros(n_classes, dtype=np.int64)
    for r, k in enumerate(order.tolist()):
        exponent = r / (n_classes - 1)
        value = n_max * rho ** (-exponent)
        target = math.floor(value * (1 + 1e-12))  # absorb float error of exact quotients
        if target < 1:
            raise ConfigError(
                f"imbalance factor {rho:g}: {_class_name(k, class_names)} at rank {r} of {n_classes} would keep "
                f"floor({n_max} * {rho:g}^-{exponent:.3g}) = 0 images; use a factor of at most {n_max} "
                f"({CONVENTION})"
            )
        if target > available[k]:
            needed = (n_max / available[k]) ** (1 / exponent) if available[k] > 0 else math.inf
            raise ConfigError(
                f"imbalance factor {rho:g}: {_class_name(k, class_names)} at rank {r} of {n_classes} wants "
                f"{target} images but only {available[k]} are available; use a factor of at least "
                f"{needed:.4g}, or 1 to keep the training set as it is"
            )
        targets[k] = target
    return targets


def _single_labels(labels: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 2:
        raise ConfigError(
            f"{what}: found multi-label labels of shape {labels.shape}; class-wise subsampling only applies "
            "to single-label tasks, so use an imbalance factor of 1 for multi-label datasets"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ConfigError(f"{what}: expected non-negative integer labels of shape (N,), found {labels.shape}")
    return labels.astype(np.int64)


def longtail_indices(
    labels: np.ndarray,
    imbalance_factor: float,
    seed: int,
    n_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Indices of a long-tailed subset of a single-label training set.

    Args:
        labels: int class labels, shape (N,) or (N, 1).
        imbalance_factor: rho = n_max / n_min >= 1; 1 returns every index.
        seed: seed of the local ``np.random.Generator`` that picks the images kept.
        n_classes: number of classes (default: ``max(labels) + 1``); a class with no images
            fails unless rho is 1.
        class_names: optional names, only used in error messages.

    Returns:
        Sorted unique int64 indices into ``labels``, shape (M,), with per-class counts
        ``longtail_counts(bincount(labels), rho)``.

    Raises:
        ConfigError: multi-label labels, or any error of ``longtail_counts``.
    """
    flat = _single_labels(labels, "long-tail subsampling")
    rho = _check_factor(imbalance_factor)
    if rho == 1.0:
        return np.arange(len(flat), dtype=np.int64)
    minlength = n_classes if n_classes is not None else int(flat.max(initial=-1)) + 1
    targets = longtail_counts(np.bincount(flat, minlength=minlength), rho, class_names)
    rng = np.random.default_rng(seed)
    kept = [rng.choice(np.flatnonzero(flat == k), size=int(t), replace=False) for k, t in enumerate(targets)]
    return np.sort(np.concatenate(kept)).astype(np.int64)


def longtail_dataset(dataset: ImageDataset, imbalance_factor: float, seed: int) -> ImageDataset:
    """The dataset with its training split long-tailed; val and test are the same objects.

    Raises:
        ConfigError: for multi-label datasets, or any error of ``longtail_counts``.
    """
    if dataset.is_multilabel:
        raise ConfigError(
            f"dataset {dataset.name} is multi-label ({dataset.task}); long-tail subsampling only applies to "
            "single-label tasks, so use an imbalance factor of 1"
        )
    indices = longtail_indices(
        dataset.train.labels.numpy(), imbalance_factor, seed, dataset.n_classes, dataset.class_names
    )
    return dataclasses.replace(dataset, train=dataset.train.subset(indices))


def limit_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a stratified subset of ``n`` images keeping the class proportions.

    Every class present keeps at least one image. Multi-label labels (N, L) get a plain
    random subset.

    Args:
        labels: int labels, shape (N,), (N, 1) or (N, L).
        n: images to keep, ``#classes present <= n <= N``.
        seed: seed of the local ``np.random.Generator``.

    Returns:
        Sorted unique int64 indices, shape (n,).

    Raises:
        ConfigError: ``n`` larger than N or smaller than the number of classes present.
    """
    arr = np.asarray(labels)
    rng = np.random.default_rng(seed)
    total = len(arr)
    if arr.ndim == 2 and arr.shape[1] > 1:
        if not 1 <= n <= total:
            raise ConfigError(f"limit of {n} images: expected 1 <= n <= {total}, the images available")
        return np.sort(rng.choice(total, size=n, replace=False)).astype(np.int64)
    flat = _single_labels(arr, "stratified limit")
    present = np.unique(flat)
    if n > total or n < len(present):
        raise ConfigError(
            f"limit of {n} images: expected between {len(present)} (one per class present) and {total} "
            "(the images available); choose n in that range, or 0 for all"
        )
    if n == total:
        return np.arange(total, dtype=np.int64)
    counts = np.array([np.count_nonzero(flat == k) for k in present])
    quotas = apportion(n, counts.astype(np.float64))
    kept = [
        rng.choice(np.flatnonzero(flat == k), size=int(q), replace=False) for k, q in zip(present, quotas, strict=True)
    ]
    return np.sort(np.concatenate(kept)).astype(np.int64)
