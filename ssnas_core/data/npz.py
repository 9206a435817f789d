"""Load and validate a MedMNIST-format ``.npz`` file, eagerly and strictly.

The file holds ``{split}_images`` of shape (N, H, W) or (N, H, W, C), uint8,
and ``{split}_labels`` of shape (N, 1) or (N,) for single-label tasks, (N, L)
for multi-label tasks, for the splits train, val and test. Every check of
RELIABILITY.md section 5 runs here, at load time, so that no bad file reaches
a DataLoader worker; each failure is a ``DatasetError`` subclass whose
one-line message names the path, the failed check, what was found and what
was expected.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ssnas_core.data.dataset import (
    MULTILABEL_TASK,
    TASKS,
    DatasetChecksumError,
    DatasetChecksumWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageDataset,
    Split,
)

SPLITS = ("train", "val", "test")
_FIX = "re-download the file or regenerate it"


def file_md5(path: str, chunk_bytes: int = 1 << 20) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: str, expected_md5: str, strict: bool = False) -> None:
    """Compare a file's MD5 with the published one: warn on mismatch, or raise when ``strict``.

    Raises:
        DatasetChecksumError: on mismatch when ``strict`` is True.
    """
    found = file_md5(path)
    if found == expected_md5.lower():
        return
    message = (
        f"{path}: MD5 check: found {found}, expected {expected_md5} (the official release); "
        "the bytes differ from the published file, though its structure was checked"
    )
    if strict:
        raise DatasetChecksumError(message + "; re-download it, or drop --strict-md5 to accept it")
    warnings.warn(message + "; pass --strict-md5 to make this an error", DatasetChecksumWarning, stacklevel=3)


def _read_arrays(path: str, required: Sequence[str], optional: Sequence[str]) -> dict[str, np.ndarray]:
    """Open the archive and read the named arrays eagerly, mapping every failure to a DatasetError."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"{path}: file not found; check the path or the data root")
    n_bytes = os.path.getsize(path)
    try:  # zipfile.is_zipfile answers False on an unreadable file too, which read as "truncated"
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise DatasetFormatError(f"{path}: read check: the file cannot be read ({exc.strerror or exc}); fix its "
                                 "permissions (e.g. chmod a+r) or copy it somewhere readable") from exc
    if not zipfile.is_zipfile(path):
        raise DatasetFormatError(
            f"{path}: zip check: found {n_bytes} bytes without a zip end-of-archive record, expected an .npz "
            f"(zip) archive; the file is truncated or not an npz: {_FIX}"
        )
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            present = set(npz.files)
            missing = [k for k in required if k not in present]
            if missing:
                raise DatasetFormatError(
                    f"{path}: key check: missing {missing}, found keys {sorted(present)}, expected "
                    f"{list(required)}; the file is not a MedMNIST-format npz: {_FIX}"
                )
            for key in [*required, *(k for k in optional if k in present)]:
                arrays[key] = _read_member(path, npz, key)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DatasetFormatError(
            f"{path}: archive check: cannot read the zip archive ({n_bytes} bytes): {type(exc).__name__}: {exc}; {_FIX}"
        ) from exc
    return arrays


def _read_member(path: str, npz: Any, key: str) -> np.ndarray:
    try:
        array = np.asarray(npz[key])
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise DatasetFormatError(
                f"{path}: dtype check of {key}: found a pickled object array, expected plain numeric arrays; "
                f"pickles are never loaded: {_FIX} with numeric arrays"
            ) from exc
        raise DatasetFormatError(f"{path}: member check of {key}: cannot parse the array ({exc}); {_FIX}") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DatasetFormatError(
            f"{path}: integrity check of {key}: the member is corrupt ({type(exc).__name__}: {exc}); {_FIX}"
        ) from exc
    if array.dtype.hasobject:
        raise DatasetFormatError(f"{path}: dtype check of {key}: found an object array, expected numeric; {_FIX}")
    return array


