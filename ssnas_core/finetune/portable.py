"""A registered model that loads without unpickling: ``weights.pt`` (a state dict) and ``model_config.json``.

``mlflow.pytorch.load_model`` unpickles the whole module, so it runs whatever
code the pickle names. Beside it every logged model carries the architecture as
JSON and the weights as plain tensors; ``load_model`` rebuilds the network from
ssnas's own code and reads the tensors with ``torch.load(weights_only=True)``
after checking their sha256, so a model from an untrusted registry can at worst
hold wrong numbers, not code::

    from ssnas_core.finetune.portable import load_model
    model = load_model("downloaded/")     # the folder `ssnas models download` wrote
    probs = model(images.float())         # (B, C, H, W) pixels 0-255 -> (B, K) probabilities
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssnas_core.checkpoint import sha256_file
from ssnas_core.errors import CheckpointError, first_line
from ssnas_core.finetune.serving import ServingModel
from ssnas_core.losses.ldam import normed_head_scale, use_normed_head
from ssnas_core.search_space.genotype import Genotype
from ssnas_core.search_space.network import DerivedNetwork

FORMAT = 1
CONFIG = "model_config.json"
WEIGHTS = "weights.pt"


def architecture_of(net: nn.Module) -> dict[str, Any]:
    """What ``build_network`` needs to rebuild ``net``: a derived network's genotype and size, or a baseline's name."""
    scale = normed_head_scale(net)
    head = {} if scale is None else {"head": {"kind": "normed", "scale": scale}}
    if isinstance(net, DerivedNetwork):
        return {"kind": "derived", "genotype": json.loads(net.genotype.to_json()), "width": net.width,
                "cells": net.n_cells, **head}
    name = getattr(net, "ssnas_baseline", None)
    if name is None:
        raise TypeError(f"{type(net).__name__} is neither a DerivedNetwork nor an ssnas baseline")
    return {"kind": "baseline", "name": name, **head}


def build_network(arch: dict[str, Any], c_in: int, n_classes: int, size: int) -> nn.Module:
    """The untrained network ``arch`` describes (inverse of ``architecture_of``)."""
    from ssnas_core.baselines.models import create_baseline

    net: nn.Module
    if arch.get("kind") == "derived":
        genotype = Genotype.from_json(json.dumps(arch["genotype"]))
        net = DerivedNetwork(genotype, c_in, int(arch["width"]), int(arch["cells"]), size, n_classes)
    elif arch.get("kind") == "baseline":
        net = create_baseline(str(arch["name"]), c_in, n_classes, size)
    else:
        raise CheckpointError(f"unknown architecture kind {arch.get('kind')!r} in {CONFIG}: expected derived or "
                              "baseline")
    head = arch.get("head")
    if isinstance(head, dict) and head.get("kind") == "normed":
        use_normed_head(net, float(head["scale"]))
    elif head is not None:
        raise CheckpointError(f"unknown head {head!r} in {CONFIG}: expected a normed head or none")
    return net


def write_portable(serving: ServingModel, folder: Path, info: dict[str, Any]) -> list[Path]:
    """Write ``weights.pt`` and ``model_config.json`` for ``serving`` into ``folder``; returns both paths.

    Args:
        info: the dataset's facts: ``dataset``, ``task``, ``class_names``, ``in_channels``, ``n_classes`` and
            ``image_size`` (the last three rebuild the network).
    """
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    torch.save({k: v.detach().cpu() for k, v in serving.state_dict().items()}, weights)
    config = {
        **info, "format": FORMAT, "architecture": architecture_of(serving.net),
        "mean": serving.mean.flatten().tolist(), "std": serving.std.flatten().tolist(),
        "multilabel": bool(serving.multilabel), "weights": WEIGHTS, "weights_sha256": sha256_file(weights),
        "input": "float32 (B, C, H, W) pixel values 0-255", "output": "probabilities (B, K)",
    }
    if serving.logit_offset.numel():  # post-hoc logit adjustment: subtracted from the logits before the output
        config["logit_offset"] = serving.logit_offset.tolist()
    path = folder / CONFIG
    path.write_text(json.dumps(config, indent=2))
    return [path, weights]


def _find_config(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.rglob(CONFIG), key=lambda p: len(p.parts))
    if not found:
        raise CheckpointError(f"no {CONFIG} under {path}: pass the folder `ssnas models download` wrote")
    return found[0]


def load_model(path: str | Path) -> ServingModel:
    """Rebuild a logged model from its ``model_config.json`` and ``weights.pt`` without unpickling; eval mode.

    Raises:
        CheckpointError: no config, a model logged without portable weights, a sha256 mismatch, or weights that
            are not plain tensors or do not fit the architecture.
    """
    config_path = _find_config(Path(path))
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_path} is not JSON ({err})") from err
    if config.get("format") != FORMAT or "architecture" not in config:
        raise CheckpointError(f"{config_path} has no portable weights (logged by an older ssnas): load it with "
                              "mlflow.pytorch.load_model only if you trust the registry, or fine-tune again")
    weights = config_path.parent / config["weights"]
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing beside {config_path.name}: download the model again")
    if sha256_file(weights) != config["weights_sha256"]:
        raise CheckpointError(f"{weights} does not match the sha256 in {config_path.name}: the file was altered "
                              "or truncated; download the model again")
    net = build_network(config["architecture"], int(config["in_channels"]), int(config["n_classes"]),
                        int(config["image_size"]))
    offset = config.get("logit_offset")
    if offset is not None and (not isinstance(offset, list) or len(offset) != int(config["n_classes"])
                               or not all(isinstance(v, (int, float)) for v in offset)):
        raise CheckpointError(f"{config_path}: logit_offset must be a list of {config['n_classes']} numbers")
    model = ServingModel(net, config["mean"], config["std"], bool(config["multilabel"]), offset)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as err:  # pickle refusals and shape mismatches alike: one line, no traceback
        raise CheckpointError(f"{weights} cannot be loaded as plain tensors for this architecture "
                              f"({first_line(err)})") from err
    return model.eval()
