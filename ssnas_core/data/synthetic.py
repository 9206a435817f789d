"""A deterministic synthetic image dataset for tests and demos, and an npz writer.

Each class k owns a Gaussian blob at a class-specific position on a circle
around the image centre and a grating of class-specific orientation; each
image jitters the blob position and adds pixel noise. A small CNN separates
the classes easily, while the two augmented views of one image still differ.
Multi-label images superimpose the blobs of all their positive labels.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import torch

from ssnas_core.data.dataset import MULTILABEL_TASK, ImageDataset, Split
from ssnas_core.data.longtail import apportion
from ssnas_core.errors import ConfigError


def _render(labels: np.ndarray, size: int, channels: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Draw images for (N, L) 0/1 label indicators; returns uint8 (N, C, H, W)."""
    n = len(labels)
    coords = np.arange(size, dtype=np.float32)
    yy, xx = coords[:, None], coords[None, :]
    angles = 2 * math.pi * np.arange(n_classes) / n_classes
    radius, sigma = 0.25 * size, 0.12 * size
    img = np.zeros((n, size, size), dtype=np.float32)
    for k in range(n_classes):
        on = labels[:, k].astype(np.float32)[:, None, None]
        cy = size / 2 + radius * math.sin(angles[k]) + rng.normal(0, 0.06 * size, n)
        cx = size / 2 + radius * math.cos(angles[k]) + rng.normal(0, 0.06 * size, n)
        blob = np.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / (2 * sigma**2))
        theta = math.pi * k / n_classes
        grating = 0.5 + 0.5 * np.cos(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / (0.3 * size))
        img += on * blob * (0.6 + 0.4 * grating)
    img = np.clip(img, 0.0, 1.0)
    tint = 0.75 + 0.25 * np.cos(np.arange(channels)[None, :] + angles[None, :].T)  # (n_classes, C)
    per_image_tint = labels.astype(np.float32) @ tint / np.maximum(labels.sum(axis=1, keepdims=True), 1)
    out = 0.15 + 0.7 * img[:, None] * per_image_tint[:, :, None, None]
    out = out + rng.normal(0, 0.05, out.shape).astype(np.float32)
    return np.asarray(np.clip(np.round(out * 255), 0, 255), dtype=np.uint8)


def make_synthetic(
    n_train: int = 256,
    n_val: int = 64,
    n_test: int = 64,
    n_classes: int = 2,
    size: int = 28,
    channels: int = 1,
    class_weights: Sequence[float] | None = None,
    multilabel: bool = False,
    seed: int = 0,
) -> ImageDataset:
    """Make a small learnable dataset, identical for identical arguments.

    Args:
        n_train: training images.
        n_val: validation images; 0 gives ``val=None``.
        n_test: test images.
        n_classes: classes (labels, when ``multilabel``), at least 2.
        size: image side H = W in pixels, at least 8.
        channels: 1 (grayscale) or 3 (RGB).
        class_weights: relative class frequencies, shape (n_classes,); e.g. ``[10, 1]`` gives a
            long tail. For single-label tasks the counts per split follow them exactly up to
            rounding (at least one image per class when the split has room); for multi-label
            tasks they scale each label's positive rate. Default: uniform.
        multilabel: make a ``"multi-label, binary-class"`` task with (N, n_classes) 0/1 labels.
        seed: seed of the local ``np.random.Generator``.

    Returns:
        The dataset: uint8 images (N, channels, size, size); task "binary-class" for 2
        classes, "multi-class" otherwise, or "multi-label, binary-class".

    Raises:
        ConfigError: on an out-of-range argument.
    """
    if n_classes < 2 or channels not in (1, 3) or size < 8 or min(n_train, n_test) < 1 or n_val < 0:
        raise ConfigError(
            f"make_synthetic: found n_classes={n_classes}, channels={channels}, size={size}, "
            f"n_train={n_train}, n_val={n_val}, n_test={n_test}; expected n_classes >= 2, channels 1 or 3, "
            "size >= 8, n_train and n_test >= 1, n_val >= 0"
        )
    weights = np.ones(n_classes) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    if weights.shape != (n_classes,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ConfigError(
            f"make_synthetic: class_weights {class_weights} are invalid, expected {n_classes} positive numbers"
        )
    rng = np.random.default_rng(seed)
    splits: dict[str, Split] = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n == 0:
            continue
        if multilabel:
            rate = np.clip(0.3 * weights / weights.mean(), 0.02, 0.9)
            onehot = (rng.random((n, n_classes)) < rate).astype(np.int64)
            labels = torch.from_numpy(onehot)
        else:
            flat = np.repeat(np.arange(n_classes), apportion(n, weights))
            flat = flat[rng.permutation(n)]
            onehot = np.eye(n_classes, dtype=np.int64)[flat]
            labels = torch.from_numpy(flat.astype(np.int64))
        images = torch.from_numpy(_render(onehot, size, channels, n_classes, rng))
        splits[split] = Split(images, labels)
    task = MULTILABEL_TASK if multilabel else ("binary-class" if n_classes == 2 else "multi-class")
    prefix = "label" if multilabel else "class"
    return ImageDataset(
        name="synthetic",
        task=task,
        class_names=tuple(f"{prefix}_{k}" for k in range(n_classes)),
        train=splits["train"],
        val=splits.get("val"),
        test=splits["test"],
        source=f"synthetic:seed={seed}",
    )


def write_npz(dataset: ImageDataset, path: str, compressed: bool = True) -> None:
    """Write a dataset as a MedMNIST-format npz file, atomically.

    Keys are ``{split}_images`` (uint8 (N, H, W) for 1 channel, (N, H, W, 3) for 3) and
    ``{split}_labels`` (uint8 (N, 1), or (N, L) for multi-label tasks); the val keys are
    left out when ``dataset.val`` is None.

    Args:
        dataset: the dataset to write.
        path: the target file; written to a temporary file in the same folder, then renamed.
        compressed: use ``np.savez_compressed`` (as MedMNIST does) rather than ``np.savez``.
    """
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        part = getattr(dataset, split)
        if part is None:
            continue
        images = part.images.numpy()
        arrays[f"{split}_images"] = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
        labels = part.labels.numpy()
        dtype = np.uint8 if labels.max(initial=0) < 256 else np.int64
        arrays[f"{split}_labels"] = (labels if labels.ndim == 2 else labels[:, None]).astype(dtype)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if compressed:
                np.savez_compressed(f, allow_pickle=False, **arrays)
            else:
                np.savez(f, allow_pickle=False, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
