"""The dataset registry and sources: names, roots, MedMNIST files, ImageFolder trees, import hygiene."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ssnas_core.data import (
    DATASETS,
    DatasetChecksumError,
    DatasetChecksumWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    available_datasets,
    load_dataset,
    make_synthetic,
    register_dataset,
    write_npz,
)
from ssnas_core.data.sources import MEDMNIST_FLAGS
from ssnas_core.errors import ConfigError, DatasetError

REPO = Path(__file__).resolve().parents[1]


def test_available_names() -> None:
    names = available_datasets()
    assert set(MEDMNIST_FLAGS) | {"cifar10", "cifar100", "synthetic", "imagefolder:<path>"} == set(names)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'.*pneumoniamnist.*synthetic"):
        load_dataset("mnist")


def test_duplicate_registration_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("synthetic")(DATASETS["synthetic"])


def test_synthetic_by_name_uses_seed_and_size() -> None:
    a = load_dataset("synthetic", size=16, seed=1)
    assert a.size == 16 and a.name == "synthetic"
    assert not np.array_equal(a.train.images.numpy(), load_dataset("synthetic", size=16, seed=2).train.images.numpy())


def test_medmnist_without_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "medmnist", None)  # makes `import medmnist` raise ImportError
    with pytest.raises(DatasetError, match="pip install medmnist"):
        load_dataset("pneumoniamnist", root=str(tmp_path))


def test_medmnist_missing_file_names_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = tmp_path / "pneumoniamnist.npz"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("pneumoniamnist", root=str(tmp_path))
    message = str(info.value)
    assert str(expected) in message and "--data-root" in message and "SSNAS_DATA_ROOT" in message
    assert "--download" in message and "\n" not in message
    monkeypatch.setenv("SSNAS_DATA_ROOT", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "env" / "breastmnist_64.npz")):
        load_dataset("breastmnist", size=64)
    with pytest.raises(ConfigError, match="28, 64, 128, 224"):
        load_dataset("breastmnist", size=32)
    assert not (tmp_path / "env").exists(), "a missing root is never created"


def test_fake_pneumoniamnist_loads_through_registry(tmp_path: Path) -> None:
    fake = make_synthetic(n_train=4708, n_val=524, n_test=624, n_classes=2, class_weights=[1214, 3494], seed=0)
    write_npz(fake, str(tmp_path / "pneumoniamnist.npz"), compressed=False)
    with pytest.warns(DatasetChecksumWarning, match="MD5"):
        ds = load_dataset("pneumoniamnist", root=str(tmp_path))
    assert ds.name == "pneumoniamnist" and ds.task == "binary-class"
    assert ds.class_names == ("normal", "pneumonia") and ds.n_channels == 1 and ds.size == 28
    assert ds.class_counts("train").tolist() == [1214, 3494]
    assert ds.val is not None and len(ds.val) == 524 and len(ds.test) == 624
    with pytest.raises(DatasetChecksumError):
        load_dataset("pneumoniamnist", root=str(tmp_path), strict_md5=True)


def test_medmnist_split_size_checked(tmp_path: Path) -> None:
    write_npz(make_synthetic(n_train=20, n_val=5, n_test=5), str(tmp_path / "breastmnist.npz"), compressed=False)
    with pytest.raises(DatasetFormatError, match="split-size check of train: found 20 images, expected 546"):
        load_dataset("breastmnist", root=str(tmp_path))


def test_cifar_missing_names_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "cifar-10-batches-py")):
        load_dataset("cifar10", root=str(tmp_path))


def _write_tree(root: Path, splits: dict[str, list[str]], mode: str = "L") -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                shape = (10, 14) if mode == "L" else (10, 14, 3)
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(folder / f"{i}.png")


def test_imagefolder_gray_and_rgb(tmp_path: Path) -> None:
    _write_tree(tmp_path / "gray", {"train": ["cat", "dog"], "test": ["cat", "dog"], "val": ["cat", "dog"]})
    ds = load_dataset(f"imagefolder:{tmp_path / 'gray'}", size=12)
    assert ds.class_names == ("cat", "dog") and ds.task == "binary-class"
    assert ds.train.images.shape == (6, 1, 12, 12) and ds.val is not None and len(ds.val) == 6
    assert ds.class_counts().tolist() == [3, 3]
    _write_tree(tmp_path / "rgb", {"train": ["a", "b", "c"], "test": ["a", "b", "c"]}, mode="RGB")
    rgb = load_dataset(f"imagefolder:{tmp_path / 'rgb'}", size=8)
    assert rgb.train.images.shape == (9, 3, 8, 8) and rgb.val is None and rgb.task == "multi-class"


def test_imagefolder_errors(tmp_path: Path) -> None:
    _write_tree(tmp_path / "mismatch", {"train": ["a", "b"], "test": ["a", "c"]})
    with pytest.raises(DatasetFormatError, match="class check"):
        load_dataset(f"imagefolder:{tmp_path / 'mismatch'}")
    _write_tree(tmp_path / "notest", {"train": ["a", "b"]})
    with pytest.raises(DatasetNotFoundError, match="notest/test"):
        load_dataset(f"imagefolder:{tmp_path / 'notest'}")
    _write_tree(tmp_path / "corrupt", {"train": ["a", "b"], "test": ["a", "b"]})
    (tmp_path / "corrupt" / "test" / "b" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match="bad.png: image check"):
        load_dataset(f"imagefolder:{tmp_path / 'corrupt'}")


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    code = (
        "import sys, ssnas_core.data\n"
        "bad = [m for m in ('medmnist', 'PIL', 'torchvision.datasets') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, timeout=120)
    assert list(tmp_path.iterdir()) == [], "importing must not create files or folders"


def _fake_medmnist(fail: bool) -> types.ModuleType:
    """A stand-in for the medmnist package: an INFO entry and a dataset class whose download writes or fails."""
    module = types.ModuleType("medmnist")
    module.INFO = {  # type: ignore[attr-defined]
        "breastmnist": {
            "python_class": "BreastMNIST",
            "url": "https://example.invalid/breastmnist.npz",
            "MD5": "0" * 32,
            "task": "binary-class",
            "label": {"0": "malignant", "1": "normal, benign"},
            "n_channels": 1,
            "n_samples": {"train": 20, "val": 5, "test": 5},
        }
    }

    class BreastMNIST:
        def __init__(self, split: str, root: str, size: int, download: bool) -> None:
            if fail:
                raise RuntimeError("\n    Automatic download failed! Please download breastmnist.npz manually.\n")
            write_npz(make_synthetic(n_train=20, n_val=5, n_test=5), os.path.join(root, "breastmnist.npz"))

    module.BreastMNIST = BreastMNIST  # type: ignore[attr-defined]
    return module


def test_download_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "medmnist", _fake_medmnist(fail=True))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("breastmnist", root=str(tmp_path / "dl"), download=True)
    message = str(info.value)
    assert "download failed (Automatic download failed!" in message and "example.invalid" in message
    assert str(tmp_path / "dl" / "breastmnist.npz") in message and "\n" not in message


def test_download_then_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "medmnist", _fake_medmnist(fail=False))
    with pytest.warns(DatasetChecksumWarning):
        ds = load_dataset("breastmnist", root=str(tmp_path / "dl"), download=True)
    assert len(ds.train) == 20 and ds.class_names == ("malignant", "normal, benign")
