"""The dataset registry: a name -> loader table, and ``load_dataset``.

Names are the 2D MedMNIST flags, ``cifar10``, ``cifar100``, ``synthetic``, and
the prefix form ``imagefolder:<path>``. Registering a name twice is an error
(as timm's ``register_model``). Filling the table only stores functions: no
file is read, no folder created and no optional package imported at import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol

from ssnas_core.data.dataset import ImageDataset
from ssnas_core.data.imagefolder import load_imagefolder
from ssnas_core.data.sources import MEDMNIST_FLAGS, load_cifar, load_medmnist
from ssnas_core.data.synthetic import make_synthetic
from ssnas_core.errors import DatasetError

IMAGEFOLDER_PREFIX = "imagefolder:"


class DatasetLoader(Protocol):
    """A registered loader; each takes every option and ignores those that do not apply."""

    def __call__(self, *, root: str | None, size: int, download: bool, strict_md5: bool, seed: int) -> ImageDataset: ...


DATASETS: dict[str, DatasetLoader] = {}


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator adding a loader under ``name``.

    Raises:
        ValueError: ``name`` is already registered, or uses the ``imagefolder:`` prefix.
    """

    def add(loader: DatasetLoader) -> DatasetLoader:
        if name in DATASETS or name.startswith(IMAGEFOLDER_PREFIX):
            raise ValueError(f"dataset {name!r} is already registered (or reserved); choose another name")
        DATASETS[name] = loader
        return loader

    return add


def _medmnist_loader(
    flag: str, *, root: str | None, size: int, download: bool, strict_md5: bool, seed: int
) -> ImageDataset:
    return load_medmnist(flag, root=root, size=size, download=download, strict_md5=strict_md5)


def _cifar_loader(
    name: str, *, root: str | None, size: int, download: bool, strict_md5: bool, seed: int
) -> ImageDataset:
    return load_cifar(name, root=root, size=size, download=download)


def _register_builtins() -> None:
    for flag in MEDMNIST_FLAGS:
        register_dataset(flag)(functools.partial(_medmnist_loader, flag))
    for name in ("cifar10", "cifar100"):
        register_dataset(name)(functools.partial(_cifar_loader, name))


_register_builtins()


@register_dataset("synthetic")
def _synthetic_loader(*, root: str | None, size: int, download: bool, strict_md5: bool, seed: int) -> ImageDataset:
    return make_synthetic(size=size, seed=seed)


def available_datasets() -> list[str]:
    """Every name ``load_dataset`` accepts, sorted, plus the pattern ``imagefolder:<path>``."""
    return sorted(DATASETS) + [f"{IMAGEFOLDER_PREFIX}<path>"]


def load_dataset(
    name: str,
    root: str | None = None,
    size: int = 28,
    download: bool = False,
    strict_md5: bool = False,
    seed: int = 0,
) -> ImageDataset:
    """Load a dataset by name, fully validated, into memory.

    Args:
        name: a MedMNIST 2D flag (``pneumoniamnist``, ``chestmnist``, ...), ``cifar10``,
            ``cifar100``, ``synthetic`` or ``imagefolder:<path>``.
        root: data folder (MedMNIST: holds ``<flag>[_<size>].npz``; CIFAR: holds torchvision's
            folders). Default: ``$SSNAS_DATA_ROOT``, else the source's own default
            (``~/.medmnist``, ``~/.cache/ssnas``). Ignored by synthetic and imagefolder.
        size: image side in pixels (MedMNIST: 28, 64, 128 or 224; others are resized).
        download: download a missing MedMNIST or CIFAR file (needs network access).
        strict_md5: make a MedMNIST MD5 mismatch an error instead of a warning.
        seed: seed of the synthetic dataset; ignored by the others.

    Returns:
        The dataset, images uint8 (N, C, size, size).

    Raises:
        DatasetError: an unknown name, a missing or corrupt file (see ``npz.load_npz_dataset``).
        ConfigError: an unsupported size.
    """
    if name.startswith(IMAGEFOLDER_PREFIX):
        return load_imagefolder(name[len(IMAGEFOLDER_PREFIX) :], size=size)
    loader = DATASETS.get(name)
    if loader is None:
        raise DatasetError(f"unknown dataset {name!r}; expected one of: {', '.join(available_datasets())}")
    return loader(root=root, size=size, download=download, strict_md5=strict_md5, seed=seed)
