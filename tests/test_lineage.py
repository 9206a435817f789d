"""Dataset inputs: the digest names the exact images a run used, wherever the file was read from."""

from __future__ import annotations

import numpy as np

from ssnas_core.config import RunConfig, with_overrides
from ssnas_core.data.lineage import data_input
from ssnas_core.data.npz import load_npz_dataset
from ssnas_core.data.synthetic import make_synthetic, write_npz
from ssnas_core.search.setup import training_indices


def test_same_images_same_digest_from_any_path_and_other_selections_differ(tmp_path) -> None:
    made = make_synthetic(n_train=200, class_weights=[0.7, 0.3])
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_npz(made, str(tmp_path / folder / "x.npz"))
    a, b = (load_npz_dataset(str(tmp_path / f / "x.npz"), task=made.task, class_names=made.class_names)
            for f in ("a", "b"))
    cfg = RunConfig()
    rho10 = with_overrides(cfg, {"data.imbalance_factor": 10.0})
    first = data_input(a, "train", "train", training_indices(a, rho10))
    assert first.digest == data_input(b, "train", "train", training_indices(b, rho10)).digest
    assert first.source.endswith("a/x.npz")
    assert first.digest != data_input(a, "train", "train", training_indices(a, cfg)).digest  # another rho
    other_seed = with_overrides(rho10, {"seed": 1})
    assert first.digest != data_input(a, "train", "train", training_indices(a, other_seed)).digest
    assert data_input(a, "val", "val").digest != data_input(a, "test", "test").digest
    counts = first.profile["class_counts"]
    assert counts == {n: int(c) for n, c in zip(a.class_names, np.bincount(
        a.train.labels.numpy()[training_indices(a, rho10)], minlength=2))}
