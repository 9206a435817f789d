"""An ImageFolder dataset given by a path: search, fine-tune, register and download, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from ssnas_core.cli import main
from ssnas_core.data.dataset import safe_name

from .conftest import TINY


def _tree(root: Path, per_class: dict[str, int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for k, cls in enumerate(("normal", "opacity")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(90 + 80 * k, 30, (20, 20)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")


def test_safe_name_keeps_names_usable_in_files_and_mlflow() -> None:
    assert safe_name("pneumoniamnist") == "pneumoniamnist"
    assert safe_name("imagefolder:/data/chest x-rays/") == "imagefolder-chest_x-rays"
    assert safe_name("imagefolder:relative/tree") == "imagefolder-tree"
    assert "/" not in safe_name("a/b:c\\d")


def test_imagefolder_by_path_searches_finetunes_registers_and_downloads(workdir: Path) -> None:
    root = workdir / "my data" / "xray tree"
    _tree(root, {"train": 40, "val": 8, "test": 8})
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    tiny = [a for a in TINY]
    tiny[tiny.index("synthetic")] = f"imagefolder:{root}"
    assert main(["search", *tiny, "--epochs", "1", "--size", "16"]) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ssnas-imagefolder-xray_tree")
    assert exp is not None
    search = client.search_runs([exp.experiment_id], "tags.`ssnas.stage` = 'search'")[0]
    assert search.info.status == "FINISHED" and search.data.tags["ssnas.dataset"] == f"imagefolder:{root}"
    assert main(["finetune", "--search-run", search.info.run_id, "--epochs", "1", "--batch-size", "16",
                 "--device", "cpu"]) == 0
    ft = client.search_runs([exp.experiment_id], "tags.`ssnas.stage` = 'finetune'")[0]
    assert ft.info.status == "FINISHED"
    files = {a.path for a in client.list_artifacts(ft.info.run_id, "test")}
    assert any(f.startswith("test/imagefolder-xray_tree_16_test_[AUC]") for f in files), files
    version = client.get_model_version_by_alias("ssnas-imagefolder-xray_tree", "champion")
    assert version.run_id == ft.info.run_id
    out = workdir / "downloaded"
    assert main(["models", "download", "ssnas-imagefolder-xray_tree@champion", "--out", str(out),
                 "--tracking-uri", uri]) == 0
    from ssnas_core.finetune.portable import load_model

    model = load_model(out)
    import torch

    with torch.no_grad():
        probs = model(torch.full((2, 1, 16, 16), 128.0))
    assert probs.shape == (2, 2) and torch.allclose(probs.sum(1), torch.ones(2))


@pytest.mark.parametrize("name", ["imagefolder:/x/y/"])
def test_experiment_default_uses_the_safe_name(name: str) -> None:
    from ssnas_core.config import RunConfig
    from ssnas_core.workflows.runs import resolve_experiment

    assert resolve_experiment(RunConfig(), name) == "ssnas-imagefolder-y"
