"""The in-memory dataset: uint8 image tensors and integer labels per split.

Every loader (MedMNIST npz, CIFAR, ImageFolder, synthetic) returns an
``ImageDataset``; everything downstream (long-tailing, splits, views, loaders)
reads only this structure. Images stay uint8 on the CPU until a batch is moved
to the device, where ``views.TwoViews`` turns them into float views.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import torch

from ssnas_core.errors import DatasetError

MULTILABEL_TASK = "multi-label, binary-class"
TASKS = ("binary-class", "multi-class", "ordinal-regression", MULTILABEL_TASK)


class DatasetNotFoundError(DatasetError):
    """A dataset file or folder that does not exist where it was looked for."""


class DatasetFormatError(DatasetError):
    """A data file that exists but is corrupt or has the wrong structure."""


class DatasetChecksumError(DatasetError):
    """A data file whose MD5 differs from the published one (only with ``strict_md5``)."""


class DatasetChecksumWarning(UserWarning):
    """A data file whose MD5 differs from the published one (the default: a warning)."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset.

    Attributes:
        images: uint8 tensor of shape (N, C, H, W), on the CPU, contiguous.
        labels: int64 tensor of shape (N,) for single-label tasks, or (N, L) of
            0/1 for multi-label tasks.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DatasetFormatError(
                f"split images: found {self.images.dtype} of shape {tuple(self.images.shape)}, "
                "expected uint8 (N, C, H, W); convert the images before building a Split"
            )
        if self.labels.dtype != torch.int64 or self.labels.ndim not in (1, 2):
            raise DatasetFormatError(
                f"split labels: found {self.labels.dtype} of shape {tuple(self.labels.shape)}, "
                "expected int64 (N,) or (N, L); convert the labels before building a Split"
            )
        if len(self.images) != len(self.labels):
            raise DatasetFormatError(
                f"split: {len(self.images)} images but {len(self.labels)} labels; they must match one to one"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: np.ndarray | torch.Tensor) -> Split:
        """Return the split restricted to ``indices`` (shape (M,), int), in that order."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        return Split(self.images[idx].contiguous(), self.labels[idx].contiguous())


def safe_name(name: str) -> str:
    """A dataset name fit for file names, MLflow experiments and registered models.

    ``imagefolder:/data/chest x-rays/`` becomes ``imagefolder-chest_x-rays`` (the folder's base name);
    other names keep letters, digits, ``.``, ``_`` and ``-`` and have anything else replaced by ``_``.
    """
    if name.startswith("imagefolder:"):
        base = os.path.basename(os.path.normpath(name.split(":", 1)[1])) or "root"
        name = f"imagefolder-{base}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "dataset"


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """An image classification dataset with train, optional val, and test splits.

    Attributes:
        name: the dataset name as given to ``load_dataset`` (e.g. ``"pneumoniamnist"``).
        task: a MedMNIST task string, one of ``TASKS``.
        class_names: one name per class; for multi-label tasks, one per label.
        train: the training split.
        val: the validation split, or None when the source has none (CIFAR).
        test: the test split.
        source: where the data was read from (a file or folder path; ``synthetic:...`` for made data),
            recorded with the run's dataset inputs; empty when unknown.
    """

    name: str
    task: str
    class_names: tuple[str, ...]
    train: Split
    val: Split | None
    test: Split
    source: str = ""

    @property
    def slug(self) -> str:
        """The name made safe for file, experiment and registered-model names (see ``safe_name``)."""
        return safe_name(self.name)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DatasetFormatError(f"dataset {self.name}: unknown task {self.task!r}, expected one of {TASKS}")
        shapes = {tuple(s.images.shape[1:]) for s in self._splits().values()}
        if len(shapes) != 1:
            raise DatasetFormatError(
                f"dataset {self.name}: splits have different image shapes {sorted(shapes)}; "
                "every split must hold (C, H, W) images of one size"
            )

    def _splits(self) -> dict[str, Split]:
        splits = {"train": self.train}
        if self.val is not None:
            splits["val"] = self.val
        splits["test"] = self.test
        return splits

    @property
    def n_classes(self) -> int:
        """Number of classes (labels, for multi-label tasks)."""
        return len(self.class_names)

    @property
    def n_channels(self) -> int:
        """Number of image channels C (1 for grayscale, 3 for RGB)."""
        return int(self.train.images.shape[1])

    @property
    def size(self) -> int:
        """Image height H in pixels."""
        return int(self.train.images.shape[2])

    @property
    def is_multilabel(self) -> bool:
        """True for ``"multi-label, binary-class"`` tasks (labels of shape (N, L))."""
        return self.task == MULTILABEL_TASK

    def split(self, name: str) -> Split:
        """Return the split called ``name`` ("train", "val" or "test").

        Raises:
            DatasetError: if the split does not exist in this dataset.
        """
        splits = self._splits()
        if name not in splits:
            raise DatasetError(
                f"dataset {self.name} has no {name!r} split (it has {sorted(splits)}); "
                "use one of those, or make a validation split from train"
            )
        return splits[name]

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Images per class in a split.

        Args:
            split: "train", "val" or "test".

        Returns:
            int64 array of shape (n_classes,): images per class, or, for
            multi-label tasks, positive images per label.
        """
        labels = self.split(split).labels.numpy()
        if self.is_multilabel:
            return np.asarray(labels.sum(axis=0), dtype=np.int64)
        return np.asarray(np.bincount(labels, minlength=self.n_classes), dtype=np.int64)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self._splits().items())
        return (
            f"ImageDataset({self.name!r}, task={self.task!r}, n_classes={self.n_classes}, "
            f"images=({self.n_channels}, {self.size}, {self.size}), {sizes})"
        )
