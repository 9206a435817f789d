"""Loaders for MedMNIST (npz files described by medmnist's ``INFO``) and CIFAR (torchvision).

``medmnist`` and ``torchvision.datasets`` are imported only inside the
functions. Note that importing ``medmnist`` itself creates ``~/.medmnist``
(its ``DEFAULT_ROOT``); ssnas never creates that folder, and only creates
``root`` when a download is asked for.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ssnas_core.data.dataset import DatasetFormatError, DatasetNotFoundError, ImageDataset, Split
from ssnas_core.data.npz import load_npz_dataset
from ssnas_core.errors import ConfigError, DatasetError

MEDMNIST_FLAGS = (
    "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
)  # fmt: skip
MEDMNIST_SIZES = (28, 64, 128, 224)
ENV_ROOT = "SSNAS_DATA_ROOT"


def default_root(fallback: str) -> str:
    """The data root: ``$SSNAS_DATA_ROOT`` if set, else ``fallback`` with ``~`` expanded (never created)."""
    env = os.environ.get(ENV_ROOT, "")
    return env if env else os.path.expanduser(fallback)


def medmnist_info(flag: str) -> dict[str, Any]:
    """medmnist's ``INFO[flag]``: task, label names, n_channels, n_samples, urls and MD5s.

    Raises:
        DatasetError: medmnist is not installed, or does not know ``flag``.
    """
    try:
        from medmnist import INFO  # type: ignore[import-untyped]
    except ImportError as exc:
        raise DatasetError(
            f"dataset {flag} needs the medmnist package for its metadata, but it is not importable ({exc}); "
            "run: pip install medmnist"
        ) from exc
    if flag not in INFO:
        raise DatasetError(f"dataset {flag}: not in this medmnist version's INFO table; upgrade medmnist")
    info: dict[str, Any] = INFO[flag]
    return info


def medmnist_filename(flag: str, size: int) -> str:
    """medmnist's file name: ``<flag>.npz`` for 28 px, ``<flag>_<size>.npz`` otherwise."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def _download_medmnist(flag: str, info: dict[str, Any], root: str, size: int, path: str) -> None:
    """medmnist's own download (its URL, MD5 check and progress bar) into a fresh folder beside ``path``, moved
    into place only once medmnist has checked it: a failed or interrupted download leaves nothing at ``path``."""
    medmnist = importlib.import_module("medmnist")
    url = info.get("url" if size == 28 else f"url_{size}", "the MedMNIST Zenodo record")
    try:
        os.makedirs(root, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=root, ignore_cleanup_errors=True) as partial:
            getattr(medmnist, info["python_class"])(split="train", root=partial, size=size, download=True)
            os.replace(os.path.join(partial, os.path.basename(path)), path)
    except (RuntimeError, OSError, ValueError, AssertionError) as exc:
        first_line = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise DatasetNotFoundError(
            f"{path}: download failed ({first_line}); this machine may be offline: fetch {url} elsewhere and "
            f"put it at {path}, or pass --data-root to a folder that holds {os.path.basename(path)}"
        ) from exc


def load_medmnist(
    flag: str, root: str | None = None, size: int = 28, download: bool = False, strict_md5: bool = False
) -> ImageDataset:
    """Load a 2D MedMNIST dataset from ``<root>/<flag>[_<size>].npz`` with every check of ``npz``.

    Args:
        flag: a MedMNIST 2D flag, e.g. ``"pneumoniamnist"``.
        root: folder of the npz files (default: ``$SSNAS_DATA_ROOT``, else ``~/.medmnist``).
        size: 28, 64, 128 or 224.
        download: fetch the file with medmnist when it is missing (needs network access).
        strict_md5: an MD5 mismatch with medmnist's published value is an error, not a warning.

    Returns:
        The dataset; split sizes, channels, image size, task and class names are checked
        against medmnist's ``INFO[flag]``.

    Raises:
        ConfigError: an unsupported size.
        DatasetNotFoundError: the file is missing (and not downloaded).
        DatasetError: medmnist is missing, or any check of ``load_npz_dataset`` fails.
    """
    if size not in MEDMNIST_SIZES:
        raise ConfigError(f"dataset {flag}: size {size} is not available, expected one of {MEDMNIST_SIZES}")
    info = medmnist_info(flag)
    folder = root if root else default_root("~/.medmnist")
    path = os.path.join(folder, medmnist_filename(flag, size))
    if not os.path.exists(path):
        if download:
            _download_medmnist(flag, info, folder, size, path)
        else:
            raise DatasetNotFoundError(
                f"{path}: dataset file not found (expected {medmnist_filename(flag, size)} in {folder}); pass "
                f"--data-root DIR or set {ENV_ROOT} to the folder that holds it, or pass --download where the "
                "network allows"
            )
    labels = info["label"]
    class_names = [labels[str(k)] for k in range(len(labels))]
    return load_npz_dataset(
        path,
        task=info["task"],
        class_names=class_names,
        expected_counts=info["n_samples"],
        name=flag,
        n_channels=info["n_channels"],
        size=size,
        expected_md5=info.get("MD5" if size == 28 else f"MD5_{size}"),
        strict_md5=strict_md5,
    )


def _cifar_split(ds: Any, size: int) -> Split:
    """Convert a torchvision CIFAR dataset (data (N, 32, 32, 3) uint8, targets list) to a Split."""
    images = torch.from_numpy(np.ascontiguousarray(np.asarray(ds.data, dtype=np.uint8).transpose(0, 3, 1, 2)))
    if size != images.shape[-1]:
        resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
        images = resized.round_().clamp_(0, 255).to(torch.uint8).contiguous()
    return Split(images, torch.as_tensor(ds.targets, dtype=torch.int64))


def load_cifar(name: str, root: str | None = None, size: int = 32, download: bool = False) -> ImageDataset:
    """Load CIFAR-10 or CIFAR-100 through torchvision; there is no val split (``val=None``).

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: folder holding ``cifar-10-batches-py`` / ``cifar-100-python`` (default:
            ``$SSNAS_DATA_ROOT``, else ``~/.cache/ssnas``).
        size: output side in pixels; images are resized (bilinear, antialiased) when not 32.
        download: let torchvision download the archive when it is missing.

    Raises:
        DatasetNotFoundError: the files are missing or fail torchvision's integrity check.
    """
    from torchvision import datasets  # type: ignore[import-untyped]

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = root if root else default_root("~/.cache/ssnas")
    expected = os.path.join(folder, cls.base_folder)
    if not download and not os.path.isdir(expected):
        raise DatasetNotFoundError(
            f"{expected}: {name} folder not found (expected torchvision's {cls.base_folder} under {folder}); "
            f"pass --data-root DIR or set {ENV_ROOT}, or pass --download where the network allows"
        )
    try:
        train = cls(folder, train=True, download=download)
        test = cls(folder, train=False, download=download)
    except (RuntimeError, OSError) as exc:
        raise DatasetFormatError(
            f"{expected}: {name} could not be read ({exc}); re-download it with --download, or fix --data-root"
        ) from exc
    return ImageDataset(
        name=name,
        task="multi-class",
        class_names=tuple(train.classes),
        train=_cifar_split(train, size),
        val=None,
        test=_cifar_split(test, size),
        source=os.path.abspath(expected),
    )
