"""Models rebuilt from model_config.json + weights.pt, loaded with weights_only=True: faithful and refusing code."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from ssnas_core.baselines.models import create_baseline
from ssnas_core.errors import CheckpointError
from ssnas_core.finetune.portable import load_model, write_portable
from ssnas_core.finetune.serving import ServingModel
from ssnas_core.search_space.genotype import Genotype
from ssnas_core.search_space.network import DerivedNetwork

GENOTYPE = Genotype(normal=(("sep_conv_3x3", 0, 2), ("skip_connect", 1, 2), ("max_pool_3x3", 2, 3),
                            ("dil_conv_3x3", 1, 3)),
                    reduce=(("sep_conv_5x5", 1, 2), ("avg_pool_3x3", 0, 2), ("skip_connect", 2, 3)), n_nodes=2)
INFO = {"dataset": "synthetic", "task": "multi-class", "class_names": ["a", "b", "c"], "in_channels": 1,
        "n_classes": 3, "image_size": 28}


def _trained_like(net: torch.nn.Module, multilabel: bool = False) -> ServingModel:
    """A serving model whose weights and BN statistics differ from a fresh build's."""
    torch.manual_seed(1)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn_like(tensor))
    return ServingModel(net, [0.4], [0.2], multilabel).eval()


@pytest.mark.parametrize("kind", ["derived", "resnet32"])
def test_round_trip_predicts_the_same(kind: str, tmp_path: Path) -> None:
    net = DerivedNetwork(GENOTYPE, 1, c=4, n_cells=3, n_classes=3) if kind == "derived" \
        else create_baseline("resnet32", 1, 3, 28)
    serving = _trained_like(net)
    write_portable(serving, tmp_path / "m", INFO)
    loaded = load_model(tmp_path)  # the download folder: the config is found below it
    x = torch.randint(0, 256, (5, 1, 28, 28)).float()
    with torch.no_grad():
        assert torch.allclose(loaded(x), serving(x), atol=1e-6)
    assert not loaded.training


def test_altered_weights_are_refused(tmp_path: Path) -> None:
    write_portable(_trained_like(DerivedNetwork(GENOTYPE, 1, c=4, n_classes=3)), tmp_path, INFO)
    weights = tmp_path / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="sha256") as err:
        load_model(tmp_path)
    assert "\n" not in str(err.value)


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weights_holding_code_are_refused_without_running_it(tmp_path: Path) -> None:
    write_portable(_trained_like(DerivedNetwork(GENOTYPE, 1, c=4, n_classes=3)), tmp_path, INFO)
    marker = tmp_path / "code-ran"
    weights = tmp_path / "weights.pt"
    torch.save({"net.head.weight": _Payload(str(marker))}, weights)
    config = json.loads((tmp_path / "model_config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()  # a consistent, malicious upload
    (tmp_path / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="plain tensors"):
        load_model(tmp_path)
    assert not marker.exists()


def test_model_without_portable_weights_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "model_config.json").write_text(json.dumps({"dataset": "synthetic", "task": "multi-class"}))
    with pytest.raises(CheckpointError, match="older ssnas"):
        load_model(tmp_path)
    with pytest.raises(CheckpointError, match="no model_config.json"):
        load_model(tmp_path / "elsewhere")
    (tmp_path / "odd" / "model_config.json").mkdir(parents=True)  # a folder of that name: one line, not a traceback
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_model(tmp_path / "odd")


@pytest.mark.parametrize("kind", ["derived", "resnet32"])
def test_normed_head_and_post_hoc_offset_survive_the_round_trip(kind: str, tmp_path: Path) -> None:
    """An LDAM model keeps its cosine head, and a post-hoc logit adjustment travels in model_config.json."""
    from ssnas_core.losses.ldam import NormedLinear, use_normed_head

    net = use_normed_head(DerivedNetwork(GENOTYPE, 1, c=4, n_cells=3, n_classes=3) if kind == "derived"
                          else create_baseline("resnet32", 1, 3, 28))
    offset = [0.5, -1.0, 2.0]
    serving = _trained_like(net)
    serving = ServingModel(serving.net, [0.4], [0.2], False, offset).eval()
    write_portable(serving, tmp_path, INFO)
    config = json.loads((tmp_path / "model_config.json").read_text())
    assert config["architecture"]["head"] == {"kind": "normed", "scale": 30.0}
    assert config["logit_offset"] == offset
    loaded = load_model(tmp_path)
    assert any(isinstance(m, NormedLinear) for m in loaded.modules())
    x = torch.randint(0, 256, (5, 1, 28, 28)).float()
    with torch.no_grad():
        assert torch.allclose(loaded(x), serving(x), atol=1e-6)
        logits = serving.net((x / 255.0 - 0.4) / 0.2)
        expected = torch.softmax(logits - torch.tensor(offset), dim=1)  # the offset applied, not just stored
        assert torch.allclose(loaded(x), expected, atol=1e-6)
    config["logit_offset"] = [1.0]
    (tmp_path / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="logit_offset"):
        load_model(tmp_path)


@pytest.mark.parametrize("case", ["weights outside the folder", "absolute weights path", "a billion classes",
                                  "channels unlike the weights", "huge width", "malformed genotype",
                                  "mean of the wrong length", "config not an object", "size field a string"])
def test_a_malformed_config_is_refused_in_one_line_before_allocating(case: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_portable(_trained_like(DerivedNetwork(GENOTYPE, 1, c=4, n_classes=3)), folder, INFO)
    path = folder / "model_config.json"
    config = json.loads(path.read_text())
    (tmp_path / "outside.pt").write_bytes((folder / "weights.pt").read_bytes())
    if case == "weights outside the folder":
        config["weights"] = "../outside.pt"
    elif case == "absolute weights path":
        config["weights"] = str(tmp_path / "outside.pt")
    elif case == "a billion classes":
        config["n_classes"] = 10**9
    elif case == "channels unlike the weights":
        config["in_channels"], config["mean"], config["std"] = 3, [0.4] * 3, [0.2] * 3
    elif case == "huge width":
        config["architecture"]["width"] = 10**6
    elif case == "malformed genotype":
        config["architecture"]["genotype"] = {"normal": 3}
    elif case == "mean of the wrong length":
        config["mean"] = [0.1, 0.2]
    elif case == "config not an object":
        config = [config]
    elif case == "size field a string":
        config["image_size"] = "28; rm -rf /"
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert "\n" not in str(err.value) and str(err.value)
