"""Compose a fine-tune run: data splits on the device, model (derived network or baseline), criterion, engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

from ssnas_core.config import RunConfig
from ssnas_core.data.dataset import ImageDataset
from ssnas_core.data.lineage import DataInput, data_input
from ssnas_core.data.registry import load_dataset
from ssnas_core.data.splits import bilevel_split
from ssnas_core.data.views import TwoViews
from ssnas_core.errors import ConfigError
from ssnas_core.finetune.engine import FinetuneEngine, LabeledData
from ssnas_core.finetune.losses import make_criterion, prepare_head
from ssnas_core.search.engine import use_channels_last
from ssnas_core.search.setup import chosen, training_device, training_indices
from ssnas_core.search_space.genotype import Genotype
from ssnas_core.search_space.network import DerivedNetwork


@dataclass
class FinetuneSetup:
    """A ready fine-tune run and what it was built from."""

    engine: FinetuneEngine
    dataset: ImageDataset
    train_counts: np.ndarray
    inherited: list[str]
    device: torch.device
    views: TwoViews
    inputs: list[DataInput]  # train, val and test images used


def load_data(cfg: RunConfig) -> ImageDataset:
    return load_dataset(cfg.data.dataset, cfg.data.data_root or None, size=cfg.data.size,
                        download=cfg.data.download, strict_md5=cfg.data.strict_md5, seed=cfg.seed)


def _splits(dataset: ImageDataset, cfg: RunConfig, device: torch.device
            ) -> tuple[LabeledData, np.ndarray, list[DataInput]]:
    idx = training_indices(dataset, cfg)
    x, y = dataset.train.images[idx], dataset.train.labels[idx]
    how = chosen(cfg)
    if dataset.val is not None:
        xv, yv = dataset.val.images, dataset.val.labels
        inputs = [data_input(dataset, "train", "train", idx, **how), data_input(dataset, "val", "val")]
    else:  # CIFAR has no val split: hold out a stratified 10% of the training images
        keep, held = bilevel_split(y.numpy() if y.ndim == 1 else y[:, 0].numpy(), cfg.seed, fraction=0.9)
        xv, yv = x[held], y[held]
        x, y = x[keep], y[keep]
        inputs = [data_input(dataset, "train", "train", idx[keep], **how),
                  data_input(dataset, "val", "train", idx[held], **how, held_out_from_train=0.1)]
    inputs.append(data_input(dataset, "test", "test"))
    counts = y.sum(0).numpy() if dataset.is_multilabel else np.bincount(y.numpy(), minlength=dataset.n_classes)
    data = LabeledData(*(t.to(device) for t in (x, y, xv, yv, dataset.test.images, dataset.test.labels)))
    return data, counts, inputs


def build_derived(genotype: Genotype, dataset: ImageDataset, width: int, cells: int,
                  supernet_state: Mapping[str, torch.Tensor] | None, *, seed: int) -> tuple[nn.Module, list[str]]:
    """The derived network with a linear head, inheriting the supernet's tensors when given.

    What is not inherited (the head, or all of it) is initialised from ``seed``, so a seed reproduces the run.
    """
    torch.manual_seed(seed)
    model = DerivedNetwork(genotype, dataset.n_channels, width, cells, dataset.size, dataset.n_classes)
    inherited = model.inherit_from(supernet_state) if supernet_state is not None else []
    return model, inherited


def build_baseline(name: str, dataset: ImageDataset, *, seed: int) -> nn.Module:
    """The baseline network ``name`` for ``dataset``, initialised from ``seed``."""
    from ssnas_core.baselines.models import create_baseline

    torch.manual_seed(seed)
    return create_baseline(name, dataset.n_channels, dataset.n_classes, dataset.size)


def check_head(state: Mapping[str, torch.Tensor], n_classes: int) -> None:
    """Refuse weights whose head was trained for another number of classes."""
    for key in ("head.weight", "fc.weight", "linear.weight"):
        if key in state and state[key].shape[0] != n_classes:
            raise ConfigError(f"the weights' head {key} has {state[key].shape[0]} outputs but the dataset has "
                              f"{n_classes} classes: fine-tune on the dataset it was trained for, or drop --weights")


def build_finetune(cfg: RunConfig, model: nn.Module, dataset: ImageDataset, inherited: list[str]) -> FinetuneSetup:
    """Put data and model on the device and build the engine (bad input raises ``SsnasError``)."""
    device = training_device(cfg.device)
    data, counts, inputs = _splits(dataset, cfg, device)
    f = cfg.finetune
    criterion, adjust = make_criterion(f, counts, len(data.x_train), dataset.is_multilabel)
    model = prepare_head(model, f)
    model.to(device)
    if use_channels_last(f.channels_last, device):
        model.to(memory_format=torch.channels_last)
    criterion.to(device)
    adjust.to(device)
    views = TwoViews(dataset.size, dataset.n_channels, strength=f.aug_strength)
    engine = FinetuneEngine(f, model, criterion, adjust, views.one_view, views.normalize, data, dataset.is_multilabel,
                            cfg.seed)
    return FinetuneSetup(engine, dataset, counts, inherited, device, views, inputs)
