"""A registered model that loads without unpickling: ``weights.pt`` (a state dict) and ``model_config.json``.

``mlflow.pytorch.load_model`` loads the model's ``torch.export`` program (``data/model.pt2``, checked free of
pickle payloads first): a graph of aten operations that trusts torch's deserializer, and a ``GraphModule`` rather
than ssnas's classes. Beside it every logged model carries the architecture as
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


def _bounded_int(config: dict[str, Any], key: str, low: int, high: int, where: Path) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CheckpointError(f"{where}: {key} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _numbers(config: dict[str, Any], key: str, n: int, where: Path) -> list[float]:
    value = config.get(key)
    if not isinstance(value, list) or len(value) != n or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise CheckpointError(f"{where}: {key} must be a list of {n} numbers, got {value!r:.80}")
    return [float(v) for v in value]


def load_model(path: str | Path) -> ServingModel:
    """Rebuild a logged model from its ``model_config.json`` and ``weights.pt`` without unpickling; eval mode.

    Nothing in the config is trusted: the weights file must lie in the config's own folder, and every size
    (channels, classes, image size, width, cells) is bounded and checked against the weights' own tensor
    shapes before the network is allocated.

    Raises:
        CheckpointError: no config, a model logged without portable weights, a sha256 mismatch, a malformed
            or inconsistent config, or weights that are not plain tensors or do not fit the architecture.
    """
    config_path = _find_config(Path(path))
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path} is not JSON ({first_line(err)})") from err
    except OSError as err:  # a folder of that name, unreadable: one line too
        raise CheckpointError(f"{config_path} cannot be read ({err.strerror or err}): download the model "
                              "again") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT or "architecture" not in config:
        raise CheckpointError(f"{config_path} has no portable weights (logged by an older ssnas): load it with "
                              "mlflow.pytorch.load_model only if you trust the registry, or fine-tune again")
    name = config.get("weights")
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise CheckpointError(f"{config_path}: weights must name a file in the same folder, got {name!r}")
    weights = config_path.parent / name
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing beside {config_path.name}: download the model again")
    if sha256_file(weights) != config.get("weights_sha256"):
        raise CheckpointError(f"{weights} does not match the sha256 in {config_path.name}: the file was altered "
                              "or truncated; download the model again")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle refusals and corrupt files alike: one line, no traceback
        raise CheckpointError(f"{weights} cannot be loaded as plain tensors ({first_line(err)})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{weights} is not a state dict of tensors")
    c_in = _bounded_int(config, "in_channels", 1, 64, config_path)
    n_classes = _bounded_int(config, "n_classes", 1, 100_000, config_path)
    size = _bounded_int(config, "image_size", 8, 1024, config_path)
    arch = config["architecture"]
    if not isinstance(arch, dict):
        raise CheckpointError(f"{config_path}: architecture must be an object, got {arch!r:.80}")
    if arch.get("kind") == "derived":
        _bounded_int(arch, "width", 1, 1024, config_path)
        _bounded_int(arch, "cells", 1, 64, config_path)
    heads = [v for k, v in state.items() if k.split(".")[-2:] in (["head", "weight"], ["fc", "weight"],
                                                                   ["linear", "weight"]) and v.ndim == 2]
    convs = [v for v in state.values() if v.ndim == 4]
    if not heads or heads[-1].shape[0] != n_classes or not convs or convs[0].shape[1] != c_in:
        raise CheckpointError(f"{config_path}: n_classes {n_classes} / in_channels {c_in} do not match the "
                              "weights' own head and first convolution")
    offset = config.get("logit_offset")
    if offset is not None:
        offset = _numbers(config, "logit_offset", n_classes, config_path)
    mean, std = (_numbers(config, key, c_in, config_path) for key in ("mean", "std"))
    try:
        net = build_network(arch, c_in, n_classes, size)
        model = ServingModel(net, mean, std, bool(config.get("multilabel")), offset)
        model.load_state_dict(state)
    except CheckpointError:
        raise
    except Exception as err:  # a malformed genotype or head, shape mismatches: one line, no traceback
        raise CheckpointError(f"{config_path}: the architecture cannot be rebuilt for these weights "
                              f"({first_line(err)})") from err
    return model.eval()
