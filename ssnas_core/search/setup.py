"""Compose a search from a ``RunConfig``: data, bi-level halves, views, supernet, head, engine.

Used by the CLI, the benchmark script and the studies; knows nothing of tracking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ssnas_core.allocator import retain_freed_memory
from ssnas_core.config import RunConfig, projector_sizes
from ssnas_core.data.dataset import ImageDataset
from ssnas_core.data.lineage import DataInput, data_input
from ssnas_core.data.longtail import limit_indices, longtail_indices
from ssnas_core.data.registry import load_dataset
from ssnas_core.data.splits import bilevel_split
from ssnas_core.data.views import TwoViews
from ssnas_core.errors import ConfigError
from ssnas_core.search.engine import BilevelData, SearchEngine, use_channels_last
from ssnas_core.search.objective import SearchObjective
from ssnas_core.search_space.heads import Projector
from ssnas_core.search_space.supernet import Supernet


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; refuse an unavailable CUDA device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from err
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name} is not supported: ssnas trains on auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for CUDA but none is available here: use --device cpu or auto")
    return device


def training_device(name: str) -> torch.device:
    """``resolve_device``, then the process-wide settings a training run on that device wants.

    CUDA: cuDNN benchmarks its kernels once per shape (the steps' shapes are static: ``drop_last``). CPU: freed
    activations stay in the process between steps (``ssnas_core/allocator.py``; ``SSNAS_MALLOC_TUNING=0`` turns
    it off). Called by ``build_search`` and ``build_finetune``, so every entry point (CLI, API, studies,
    benchmarks) trains the same way.
    """
    device = resolve_device(name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        retain_freed_memory()
    return device


@dataclass
class SearchSetup:
    """A ready-to-run search and what it was built from."""

    engine: SearchEngine
    dataset: ImageDataset
    train_counts: list[int]  # per class (or per label) of the training images used
    device: torch.device
    inputs: list[DataInput]  # the training images used (both halves of the bi-level split)


def training_indices(dataset: ImageDataset, cfg: RunConfig) -> np.ndarray:
    """Indices of the training images used: long-tailed by the imbalance factor, then limited."""
    labels = dataset.train.labels.numpy()
    idx = np.arange(len(labels))
    if cfg.data.imbalance_factor != 1.0:
        if dataset.is_multilabel:
            raise ConfigError("--imbalance-factor applies to single-label datasets only; "
                              f"{dataset.name} is multi-label: leave it at 1")
        idx = longtail_indices(labels, cfg.data.imbalance_factor, cfg.seed, n_classes=dataset.n_classes,
                               class_names=dataset.class_names)
    if cfg.data.limit_train:
        if cfg.data.limit_train > len(idx):
            raise ConfigError(f"--limit-train {cfg.data.limit_train} exceeds the {len(idx)} training images "
                              "available: give a smaller number or 0 for all")
        idx = idx[limit_indices(labels[idx], cfg.data.limit_train, cfg.seed)]
    return np.sort(idx)


def chosen(cfg: RunConfig) -> dict[str, object]:
    """How the training images were chosen, for the dataset input's profile."""
    return {"imbalance_factor": cfg.data.imbalance_factor, "limit_train": cfg.data.limit_train, "seed": cfg.seed}


def build_search(cfg: RunConfig, dataset: ImageDataset | None = None) -> SearchSetup:
    """Load the data and build the engine (raises ``SsnasError`` on bad input, before any training)."""
    device = training_device(cfg.device)
    if dataset is None:
        dataset = load_dataset(cfg.data.dataset, cfg.data.data_root or None, size=cfg.data.size,
                               download=cfg.data.download, strict_md5=cfg.data.strict_md5, seed=cfg.seed)
    s = cfg.search
    idx = training_indices(dataset, cfg)
    labels = dataset.train.labels[idx]
    half_w, half_a = bilevel_split(labels.numpy(), cfg.seed)
    if min(len(half_w), len(half_a)) < s.batch_size:
        raise ConfigError(f"each half of the {len(idx)} training images must hold one batch of {s.batch_size}: "
                          "lower --batch-size or use more images")
    images = dataset.train.images[idx].to(device)
    labels = labels.to(device)
    tw, ta = torch.as_tensor(half_w, device=device), torch.as_tensor(half_a, device=device)
    data = BilevelData(images[tw], labels[tw], images[ta], labels[ta])
    torch.manual_seed(cfg.seed)
    supernet = Supernet(dataset.n_channels, s.width, s.cells, s.nodes, relaxation=s.relaxation,
                        image_size=dataset.size)
    head: nn.Module
    if s.ssl == "ce":
        head = nn.Linear(supernet.feature_dim, dataset.n_classes)
    else:
        head = Projector(supernet.feature_dim, projector_sizes(s.projector))
    objective = SearchObjective(supernet, head, s.ssl, s.lambda_bt, s.temperature, dataset.is_multilabel)
    objective.to(device)
    if use_channels_last(s.channels_last, device):
        objective.to(memory_format=torch.channels_last)
    views = TwoViews(dataset.size, dataset.n_channels, strength=s.aug_strength)
    engine = SearchEngine(s, objective, views, data, cfg.seed)
    counts = np.bincount(labels.cpu().numpy(), minlength=dataset.n_classes).tolist() \
        if not dataset.is_multilabel else labels.sum(0).tolist()
    return SearchSetup(engine, dataset, counts, device, [data_input(dataset, "train", "train", idx, **chosen(cfg))])
