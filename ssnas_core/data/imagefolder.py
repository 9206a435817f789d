"""Read an ImageFolder tree (``train/<class>/*``, ``test/<class>/*``, optional ``val/``) once, into memory.

Images are decoded with PIL at load time, resized to ``size`` x ``size``
(bilinear; the aspect ratio is not kept) and stored as uint8. The dataset is
grayscale (C = 1) when every image in the tree is grayscale, RGB (C = 3)
otherwise. Class folders must be the same in every split.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ssnas_core.data.dataset import DatasetFormatError, DatasetNotFoundError, ImageDataset, Split
from ssnas_core.errors import DatasetError

_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def _classes(split_dir: str) -> list[str]:
    entries = (e for e in os.listdir(split_dir) if not e.startswith("."))
    return sorted(e for e in entries if os.path.isdir(os.path.join(split_dir, e)))


def _files(class_dir: str) -> list[str]:
    names = sorted(e for e in os.listdir(class_dir) if not e.startswith("."))
    return [os.path.join(class_dir, e) for e in names if os.path.isfile(os.path.join(class_dir, e))]


def _decode(path: str, size: int) -> tuple[np.ndarray, bool]:
    """Decode one image file; returns (H, W, 3) uint8 resized, and whether it was grayscale."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise DatasetError(
            f"reading {path} needs Pillow, which is not importable ({exc}); run: pip install Pillow"
        ) from exc

    try:
        with Image.open(path) as img:
            gray = img.mode in _GRAY_MODES
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8), gray
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetFormatError(
            f"{path}: image check: cannot decode the file ({type(exc).__name__}: {exc}), expected an image PIL "
            "can read; remove or replace it"
        ) from exc


def load_imagefolder(root: str, size: int = 28) -> ImageDataset:
    """Load an ImageFolder tree into memory.

    Args:
        root: folder holding ``train/`` and ``test/`` (and optionally ``val/``), each with one
            sub-folder per class.
        size: output side H = W in pixels.

    Returns:
        The dataset, named ``imagefolder:<root>``; task "binary-class" for 2 classes, else
        "multi-class"; class names are the folder names, sorted.

    Raises:
        DatasetNotFoundError: ``root``, ``train/`` or ``test/`` is missing.
        DatasetFormatError: classes differ between splits, a class or split is empty, or a
            file cannot be decoded.
    """
    if not os.path.isdir(root):
        raise DatasetNotFoundError(
            f"{root}: ImageFolder root not found, expected a folder with train/<class>/* and test/<class>/*; "
            "check the path after imagefolder:"
        )
    splits = [s for s in ("train", "val", "test") if os.path.isdir(os.path.join(root, s))]
    for required in ("train", "test"):
        if required not in splits:
            raise DatasetNotFoundError(
                f"{os.path.join(root, required)}: split folder not found, expected train/ and test/ (val/ is "
                f"optional) under {root}, each with one folder per class"
            )
    classes = _classes(os.path.join(root, "train"))
    if len(classes) < 2:
        raise DatasetFormatError(
            f"{os.path.join(root, 'train')}: class check: found {len(classes)} class folders {classes}, "
            "expected at least 2; add one folder per class"
        )
    decoded: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    all_gray = True
    for split in splits:
        split_dir = os.path.join(root, split)
        found = _classes(split_dir)
        if found != classes:
            raise DatasetFormatError(
                f"{split_dir}: class check: found classes {found}, expected the classes of train/ {classes}; "
                "make the class folders the same in every split"
            )
        images: list[np.ndarray] = []
        labels: list[int] = []
        for k, name in enumerate(classes):
            for path in _files(os.path.join(split_dir, name)):
                array, gray = _decode(path, size)
                all_gray = all_gray and gray
                images.append(array)
                labels.append(k)
        if not images:
            raise DatasetFormatError(f"{split_dir}: empty-split check: found 0 images, expected at least 1")
        decoded[split] = (images, labels)

    result: dict[str, Split] = {}
    for split, (images, labels) in decoded.items():
        stack = np.stack(images)  # (N, H, W, 3)
        nchw = stack[..., :1] if all_gray else stack
        tensor = torch.from_numpy(np.ascontiguousarray(nchw.transpose(0, 3, 1, 2)))
        result[split] = Split(tensor, torch.tensor(labels, dtype=torch.int64))
    return ImageDataset(
        name=f"imagefolder:{root}",
        task="binary-class" if len(classes) == 2 else "multi-class",
        class_names=tuple(classes),
        train=result["train"],
        val=result.get("val"),
        test=result["test"],
        source=os.path.abspath(root),
    )
