"""What a run trained and was evaluated on: one ``DataInput`` per split, logged as the run's dataset inputs.

The digest identifies the exact images a run used: the sha256 of the whole split as loaded (images and labels,
what the data file holds for that split) followed by the indices the run kept of it (after long-tailing,
``--limit-train`` and any val hold-out), cut to 20 hex digits. Two runs on the same data, imbalance factor,
limit and seed get the same digest, whatever path the file was read from; any other selection gets another.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ssnas_core.data.dataset import ImageDataset, Split

CONTEXTS = ("train", "val", "test")
_split_hashes: weakref.WeakKeyDictionary[Split, str] = weakref.WeakKeyDictionary()  # each loaded split hashed once


@dataclass(frozen=True)
class DataInput:
    """One split a run used.

    Attributes:
        name: the dataset's safe name (``ImageDataset.slug``), e.g. ``pneumoniamnist``.
        context: ``train``, ``val`` or ``test`` (MLflow's ``mlflow.data.context`` tag).
        digest: 20 hex digits of the split's content hash and the kept indices.
        source: the file or folder the data came from (``ImageDataset.source``), else the dataset's name.
        profile: images, per-class counts and how the images were chosen (JSON-able).
    """

    name: str
    context: str
    digest: str
    source: str
    profile: Mapping[str, object] = field(default_factory=dict)


def split_hash(split: Split) -> str:
    """sha256 (hex) of a split's images and labels as loaded, with their shapes."""
    cached = _split_hashes.get(split)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for t in (split.images, split.labels):
        h.update(repr((str(t.dtype), tuple(t.shape))).encode())
        h.update(memoryview(t.contiguous().numpy()).cast("B"))  # the tensor's own bytes, not a copy
    _split_hashes[split] = h.hexdigest()
    return h.hexdigest()


def data_input(dataset: ImageDataset, context: str, split: str, indices: np.ndarray | None = None,
               **chosen: object) -> DataInput:
    """The ``DataInput`` of ``indices`` (all images when None) of ``dataset``'s split ``split``.

    Args:
        context: what the run used them for (one of ``CONTEXTS``).
        split: the loaded split they come from (CIFAR's val images come from ``train``).
        chosen: how they were chosen (imbalance factor, limit, seed), added to the profile.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context {context!r} is not one of {CONTEXTS}")
    source_split = dataset.split(split)
    idx = np.arange(len(source_split), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    h = hashlib.sha256(split_hash(source_split).encode())
    h.update(split.encode())
    h.update(idx.tobytes())
    labels = source_split.labels.numpy()[idx]
    counts = labels.sum(axis=0) if dataset.is_multilabel else np.bincount(labels, minlength=dataset.n_classes)
    profile: dict[str, object] = {
        "num_images": int(len(idx)),
        "from_split": split,
        "class_counts": {name: int(c) for name, c in zip(dataset.class_names, counts)},
        "task": dataset.task,
        "image_shape": [dataset.n_channels, dataset.size, dataset.size],
        **{k: v for k, v in chosen.items()},
    }
    return DataInput(dataset.slug, context, h.hexdigest()[:20], dataset.source or dataset.name, profile)
