"""The straightforward per-edge search cell: the oracle the grouped ``SearchCell`` is checked against.

Each edge is a ``MixedOp`` holding every candidate operation as its own module
(``edges.<e>.ops.<op>.*``) and mixing them as ``sum_o w_o * o(x)``; each node sums
its edges. This is the form the search space had before the grouping, kept as
executable documentation of the maths (issue 11).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssnas_core.search_space.cells import after_relu, edge_index, preprocess
from ssnas_core.search_space.primitives import OPS
from ssnas_core.search_space.supernet import Supernet


class PlainFactorizedReduce(nn.Module):
    """DARTS' FactorizedReduce in its plain form: ReLU, ``conv_1(x)`` and ``conv_2`` on ``x`` shifted by one pixel,
    concatenated, BN; the shifted branch is zero-padded right and bottom so that odd sizes work (DARTS' code,
    ``conv_2(x[:, :, 1:, 1:])`` unpadded, fails there). The same names as ``primitives.FactorizedReduce``, which
    computes this on the pixels the convs read (``offset_pixels``); the oracle keeps the plain form, on its edges
    and as the preprocessing after a reduction cell, so that the check shares none of that code with the cells
    it checks."""

    def __init__(self, c: int, c_out: int, affine: bool) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(c, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return factorized_reduce_as_written(self, x)


def factorized_reduce_as_written(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """DARTS' FactorizedReduce op by op, with ``m``'s ``conv_1``, ``conv_2`` and ``bn`` (the form the fast one
    replaced; also the reference of ``tests/test_cpu_speed_paths.py``)."""
    x = torch.relu(x)
    shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
    return m.bn(torch.cat([m.conv_1(x), m.conv_2(shifted)], dim=1))


def _op(p: str, c: int, stride: int) -> nn.Module:
    """Candidate ``p`` on an edge of the oracle: the library's module, but the plain stride-2 skip."""
    return PlainFactorizedReduce(c, c, False) if p == "skip_connect" and stride == 2 else OPS[p](c, stride, False)


class MixedOp(nn.Module):
    """All candidate operations on one edge, mixed by relaxed weights.

    ``none`` is not instantiated: its output is zero, so leaving it out of the
    sum changes neither the output nor any gradient.
    """

    def __init__(self, c: int, stride: int, primitives: Sequence[str]) -> None:
        super().__init__()
        self.primitives = tuple(primitives)
        self.ops = nn.ModuleDict({p: _op(p, c, stride) for p in primitives if p != "none"})
        self._index = [self.primitives.index(p) for p in self.ops]
        # The conv ops all start with ReLU(x): compute it once per edge and run their tails on it.
        # (A plain list, so the tails' shared modules are not registered twice.)
        self._tails: list[tuple[int, nn.Module, bool]] = [
            (k, *after_relu(op)) for k, op in zip(self._index, self.ops.values())
        ]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: (B, c, H, W); weights: (n_ops,) relaxed weights in ``primitives`` order."""
        out: torch.Tensor | None = None
        xr = torch.relu(x) if any(on_relu for _, _, on_relu in self._tails) else x
        for k, op, on_relu in self._tails:
            term = weights[k] * op(xr if on_relu else x)
            out = term if out is None else out + term
        if out is None:  # an edge with only ``none``
            raise ValueError("a MixedOp needs at least one operation other than 'none'")
        return out


class OracleSearchCell(nn.Module):
    """A cell whose every edge is a ``MixedOp`` (the supernet's cell)."""

    def __init__(self, n_nodes: int, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 primitives: Sequence[str]) -> None:
        super().__init__()
        self.reduction = reduction
        self.n_nodes = n_nodes
        self.pre0, self.pre1 = preprocess(c_pp, c_p, c, reduction_prev, affine=False)
        if reduction_prev:
            self.pre0 = PlainFactorizedReduce(c_pp, c, False)
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduction and src < 2 else 1, primitives) for src, _ in edge_index(n_nodes)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """s0, s1: the two previous cells' outputs; weights: (n_edges, n_ops) -> (B, n_nodes*c, H', W')."""
        states = [self.pre0(s0), self.pre1(s1)]
        e = 0
        for i in range(self.n_nodes):
            node = self.edges[e](states[0], weights[e])
            for j in range(1, 2 + i):
                node = node + self.edges[e + j](states[j], weights[e + j])
            e += 2 + i
            states.append(node)
        return torch.cat(states[2:], dim=1)
def oracle_supernet(fast: Supernet) -> Supernet:
    """A copy of ``fast`` whose cells are the per-edge oracle cells, holding the same state."""
    oracle = copy.deepcopy(fast)
    for i, cell in enumerate(fast.cells):
        pre0, pre1 = cell.pre0, cell.pre1
        c = cell.groups[0].pool_bn[next(iter(cell.groups[0].pool_bn))].num_features \
            if len(cell.groups[0].pool_bn) else None
        assert c is not None, "the oracle needs a pool operation to read the cell's channels"
        c_pp = pre0[1].in_channels if isinstance(pre0, nn.Sequential) else pre0.conv_1.in_channels
        c_p = pre1[1].in_channels
        reduction_prev = not isinstance(pre0, nn.Sequential)
        oracle.cells[i] = OracleSearchCell(cell.n_nodes, c_pp, c_p, c, cell.reduction, reduction_prev,
                                           cell.primitives).to(next(fast.parameters()).device)
    oracle.load_state_dict(fast.state_dict())
    return oracle
