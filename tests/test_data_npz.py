"""The npz loader: a rejection table of bad files (RELIABILITY.md section 5, test 13) and round trips."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ssnas_core.data import (
    MULTILABEL_TASK,
    DatasetChecksumError,
    DatasetChecksumWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    load_npz_dataset,
    make_synthetic,
    write_npz,
)
from ssnas_core.data.npz import file_md5
from ssnas_core.errors import DatasetError

from .tiny import medmnist_arrays

N = {"train": 12, "val": 6, "test": 6}
CLASSES = ("normal", "pneumonia")


def _arrays(**overrides: Any) -> dict[str, np.ndarray]:
    """A valid MedMNIST-like set of arrays (binary, 1 channel, 8x8), with some keys replaced or dropped."""
    arrays = medmnist_arrays(N, size=8)
    for key, value in overrides.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return arrays


def _save(path: Path, compressed: bool = True, **overrides: Any) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **_arrays(**overrides))
    return path


def _flip_member_byte(path: Path, member: str) -> None:
    """Flip one byte in the middle of the data of one zip member, leaving the archive structure intact."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _not_a_zip(p: Path) -> dict[str, Any]:
    p.write_bytes(b"this is not an npz file\n" * 20)
    return {}


def _truncated(p: Path) -> dict[str, Any]:
    _save(p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return {}


def _bit_flip_compressed(p: Path) -> dict[str, Any]:
    _save(p, compressed=True)
    _flip_member_byte(p, "test_images.npy")
    return {}


def _bit_flip_stored(p: Path) -> dict[str, Any]:
    _save(p, compressed=False)
    _flip_member_byte(p, "test_images.npy")
    return {}


def _object_array(p: Path) -> dict[str, Any]:
    labels = np.empty((N["train"], 1), dtype=object)
    labels[:] = 1
    np.savez(p, **_arrays(train_labels=labels))  # savez pickles object arrays
    return {}


def _case(**overrides: Any) -> Callable[[Path], dict[str, Any]]:
    def make(p: Path) -> dict[str, Any]:
        _save(p, **overrides)
        return {}

    return make


def _counts_mismatch(p: Path) -> dict[str, Any]:
    _save(p)
    return {"expected_counts": {"train": 4708, "val": 6, "test": 6}}


def _wrong_channels(p: Path) -> dict[str, Any]:
    _save(p)
    return {"n_channels": 3}


def _wrong_size(p: Path) -> dict[str, Any]:
    _save(p)
    return {"size": 28}


def _multilabel_wrong_width(p: Path) -> dict[str, Any]:
    _save(p)  # (N, 1) labels for a 2-label multi-label task
    return {"task": MULTILABEL_TASK}


REJECTIONS: dict[str, tuple[Callable[[Path], dict[str, Any]], str]] = {
    "not-a-zip": (_not_a_zip, "zip check"),
    "truncated": (_truncated, "zip check"),
    "bit-flipped compressed member": (_bit_flip_compressed, "test_images"),
    "bit-flipped stored member": (_bit_flip_stored, "test_images"),
    "missing key": (_case(test_labels=None), "key check"),
    "object array": (_object_array, "pickled object"),
    "images float": (_case(train_images=np.zeros((12, 8, 8), np.float32)), "image check"),
    "images 2-D": (_case(train_images=np.zeros((12, 64), np.uint8)), "image check"),
    "images 2 channels": (_case(train_images=np.zeros((12, 8, 8, 2), np.uint8)), "image check"),
    "labels float": (_case(val_labels=np.zeros((6, 1), np.float32)), "label check"),
    "labels 3-D": (_case(val_labels=np.zeros((6, 1, 1), np.uint8)), "label check"),
    "length mismatch": (_case(train_labels=np.zeros((11, 1), np.uint8)), "length check"),
    "label out of range": (_case(test_labels=np.full((6, 1), 2, np.uint8)), "label range check"),
    "negative label": (_case(test_labels=np.full((6, 1), -1, np.int8)), "label range check"),
    "multi-label labels on single-label task": (_case(train_labels=np.ones((12, 14), np.uint8)), "multi-label labels"),
    "multi-label width": (_multilabel_wrong_width, "label check"),
    "n_samples mismatch": (_counts_mismatch, "split-size check"),
    "empty split": (
        _case(val_images=np.zeros((0, 8, 8), np.uint8), val_labels=np.zeros((0, 1), np.uint8)),
        "empty-split check",
    ),
    "channel mismatch": (_wrong_channels, "channel check"),
    "size mismatch": (_wrong_size, "size check"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_loader_rejects_bad_file(tmp_path: Path, case: str) -> None:
    make, check = REJECTIONS[case]
    path = tmp_path / "bad.npz"
    kwargs = {"task": "binary-class", "class_names": CLASSES, **make(path)}
    with pytest.raises(DatasetFormatError) as info:
        load_npz_dataset(str(path), **kwargs)
    message = str(info.value)
    assert isinstance(info.value, DatasetError)
    assert str(path) in message
    assert check in message
    assert "\n" not in message


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    path = tmp_path / "absent.npz"
    with pytest.raises(DatasetNotFoundError, match="absent.npz"):
        load_npz_dataset(str(path), "binary-class", CLASSES)


def test_valid_file_loads_as_nchw_uint8(tmp_path: Path) -> None:
    path = _save(tmp_path / "ok.npz")
    ds = load_npz_dataset(str(path), "binary-class", CLASSES, expected_counts=N, n_channels=1, size=8)
    raw = _arrays()
    assert ds.name == "ok" and ds.n_classes == 2 and ds.n_channels == 1 and ds.size == 8
    assert ds.train.images.shape == (12, 1, 8, 8) and ds.train.images.dtype == torch.uint8
    assert ds.train.images.is_contiguous()
    assert ds.val is not None and len(ds.val) == 6
    assert ds.test.labels.dtype == torch.int64 and ds.test.labels.shape == (6,)
    assert np.array_equal(ds.train.images[:, 0].numpy(), raw["train_images"])
    assert ds.class_counts("train").tolist() == [6, 6]


@pytest.mark.parametrize("channels,multilabel", [(1, False), (3, False), (1, True)])
def test_write_npz_round_trip(tmp_path: Path, channels: int, multilabel: bool) -> None:
    ds = make_synthetic(n_train=20, n_val=8, n_test=8, n_classes=3, size=12, channels=channels, multilabel=multilabel)
    path = tmp_path / "fake.npz"
    write_npz(ds, str(path))
    with np.load(path) as raw:
        expected_img = (8, 12, 12) if channels == 1 else (8, 12, 12, 3)
        assert raw["test_images"].shape == expected_img
        assert raw["test_labels"].shape == ((8, 3) if multilabel else (8, 1))
    back = load_npz_dataset(str(path), ds.task, ds.class_names, {"train": 20, "val": 8, "test": 8})
    for split in ("train", "val", "test"):
        assert torch.equal(back.split(split).images, ds.split(split).images)
        assert torch.equal(back.split(split).labels, ds.split(split).labels)
    assert back.is_multilabel == multilabel


def test_optional_val(tmp_path: Path) -> None:
    ds = make_synthetic(n_train=10, n_val=0, n_test=4)
    path = tmp_path / "noval.npz"
    write_npz(ds, str(path), compressed=False)
    assert load_npz_dataset(str(path), ds.task, ds.class_names, require_val=False).val is None
    with pytest.raises(DatasetFormatError, match="key check"):
        load_npz_dataset(str(path), ds.task, ds.class_names)


def test_md5_mismatch_only_warns(tmp_path: Path) -> None:
    path = _save(tmp_path / "ok.npz")
    with pytest.warns(DatasetChecksumWarning, match="MD5"):
        ds = load_npz_dataset(str(path), "binary-class", CLASSES, expected_md5="0" * 32)
    assert len(ds.train) == 12
    with pytest.raises(DatasetChecksumError, match=str(path)):
        load_npz_dataset(str(path), "binary-class", CLASSES, expected_md5="0" * 32, strict_md5=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_npz_dataset(str(path), "binary-class", CLASSES, expected_md5=file_md5(str(path)), strict_md5=True)


def test_an_unreadable_file_says_so_not_truncated(tmp_path: Path, monkeypatch) -> None:
    import builtins

    path = _save(tmp_path / "locked.npz")
    real_open = builtins.open

    def guarded(file, *args, **kwargs):  # what a chmod 000 file does to a non-root user
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    with pytest.raises(DatasetFormatError) as info:
        load_npz_dataset(str(path), "binary-class", CLASSES)
    message = str(info.value)
    assert "cannot be read (Permission denied)" in message and "truncated" not in message and "\n" not in message
