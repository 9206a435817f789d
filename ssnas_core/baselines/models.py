"""Baseline models, by name.

* ``resnet18`` / ``resnet50``: torchvision's ResNets. At 28-64 px the stem is
  adapted as in the MedMNIST v2 benchmark's own 28 px ResNets
  (MedMNIST/experiments ``MedMNIST2D/models.py``): a 3x3 stride-1 first conv and
  no max-pool, so a 28 px image keeps 28/14/7/4 px feature maps.
* ``resnet32``: the CIFAR ResNet of He et al. (2016, section 4.2) used by LDAM-DRW
  (Cao et al. 2019): 16-32-64 channels, 5 basic blocks per stage, parameter-free
  (zero-padding) shortcuts; 0.46 M parameters.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

BaselineFactory = Callable[[int, int, int], nn.Module]
BASELINES: dict[str, BaselineFactory] = {}


def register_baseline(name: str) -> Callable[[BaselineFactory], BaselineFactory]:
    def add(factory: BaselineFactory) -> BaselineFactory:
        if name in BASELINES:
            raise KeyError(f"baseline {name!r} is registered twice")
        BASELINES[name] = factory
        return factory

    return add


def _adapt_stem(model: nn.Module, c_in: int, size: int) -> nn.Module:
    if size <= 64:
        model.conv1 = nn.Conv2d(c_in, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(c_in, 64, 7, stride=2, padding=3, bias=False)
    return model


@register_baseline("resnet18")
def resnet18(c_in: int, n_classes: int, size: int) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18

    return _adapt_stem(tv_resnet18(weights=None, num_classes=n_classes), c_in, size)


@register_baseline("resnet50")
def resnet50(c_in: int, n_classes: int, size: int) -> nn.Module:
    from torchvision.models import resnet50 as tv_resnet50

    return _adapt_stem(tv_resnet50(weights=None, num_classes=n_classes), c_in, size)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pad = c_out - c_in
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:  # option A: zero-pad the new channels
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images; n = 5 gives ResNet-32."""

    def __init__(self, c_in: int, n_classes: int, n: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks: list[nn.Module] = []
        c = 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(_Block(c, width, 2 if stage > 0 and i == 0 else 1))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, n_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


@register_baseline("resnet32")
def resnet32(c_in: int, n_classes: int, size: int) -> nn.Module:
    return CifarResNet(c_in, n_classes, n=5)


def create_baseline(name: str, c_in: int, n_classes: int, size: int) -> nn.Module:
    """The single constructor of baselines; unknown names list the known ones."""
    from ssnas_core.errors import ConfigError

    if name not in BASELINES:
        raise ConfigError(f"unknown baseline model {name!r}: choose one of {', '.join(sorted(BASELINES))}")
    model = BASELINES[name](c_in, n_classes, size)
    model.ssnas_baseline = name  # how a logged model names its architecture (finetune.portable)
    return model
