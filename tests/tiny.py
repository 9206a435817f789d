"""Small things tests build: a tiny search engine, a fine-tune engine on synthetic data, MedMNIST-shaped arrays."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ssnas_core.config import RunConfig, with_overrides
from ssnas_core.search.engine import SearchEngine
from ssnas_core.search.setup import build_search

# 128 synthetic images (two halves of 64: 4 batches of 16 each epoch), width 4, a small projector.
SMALL_SEARCH = {"data.dataset": "synthetic", "data.limit_train": 128, "search.batch_size": 16, "search.width": 4,
                "search.projector": "64-64", "device": "cpu"}


def search_engine(**overrides: Any) -> SearchEngine:
    """The engine of ``SMALL_SEARCH`` with dotted-key ``overrides`` (seeded by ``seed``, 0 unless given)."""
    return build_search(with_overrides(RunConfig(), {**SMALL_SEARCH, **overrides})).engine


def medmnist_arrays(counts: dict[str, int], size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A valid MedMNIST-like set of arrays: binary labels alternating 0, 1, one channel, ``size`` x ``size``."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, n in counts.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    return arrays


def finetune_engine(batch_size: int = 32, steps: int = 7, width: int = 16, epochs: int = 3):
    """A CPU fine-tune engine of a derived network (every op kind in its cells) on synthetic 28x28 images."""
    from ssnas_core.data.synthetic import make_synthetic
    from ssnas_core.finetune.setup import build_derived, build_finetune
    from ssnas_core.search_space.genotype import Genotype

    ops = ["sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3", "skip_connect"]
    cell = [[ops[(i + j) % 4], j, i + 2] for i in range(4) for j in (0, 1)]
    genotype = Genotype.from_json(json.dumps({"normal": cell, "reduce": cell, "n_nodes": 4}))
    data = make_synthetic(n_train=batch_size * steps, n_val=batch_size, n_test=8, size=28, channels=1, seed=0)
    cfg = with_overrides(RunConfig(), {"device": "cpu", "finetune.batch_size": batch_size, "finetune.epochs": epochs})
    model, _ = build_derived(genotype, data, width, 3, None, seed=0)
    return build_finetune(cfg, model, data, []).engine
