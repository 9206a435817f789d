"""Stem and cell layout shared by the supernet and the derived network."""

from __future__ import annotations

from torch import nn

from ssnas_core.search_space.primitives import BatchNorm2d


def make_stem(c_in: int, c_out: int, image_size: int) -> nn.Sequential:
    """3x3 conv + BN, after stride-2 conv blocks that bring images larger than 32 px down to <= 32 px.

    28/32 px inputs (MedMNIST, CIFAR) keep their resolution as in DARTS' CIFAR stem;
    64 px gets one stride-2 block, 224 px three.
    """
    layers: list[nn.Module] = []
    size, c = image_size, c_in
    while size > 32:
        layers += [nn.Conv2d(c, c_out // 2, 3, stride=2, padding=1, bias=False),
                   BatchNorm2d(c_out // 2), nn.ReLU(inplace=True)]
        size, c = (size + 1) // 2, c_out // 2
    layers += [nn.Conv2d(c, c_out, 3, padding=1, bias=False), BatchNorm2d(c_out)]
    return nn.Sequential(*layers)


def reduction_positions(n_cells: int) -> frozenset[int]:
    """Reduction cells at 1/3 and 2/3 of the depth (DARTS); cells 1 and 2 of 3."""
    return frozenset({n_cells // 3, 2 * n_cells // 3}) if n_cells >= 3 else frozenset({n_cells - 1})


def cell_channels(c: int, n_cells: int, n_nodes: int,
                  stem_multiplier: int = 3) -> list[tuple[int, int, int, bool, bool]]:
    """Per cell ``(c_pp, c_p, c_cur, reduction, reduction_prev)``; channels double at each reduction."""
    reductions = reduction_positions(n_cells)
    c_pp, c_p, c_cur = stem_multiplier * c, stem_multiplier * c, c
    layout = []
    reduction_prev = False
    for i in range(n_cells):
        reduction = i in reductions
        if reduction:
            c_cur *= 2
        layout.append((c_pp, c_p, c_cur, reduction, reduction_prev))
        # [!] the cell output has n_nodes * c_cur channels, not c_cur
        c_pp, c_p, reduction_prev = c_p, n_nodes * c_cur, reduction
    return layout