def _check_images(path: str, key: str, images: np.ndarray, channels: int | None, size: int | None) -> torch.Tensor:
    """Validate (N, H, W) / (N, H, W, C) uint8 images and return them as (N, C, H, W) uint8."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise DatasetFormatError(
            f"{path}: image check of {key}: found {images.dtype} of shape {images.shape}, expected uint8 "
            f"(N, H, W) or (N, H, W, C) with C 1 or 3; {_FIX}"
        )
    if len(images) == 0:
        raise DatasetFormatError(f"{path}: empty-split check of {key}: found 0 images, expected at least 1; {_FIX}")
    found_c = 1 if images.ndim == 3 else images.shape[3]
    if channels is not None and found_c != channels:
        raise DatasetFormatError(
            f"{path}: channel check of {key}: found {found_c} channels, expected {channels}; {_FIX}"
        )
    if size is not None and images.shape[1:3] != (size, size):
        raise DatasetFormatError(
            f"{path}: size check of {key}: found {images.shape[1]}x{images.shape[2]} images, expected "
            f"{size}x{size}; pass the matching --size or use the file made for size {size}"
        )
    nchw = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(nchw))


def _check_labels(path: str, key: str, labels: np.ndarray, n_images: int, task: str, n_classes: int) -> torch.Tensor:
    """Validate labels against the task and return them as int64 (N,) or (N, L)."""
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise DatasetFormatError(
            f"{path}: label check of {key}: found dtype {labels.dtype}, expected integer class indices; {_FIX}"
        )
    multilabel = task == MULTILABEL_TASK
    if labels.ndim == 2 and labels.shape[1] > 1 and not multilabel:
        raise DatasetFormatError(
            f"{path}: label check of {key}: found multi-label labels of shape {labels.shape} for the "
            f"single-label task {task!r}, expected (N, 1) or (N,); use a single-label dataset or a "
            "multi-label pipeline"
        )
    if multilabel:
        ok_shape = labels.ndim == 2 and labels.shape[1] == n_classes
        expected = f"(N, {n_classes}) of 0/1"
    else:
        ok_shape = labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1)
        expected = "(N, 1) or (N,)"
    if not ok_shape:
        raise DatasetFormatError(
            f"{path}: label check of {key}: found shape {labels.shape}, expected {expected}; {_FIX}"
        )
    if len(labels) != n_images:
        raise DatasetFormatError(
            f"{path}: length check of {key}: found {len(labels)} labels for {n_images} images, expected one "
            f"label per image; {_FIX}"
        )
    values = labels.astype(np.int64)
    high = 2 if multilabel else n_classes
    if values.size and (values.min() < 0 or values.max() >= high):
        raise DatasetFormatError(
            f"{path}: label range check of {key}: found values in [{values.min()}, {values.max()}], expected "
            f"[0, {high}) for {n_classes} {'labels (0/1)' if multilabel else 'classes'}; {_FIX}"
        )
    return torch.from_numpy(values if multilabel else np.ascontiguousarray(values.reshape(-1)))


def load_npz_dataset(
    path: str,
    task: str,
    class_names: Sequence[str],
    expected_counts: Mapping[str, int] | None = None,
    *,
    name: str | None = None,
    n_channels: int | None = None,
    size: int | None = None,
    expected_md5: str | None = None,
    strict_md5: bool = False,
    require_val: bool = True,
) -> ImageDataset:
    """Read a MedMNIST-format npz file eagerly and check everything about it.

    Args:
        path: the ``.npz`` file.
        task: a MedMNIST task string, e.g. ``"binary-class"`` or ``"multi-label, binary-class"``.
        class_names: one name per class (per label for multi-label tasks); fixes n_classes.
        expected_counts: images per split, e.g. MedMNIST's ``INFO[flag]["n_samples"]``; None skips the check.
        name: the dataset name to record (default: the file name without extension).
        n_channels: expected channels C (1 or 3); None accepts either.
        size: expected image side H = W in pixels; None accepts any.
        expected_md5: the published MD5 of this exact file; None skips the check.
        strict_md5: raise instead of warning when the MD5 differs.
        require_val: whether ``val_images``/``val_labels`` must be present; when False and
            both are absent, ``val`` is None.

    Returns:
        The dataset, images uint8 (N, C, H, W) and labels int64 (N,) or (N, L) per split.

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetFormatError: any structural check fails (not a zip, truncated, corrupt member,
            object array, missing key, wrong shape or dtype, length mismatch, label out of
            range, multi-label labels for a single-label task, split size, empty split).
        DatasetChecksumError: the MD5 differs and ``strict_md5`` is True (otherwise a
            ``DatasetChecksumWarning``).
    """
    if task not in TASKS:
        raise DatasetFormatError(f"{path}: task check: found task {task!r}, expected one of {TASKS}")
    if len(class_names) < 1:
        raise DatasetFormatError(f"{path}: class check: found no class names, expected at least one")
    splits = ["train", "val", "test"] if require_val else ["train", "test"]
    required = [f"{s}_{kind}" for s in splits for kind in ("images", "labels")]
    optional = [] if require_val else ["val_images", "val_labels"]
    arrays = _read_arrays(path, required, optional)
    if not require_val:
        has_val = [k in arrays for k in optional]
        if any(has_val) and not all(has_val):
            raise DatasetFormatError(
                f"{path}: key check: found only one of {optional}, expected both or neither; {_FIX}"
            )
        if all(has_val):
            splits = list(SPLITS)

    result: dict[str, Split] = {}
    for split in splits:
        images = _check_images(path, f"{split}_images", arrays[f"{split}_images"], n_channels, size)
        labels = _check_labels(path, f"{split}_labels", arrays[f"{split}_labels"], len(images), task, len(class_names))
        if expected_counts is not None and split in expected_counts and len(images) != expected_counts[split]:
            raise DatasetFormatError(
                f"{path}: split-size check of {split}: found {len(images)} images, expected "
                f"{expected_counts[split]} (the published n_samples); the file is incomplete or another "
                f"dataset: {_FIX}"
            )
        result[split] = Split(images, labels)

    shapes = {tuple(s.images.shape[1:]) for s in result.values()}
    if len(shapes) != 1:
        raise DatasetFormatError(
            f"{path}: shape check: found image shapes {sorted(shapes)} across splits, expected one (C, H, W); {_FIX}"
        )
    if expected_md5 is not None:
        check_md5(path, expected_md5, strict=strict_md5)
    return ImageDataset(
        name=name if name is not None else os.path.splitext(os.path.basename(path))[0],
        task=task,
        class_names=tuple(class_names),
        train=result["train"],
        val=result.get("val"),
        test=result["test"],
        source=os.path.abspath(path),
    )
